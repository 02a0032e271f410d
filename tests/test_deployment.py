"""docker-compose.yml follows the Compose Specification and only runs real `synchub` subcommands and settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from connectors.registry import BUILT_IN
from core.settings import ENV_PREFIX, NESTED, Settings
from oauth.providers import FORM_PROVIDERS, PROVIDERS
from tests.conftest import ROOT

SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def declared_variables() -> set[str]:
    """Core's variables, and those every built-in connector and auth provider declares under its own prefix (a
    connector installed by entry point documents its own)."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(ENV_PREFIX + name.upper())
        annotation = field.annotation
        nested = [a for a in (annotation, *getattr(annotation, "__args__", ())) if hasattr(a, "model_fields")]
        for model in nested:
            names.update(ENV_PREFIX + name.upper() + NESTED + sub.upper() for sub in model.model_fields)
    sections = [(spec.slug, spec.settings) for spec in BUILT_IN]
    sections += [(name, config.client_settings) for name, config in PROVIDERS.items()]
    sections += [(name, form.settings) for name, form in FORM_PROVIDERS.items() if form.settings is not None]
    for prefix, section_model in sections:
        names.update(ENV_PREFIX + prefix.upper() + NESTED + sub.upper() for sub in section_model.model_fields)
    return names


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert SCHEMA.is_file(), f"the Compose schema is missing at {SCHEMA}"
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    validator.check_schema(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_broken_service(compose: dict[str, Any]) -> None:
    broken = {**compose, "services": {**compose["services"], "api": {**compose["services"]["api"], "ports": 8000}}}
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(broken))


def test_services_cover_the_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "api", "beat"} <= set(services)
    queues = {
        service["command"][service["command"].index("--queues") + 1]
        for service in services.values()
        if "--queues" in service.get("command", [])
    }
    assert queues == {"webhooks", "sync", "maintenance"}
    assert "--appendonly" in services["redis"]["command"]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])


def test_prometheus_scrapes_the_api_with_the_token_and_every_worker_on_its_metrics_port(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    assert any(v.startswith("./deploy/prometheus.yml:") for v in prometheus["volumes"])
    assert "metrics_token" in prometheus["secrets"]
    assert "SYNCHUB_METRICS__TOKEN" in services["api"]["environment"], "the API's /metrics answers only the token"
    assert compose["secrets"]["metrics_token"] == {"environment": "SYNCHUB_METRICS__TOKEN"}
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for job in jobs.values() for c in job["static_configs"] for t in c["targets"]}
    api_port = services["api"]["command"][services["api"]["command"].index("--port") + 1]
    assert f"api:{api_port}" in targets
    api_job = next(job for job in jobs.values() if f"api:{api_port}" in job["static_configs"][0]["targets"])
    assert api_job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
    workers = {
        f"{name}:{service['command'][service['command'].index('--metrics-port') + 1]}"
        for name, service in services.items()
        if service.get("command", [])[:2] == ["synchub", "worker"]
    }
    assert workers and workers <= targets, f"workers Prometheus does not scrape: {workers - targets}"


def test_every_service_command_is_a_synchub_subcommand(compose: dict[str, Any]) -> None:
    commands = [
        service["command"] for service in compose["services"].values() if service.get("image") == "synchub:latest"
    ]
    assert len(commands) >= 5
    for command in commands:
        assert command[0] == "synchub"
        words = [word for word in command[1:] if not word.startswith("-")][:2]
        subcommand = words[:2] if words[0] == "db" else words[:1]
        result = subprocess.run(
            [sys.executable, "-m", "hub", *subcommand, "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (command, result.stderr)
        for option in (word for word in command if word.startswith("--")):
            assert option in result.stdout, f"{option} is not an option of synchub {' '.join(subcommand)}"


def test_every_synchub_variable_set_is_declared_by_the_settings(compose: dict[str, Any]) -> None:
    declared = declared_variables()
    used = {
        name
        for service in compose["services"].values()
        for name in (service.get("environment") or {})
        if name.startswith(ENV_PREFIX)
    }
    assert used, "no service sets a SYNCHUB_ variable"
    assert used <= declared, used - declared


def test_env_example_documents_every_setting() -> None:
    documented = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and line.lstrip("# ").startswith(ENV_PREFIX)
    }
    missing = {
        name
        for name in declared_variables()
        if not any(doc == name or doc.startswith(name + NESTED) for doc in documented)
    }
    assert not missing, f"undocumented in .env.example: {sorted(missing)}"
    assert documented <= declared_variables() | {"SYNCHUB_TEST_PG_ADMIN_URL", "SYNCHUB_TEST_REDIS_URL"}


def test_dockerfile_installs_caldav_without_the_urllib3_takeover() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "URLLIB3_NO_OVERRIDE=1" in dockerfile and "PIP_NO_BINARY=urllib3-future" in dockerfile
    copied = {
        line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ") and "/" not in line.split()[1]
    }
    packages = {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file() and path.name != "tests"}
    assert packages <= copied, packages - copied
    assert Path(ROOT / "pyproject.toml").is_file()
