"""The engine stays free of Airflow: it runs from a shell, in tests and in benchmarks alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "include" / "mailmigrate"


def test_no_module_of_the_engine_imports_airflow():
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "airflow"
            ]
    assert ENGINE.joinpath("sync.py").exists()
    assert offenders == []


def test_importing_the_whole_engine_loads_no_airflow_module():
    modules = sorted(
        p.stem if p.stem != "__init__" else p.parent.name for p in ENGINE.rglob("*.py")
    )
    assert "sync" in modules and "imap" in modules
    code = (
        "import importlib, pkgutil, sys, mailmigrate, mailmigrate.mailbox\n"
        "for pkg in (mailmigrate, mailmigrate.mailbox):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
