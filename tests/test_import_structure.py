"""The core never imports the methods (no config <-> methods import circle), checked on the
source: vps_d2/config, data, modeling, solver, engine, evaluation, checkpoint and utils
import nothing from vps_d2.methods (each method registers itself when imported)."""

import ast
import glob
import os
from train_net_runner import ROOT

CORE = ("config", "data", "modeling", "solver", "engine", "evaluation", "checkpoint", "utils",
        "visualization")  # fmt: skip


def _imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            yield base
            yield from (f"{base.rstrip('.')}.{a.name}" for a in node.names)


def test_core_packages_never_import_methods():
    offenders = []
    for pkg in CORE:
        for path in glob.glob(os.path.join(ROOT, "vps_d2", pkg, "**", "*.py"), recursive=True):
            for name in _imports(path):
                if name.startswith("vps_d2.methods") or ".methods" in name:
                    offenders.append(f"{os.path.relpath(path, ROOT)}: {name}")
    assert not offenders, offenders


def test_the_check_sees_imports():
    """The parser finds an import of the methods where there is one (the package init)."""
    names = list(_imports(os.path.join(ROOT, "vps_d2", "__init__.py")))
    assert ".methods" in names, names
