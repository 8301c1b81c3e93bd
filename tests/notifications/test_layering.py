"""Notifications' core sits below the refund domain: refunds hands it rendered payloads, and the
core never imports refunds (nor the apps above or beside it), not even inside a function or for a
type hint. Its faces (api, serializers, admin, urls) may."""

import ast
from pathlib import Path

import pytest

import notifications

PACKAGE = Path(notifications.__file__).parent
CORE = sorted(
    [
        *(PACKAGE / name for name in ("models.py", "selectors.py", "tasks.py", "sender.py", "signing.py")),
        *(PACKAGE / "services").glob("*.py"),
    ]
)
HIGHER = ("refunds", "platforms", "portal", "payments")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", CORE, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_the_core_imports_nothing_above_it(path):
    assert [m for m in imported_modules(path) if m.split(".")[0] in HIGHER] == []


def test_the_service_imports_its_tasks_at_module_level():
    tree = ast.parse((PACKAGE / "services" / "delivery.py").read_text())
    top_level = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "tasks" in top_level
