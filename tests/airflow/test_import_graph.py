"""Imports go one way: the engine never imports Airflow or the Airflow layer, the modules of
``plugins/`` and ``include/`` import each other without a cycle (read from their source with
ast, function-level imports included), and a first-party import inside a function is one of the
few that save measured start-up time (each says so, with its figure, where it is)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"mailmigrate": ROOT / "include", "mailmigrate_airflow": ROOT / "plugins"}
FIRST_PARTY = tuple(PACKAGES)

# (importing module, imported module): imported when needed, for start-up time (see the comment
# at each place for the figure).
DEFERRED = {
    ("mailmigrate.cli", "mailmigrate.sync"),
    ("mailmigrate.cli", "mailmigrate.report"),
    ("mailmigrate.mailbox", "mailmigrate.mailbox.imap"),
    ("mailmigrate.mailbox", "mailmigrate.mailbox.ews"),
    ("mailmigrate_airflow.operators", "mailmigrate.sync"),
    ("mailmigrate_airflow.reports", "mailmigrate.report"),
    ("mailmigrate_airflow.factory", "mailmigrate_airflow.approval"),
    ("mailmigrate_airflow.ui", "mailmigrate_airflow.ui.app"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package, base in PACKAGES.items():
        for path in sorted((base / package).rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            ids.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return ids


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """``(imported first-party module, at module level)`` of one module, TYPE_CHECKING left out."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    top = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # "from package import module" imports the module.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, id(node) in top))
    return found


def test_engine_never_imports_airflow() -> None:
    for name, path in _modules().items():
        if not name.startswith("mailmigrate."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for imported in names:
                    assert not imported.startswith(("airflow", "mailmigrate_airflow")), (
                        f"{path.relative_to(ROOT)}:{node.lineno} imports {imported}"
                    )


def test_no_import_cycle_in_plugins_and_include() -> None:
    modules = _modules()
    graph = {
        name: sorted({t for t, _ in _imports(name, path, modules)})
        for name, path in modules.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_first_party_imports_inside_functions_are_the_measured_few() -> None:
    modules = _modules()
    deferred = {
        (name, target)
        for name, path in modules.items()
        for target, at_top in _imports(name, path, modules)
        if not at_top and target.startswith(FIRST_PARTY)
    }
    assert deferred == DEFERRED
