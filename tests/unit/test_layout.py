"""The shape every service shares, checked: shared/ knows no service, the domain is pure, settings are read once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.config import SERVICES

ROOT = Path(__file__).resolve().parents[2]
SHAPE = ("bootstrap.py", "domain.py", "service_layer.py", "adapters.py", "entrypoints/api.py",
         "entrypoints/handlers.py", "entrypoints/pages.py")


def imports(path: Path) -> set[str]:
    """The modules a file imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def python_files(folder: Path) -> list[Path]:
    """Every Python file under a folder, migrations aside."""
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def test_shared_imports_no_service():
    """shared/ is the ground the services stand on: it finds them through the registry, never by import."""
    offenders = [f"{p.relative_to(ROOT)} imports {m}" for p in python_files(ROOT / "shared") for m in imports(p)
                 if m == "services" or m.startswith("services.")]
    assert offenders == []


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_has_the_same_shape(name):
    """Knowing one service's layout means knowing all four."""
    folder = ROOT / "services" / name
    assert [part for part in SHAPE if not (folder / part).exists()] == []


@pytest.mark.parametrize("name", SERVICES)
def test_only_the_bootstrap_reads_the_environment(name):
    """Settings are read once, in bootstrap.py, and passed down; nothing else in a service reads os.environ."""
    offenders = []
    for path in python_files(ROOT / "services" / name):
        if path.name == "bootstrap.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "os.environ" in text or "os.getenv" in text or "getenv(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("name", SERVICES)
def test_the_domain_is_pure_and_the_service_layer_knows_no_web(name):
    """domain.py needs no web framework, database session or environment; service_layer.py no web framework."""
    folder = ROOT / "services" / name
    impure = {"flask", "flask_smorest", "sqlalchemy", "sqlalchemy.orm", "os", "werkzeug"}
    assert {m for m in imports(folder / "domain.py") if m.split(".")[0] in {i.split(".")[0] for i in impure}} \
        == set()
    assert {m for m in imports(folder / "service_layer.py") if m.split(".")[0] in {"flask", "flask_smorest",
                                                                                   "werkzeug"}} == set()
