"""The dev hub's environment file, .synchub/env: written by `synchub dev`, read by every other command."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, MutableMapping
from pathlib import Path

HOME_NAME, FILE_NAME = ".synchub", "env"
PREFIX = "SYNCHUB_"
# A shell or process that names its own database is pointed at some hub already: the file never overrides it.
CHOOSES_THE_HUB = "SYNCHUB_DATABASE_URL"


def write_env(home: Path, env: Mapping[str, str]) -> Path:
    """Every SYNCHUB_ variable, shell-quoted (`set -a; . .synchub/env` works too), readable by the user only."""
    path = home / FILE_NAME
    lines = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items()) if name.startswith(PREFIX)]
    partial = path.with_name(FILE_NAME + ".partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    partial.write_text("# Written by `synchub dev` while it runs; removed when it stops.\n" + "\n".join(lines) + "\n")
    partial.replace(path)
    return path


def read_env(path: Path) -> dict[str, str]:
    pairs = (word.partition("=") for word in shlex.split(path.read_text(), comments=True))
    return {name: value for name, sep, value in pairs if sep and name.startswith(PREFIX)}


def find_env(start: Path) -> Path | None:
    """The nearest .synchub/env in `start` or a folder above it, as git finds .git."""
    for folder in (start, *start.parents):
        candidate = folder / HOME_NAME / FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def use_dev_env(environ: MutableMapping[str, str], cwd: Path) -> Path | None:
    """Fill `environ` from a running dev hub's file, unless it already chooses a hub; the file used, if any."""
    if CHOOSES_THE_HUB in environ:
        return None
    path = find_env(cwd)
    if path is None:
        return None
    for name, value in read_env(path).items():
        environ.setdefault(name, value)
    return path
