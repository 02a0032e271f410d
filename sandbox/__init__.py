"""Fake providers on 127.0.0.1 for tests, benchmarks and `synchub dev`; run with `python -m sandbox`."""
