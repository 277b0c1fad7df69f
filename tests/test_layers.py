"""The layers' import rules: resolvers call services only, channels receive what they need from
their caller, services import no Strawberry or Celery."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parents[1] / "backend"

# (package, modules it may not import, why)
RULES = [
    ("resolvers", ("backend.db", "backend.channels.registry"), "resolvers call services only"),
    ("channels", ("backend.services",), "channels are given what they need by their caller"),
    ("services", ("strawberry", "celery", "backend.schema", "backend.resolvers"), "no transport"),
]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def breaches(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((BACKEND / package).rglob("*.py")):
        for name in sorted(imported(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(BACKEND.parent)} imports {name}")
    return found


@pytest.mark.parametrize(("package", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_a_layer_imports_only_what_it_may(package: str, forbidden: tuple[str, ...], why: str):
    assert breaches(package, forbidden) == [], why


def test_the_check_sees_a_forbidden_import(tmp_path: Path):
    module = tmp_path / "leak.py"
    module.write_text("from backend.services import users\nimport backend.db.models\n")
    assert imported(module) >= {"backend.services.users", "backend.db.models"}
