"""The direction of imports in ../shared/ARCHITECTURE.md: hub -> oauth, webhooks, sync -> connectors -> token_vault,
crm -> core. Nothing imports the sandbox except tests, benchmarks and the dev command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

BELOW = {
    "core": set(),
    "crm": {"core"},
    "token_vault": {"core"},
    "connectors": {"core", "crm", "token_vault"},
    "oauth": {"core", "token_vault", "connectors"},
    "sync": {"core", "crm", "token_vault", "connectors", "oauth"},
    "webhooks": {"core", "crm", "token_vault", "connectors", "sync"},
    "migrations": {"core", "crm", "token_vault", "sync", "webhooks"},
    "hub": {"core", "crm", "token_vault", "connectors", "oauth", "sync", "webhooks", "migrations"},
    "sandbox": set(),
}
MAY_IMPORT_SANDBOX = {Path("hub/dev.py")}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(BELOW)


@pytest.mark.parametrize("package", sorted(BELOW))
def test_a_package_imports_only_the_packages_below_it(package: str) -> None:
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        allowed = BELOW[package] | {package} | ({"sandbox"} if relative in MAY_IMPORT_SANDBOX else set())
        if extra := imported_packages(path) - allowed:
            wrong[str(relative)] = sorted(extra)
    assert wrong == {}
