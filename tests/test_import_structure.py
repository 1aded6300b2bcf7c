"""The package's layering, checked on the source (every import statement, relative ones
resolved to absolute names):

* config and utils at the bottom; data, io, synthetic, modeling, solver and checkpoint
  above them; evaluation above those; the engine and the methods both stand on these and
  never import each other; deploy (the exported-model runtimes) stands on the engine and
  imports no method; visualization, tools/, vps_d2/d2/ and vps_d2/cli/ on top (no package
  of vps_d2 imports the cli: it is the commands' layer, like tools/);
* data imports no modeling (nor io or synthetic, which stand on it);
* evaluation draws nothing (no vps_d2.visualization);
* no vps_d2 import hidden inside a function (a way to dodge an import circle).

Lazy imports, for start-up speed only, are module-level calls ``x = lazy_import("vps_d2.y")``
(:mod:`vps_d2.utils.lazy`): the checks read them as imports of ``vps_d2.y``, so the layering
rules apply to them, and one inside a function counts as a hidden import.

The core never importing the methods also means no config <-> methods import circle: each
method registers itself when imported.
"""

import ast
import glob
import os

import pytest
from train_net_runner import ROOT

CORE = (
    "config",
    "data",
    "modeling",
    "solver",
    "engine",
    "evaluation",
    "checkpoint",
    "utils",
    "visualization",
    "io",
    "synthetic",
    "deploy",
)
# Packages below the evaluation: they import none of the packages above them.
LOWER = ("config", "utils", "data", "io", "synthetic", "modeling", "solver", "checkpoint")
UPPER = ("evaluation", "engine", "d2", "methods", "visualization")
# What each package may not import, beyond UPPER for the LOWER ones.
FORBIDDEN = {
    "config": ("data", "io", "synthetic", "modeling", "solver", "checkpoint"),
    "utils": ("config", "data", "io", "synthetic", "modeling", "solver", "checkpoint"),
    "data": ("modeling", "io", "synthetic", "solver", "checkpoint"),
    "modeling": ("io", "synthetic", "solver"),
    "solver": ("data", "io", "synthetic"),
    "evaluation": ("visualization", "engine", "d2", "methods"),
    "engine": ("methods", "d2"),
    "deploy": ("methods", "d2", "visualization"),
}


def _module_parts(path: str, root: str = ROOT) -> tuple[list[str], list[str]]:
    """``(module, package)`` of a file, as lists of names (vps_d2/a/b.py -> vps_d2.a.b)."""
    rel = os.path.relpath(path, root)[: -len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        return rel[:-1], rel[:-1]
    return rel, rel[:-1]


def _imports(path: str, *, in_functions: bool = False, root: str = ROOT):
    """Absolute names imported by the file at ``path`` (``from a import b`` gives ``a`` and
    ``a.b``). ``in_functions``: only the imports inside a function body."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    _, package = _module_parts(path, root)
    nodes = ast.walk(tree)
    if in_functions:
        funcs = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        nodes = (n for fn in funcs for n in ast.walk(fn))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) == "lazy_import"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield node.args[0].value  # lazy_import("vps_d2.x"): an import of vps_d2.x


def _library_files(pkg: str, root: str = ROOT) -> list[str]:
    """The .py files of vps_d2/<pkg> (a method's tests/ left out)."""
    paths = glob.glob(os.path.join(root, "vps_d2", pkg, "**", "*.py"), recursive=True)
    return sorted(p for p in paths if f"{os.sep}tests{os.sep}" not in os.path.relpath(p, root))


def _offenders(pkgs, forbidden, root: str = ROOT) -> list[str]:
    """``"<file>: <name>"`` of each import of ``vps_d2.<p>`` with p in ``forbidden(pkg)``."""
    bad = []
    for pkg in pkgs:
        for path in _library_files(pkg, root):
            for name in _imports(path, root=root):
                parts = name.split(".")
                if parts[0] == "vps_d2" and len(parts) > 1 and parts[1] in forbidden(pkg):
                    bad.append(f"{os.path.relpath(path, root)}: {name}")
    return bad


def test_core_packages_never_import_methods():
    offenders = _offenders(CORE, lambda pkg: ("methods",))
    assert not offenders, offenders


def test_lower_packages_import_only_downwards():
    """config/utils/data/io/synthetic/modeling/solver/checkpoint import no evaluation,
    engine, d2, methods or visualization; config/utils nothing of the package above them;
    data no modeling, io or synthetic (io and synthetic stand on data)."""
    offenders = _offenders(LOWER, lambda pkg: UPPER + FORBIDDEN.get(pkg, ()))
    assert not offenders, offenders


def test_nothing_imports_the_cli():
    """vps_d2/cli/ is the top layer (the commands): no other package imports it."""
    pkgs = [d for d in os.listdir(os.path.join(ROOT, "vps_d2")) if d not in ("cli", "__pycache__")]
    pkgs = [d for d in pkgs if os.path.isdir(os.path.join(ROOT, "vps_d2", d))]
    offenders = _offenders(pkgs, lambda pkg: ("cli",))
    assert not offenders, offenders


def test_evaluation_imports_no_visualization_engine_or_methods():
    offenders = _offenders(["evaluation"], lambda pkg: FORBIDDEN[pkg])
    assert not offenders, offenders


def test_engine_and_methods_never_import_each_other():
    """A method (e.g. diff_vps registering its training step) imports no vps_d2.engine, and
    the engine no method (a method's tests/ may use the engine)."""
    offenders = _offenders(["methods"], lambda pkg: ("engine", "d2"))
    offenders += _offenders(["engine"], lambda pkg: FORBIDDEN[pkg])
    offenders += _offenders(["deploy"], lambda pkg: FORBIDDEN[pkg])
    assert not offenders, offenders


def test_no_vps_d2_import_inside_a_function():
    """Library code imports vps_d2 at module level only (optional third-party packages may
    be imported where they are used)."""
    offenders = []
    for path in glob.glob(os.path.join(ROOT, "vps_d2", "**", "*.py"), recursive=True):
        if f"{os.sep}tests{os.sep}" in os.path.relpath(path, ROOT):
            continue
        offenders += [
            f"{os.path.relpath(path, ROOT)}: {name}"
            for name in _imports(path, in_functions=True)
            if name.split(".")[0] == "vps_d2"
        ]
    assert not offenders, offenders


# ------------------------------------------------------------------ the checks can fail
def test_the_check_sees_imports():
    """The parser finds an import of the methods where there is one (the package init)."""
    names = list(_imports(os.path.join(ROOT, "vps_d2", "__init__.py")))
    assert "vps_d2.methods" in names, names


@pytest.mark.parametrize(
    "source, package, forbidden",
    [
        ("from vps_d2.visualization import save_worst_cases\n", "evaluation", "visualization"),
        ("from ..visualization import Visualizer\n", "evaluation", "visualization"),
        ("import vps_d2.engine.trainer\n", "methods", "engine"),
        ("from vps_d2.engine import TRAIN_STEP_REGISTRY\n", "methods", "engine"),
        ("from vps_d2.modeling import build_model\n", "data", "modeling"),
        ("from ..modeling import build_model\n", "data", "modeling"),
        ("from vps_d2 import evaluation\n", "modeling", "evaluation"),
        ("from vps_d2.io import VideoReader\n", "data", "io"),
        ('_engine = lazy_import("vps_d2.engine")\n', "methods", "engine"),
        ("from vps_d2.cli import run_command\n", "engine", "cli"),
    ],
)
def test_the_checks_can_fail(tmp_path, source, package, forbidden):
    """A file with a forbidden import, placed as vps_d2/<package>/x.py, is reported (and a
    clean one is not)."""
    pkg_dir = tmp_path / "vps_d2" / package
    pkg_dir.mkdir(parents=True)
    (pkg_dir / "clean.py").write_text("import os\nfrom . import x\n", encoding="utf-8")
    (pkg_dir / "x.py").write_text(source, encoding="utf-8")
    found = _offenders([package], lambda pkg: (forbidden,), root=str(tmp_path))
    where = os.path.join("vps_d2", package, "x.py")
    assert found and all(x.startswith(f"{where}: vps_d2.{forbidden}") for x in found), found


def test_the_function_check_sees_a_hidden_import(tmp_path):
    pkg_dir = tmp_path / "vps_d2" / "data"
    pkg_dir.mkdir(parents=True)
    (pkg_dir / "x.py").write_text(
        "import os\n\n\ndef f():\n    from ..modeling import m\n", encoding="utf-8"
    )
    names = list(_imports(str(pkg_dir / "x.py"), in_functions=True, root=str(tmp_path)))
    assert names == ["vps_d2.modeling", "vps_d2.modeling.m"], names


def test_the_function_check_sees_a_hidden_lazy_import(tmp_path):
    """lazy_import is for module level only: inside a function it is a hidden import."""
    pkg_dir = tmp_path / "vps_d2" / "data"
    pkg_dir.mkdir(parents=True)
    (pkg_dir / "x.py").write_text(
        'from ..utils.lazy import lazy_import\n_io = lazy_import("vps_d2.io")\n\n\n'
        'def f():\n    return lazy_import("vps_d2.modeling")\n',
        encoding="utf-8",
    )
    path = str(pkg_dir / "x.py")
    assert list(_imports(path, in_functions=True, root=str(tmp_path))) == ["vps_d2.modeling"]
    assert "vps_d2.io" in list(_imports(path, root=str(tmp_path)))


# ---------------------------------------------------------------------------- clip contract
def _input_clip_reads(source: str, path: str = "<string>") -> list[int]:
    """Lines where the code reads ``<anything>.INPUT.CLIP`` (an attribute chain; text in
    strings and docstrings, e.g. error messages naming the key, does not count)."""
    lines = []
    for node in ast.walk(ast.parse(source, path)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "CLIP"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "INPUT"
        ):
            lines.append(node.lineno)
    return lines


def test_methods_never_read_input_clip():
    """A method declares its clips once, in ``clip_contract(cfg)`` from its own keys; the
    engine checks INPUT.CLIP against it (vps_d2.modeling.resolve_clip_config). No method
    module (tests aside) reads INPUT.CLIP: not in from_config, not in its sampler."""
    offenders = []
    for path in glob.glob(os.path.join(ROOT, "vps_d2", "methods", "**", "*.py"), recursive=True):
        if f"{os.sep}tests{os.sep}" in path:
            continue
        for line in _input_clip_reads(open(path, encoding="utf-8").read(), path):
            offenders.append(f"{os.path.relpath(path, ROOT)}:{line}")
    assert not offenders, offenders


def test_the_input_clip_check_sees_reads():
    code = 'def from_config(cls, cfg):\n    "INPUT.CLIP.LENGTH"\n    n = cfg.INPUT.CLIP.LENGTH\n'
    assert _input_clip_reads(code) == [3]
    assert _input_clip_reads("x = c.INPUT['CLIP']\ny = self.cfg.INPUT.CLIP\n") == [2]


def test_test_module_basenames_are_unique():
    """pytest imports test files without packages by their basename: two files of one name
    (in different folders) make the second a collection error ("import file mismatch")."""
    seen: dict[str, str] = {}
    dup = []
    for folder in ("tests", os.path.join("vps_d2", "methods")):
        pattern = os.path.join(ROOT, folder, "**", "test_*.py")
        for path in sorted(glob.glob(pattern, recursive=True)):
            name = os.path.basename(path)
            if name in seen:
                dup.append(f"{os.path.relpath(seen[name], ROOT)} and {os.path.relpath(path, ROOT)}")
            seen.setdefault(name, path)
    assert len(seen) > 20 and not dup, dup
