"""Issue #9: MailServer is the composition root. Listeners, engines and web pages receive their
collaborators by constructor; none of them imports the server to reach into it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The wiring itself: the server, the process that runs its listeners, and the command line.
WIRING = {"server.py", "serve.py", "cli.py"}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, TYPE_CHECKING blocks and function bodies included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _builders() -> list[Path]:
    engine = [p for p in (ROOT / "mailsrv").rglob("*.py") if p.name not in WIRING]
    web = [ROOT / "services" / "app.py", *(ROOT / "services" / "web").rglob("*.py")]
    return sorted(engine + web)


@pytest.mark.parametrize("path", _builders(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_wiring_imports_the_server(path: Path) -> None:
    server_modules = {m for m in _imports(path) if m.startswith("mailsrv.") and m.rsplit(".", 1)[-1] == "server"}
    assert not server_modules, f"{path.relative_to(ROOT)} imports {sorted(server_modules)}"
