"""The house rules, checked on the source: dependencies between packages run one way
(file formats -> data -> functional -> kernels -> nn -> models -> optim -> train -> export
-> command line; no import cycle, function-local and type-checking imports included), no
module is imported by a string (one documented exception), the documented import paths
keep every name, every module's ``__all__`` lists only its API, at most 20 loose modules
sit at the top of the package, and no module grows past about 400 lines."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path

import pytest
from _cifar import REPO_ROOT

SRC = REPO_ROOT / "src"

# Tiers from the bottom: a module may import its own tier and those below it. Each package
# is one tier, so dependencies between packages run one way.
TIERS = {
    "base": ["nndl", "nndl.validation", "nndl.checks", "nndl.backend", "nndl.rng"],
    "io": ["nndl.io", "nndl.io.*"],
    "plots": ["nndl.plots"],
    "data": ["nndl.data", "nndl.datasets", "nndl.datasets.*"],
    "functional": [
        "nndl.functional", "nndl.functional.*", "nndl.gradient_check",
        "nndl.layers", "nndl.conv_layers", "nndl.layer_utils",
    ],
    "kernels": ["nndl.kernels", "nndl.kernels.*", "nndl.fast_layers", "nndl.conv_layer_utils"],
    "nn": ["nndl.nn", "nndl.nn.*"],
    "models": ["nndl.models", "nndl.models.*", "nndl.fc_net", "nndl.cnn", "nndl.network"],
    "optim": ["nndl.optim", "nndl.optim.*"],
    "train": [
        "nndl.train", "nndl.train.*",
        "nndl.solver", "nndl.schedules", "nndl.ema", "nndl.augment", "nndl.callbacks",
    ],
    "export": ["nndl.export", "nndl.export.*"],
    "explain": ["nndl.explain", "nndl.explain.*"],
    # nndl tune drives nndl train's flags, and the nndl command hands it 'nndl tune ...'.
    "cli": ["nndl.cli", "nndl.cli.*", "nndl.__main__", "nndl.tune", "nndl.tune.*"],
}  # fmt: skip
# The documented import paths kept where the code moved: each re-exports, from the package
# where its names live now, every name it offered (tests/data/public_names.json). Nothing
# inside nndl imports them; they are for users and notebooks.
COMPAT = {
    "nndl.layers", "nndl.conv_layers", "nndl.fast_layers", "nndl.layer_utils",
    "nndl.conv_layer_utils", "nndl.fc_net", "nndl.cnn", "nndl.network", "nndl.solver",
    "nndl.schedules", "nndl.ema", "nndl.augment", "nndl.callbacks", "nndl.checks",
}  # fmt: skip
MAX_LOOSE_MODULES = 20
ORDER = list(TIERS)

MAX_LINES = 430  # "about 400"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "nndl").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def tier(module: str) -> str:
    for name, patterns in TIERS.items():
        for p in patterns:
            if module == p or (p.endswith(".*") and module.startswith(p[:-1])):
                return name
    raise AssertionError(f"{module} is in no tier of tests/test_layout.py; add it")


def imports(module: str) -> set[str]:
    """The nndl modules ``module`` imports anywhere in its source (top level, inside
    functions, under ``if TYPE_CHECKING``)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "nndl")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "nndl":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    found.discard(module)
    return found


def test_every_module_is_in_a_tier():
    for module in MODULES:
        tier(module)


def test_dependencies_run_one_way():
    wrong = []
    for module in MODULES:
        own = ORDER.index(tier(module))
        for dep in sorted(imports(module)):
            if ORDER.index(tier(dep)) > own:
                wrong.append(f"{module} ({tier(module)}) imports {dep} ({tier(dep)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {m: imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_function_local_imports(tmp_path):
    # The resolver itself: relative, absolute and function-local forms all count.
    assert "nndl.plots" in imports("nndl.cli.recorder")  # inside write_plots
    assert "nndl.nn" in imports("nndl.models.network")
    # The numba switch's loaders import their kernel modules where the checker sees them.
    assert "nndl.kernels.numba_fused" in imports("nndl.kernels.fused")
    assert "nndl.kernels.numba_winograd" in imports("nndl.kernels.winograd")


def test_no_module_is_much_longer_than_400_lines():
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    long = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not long, long


# --- star imports bring only the API ----------------------------------------------------

STAR_MODULES = [m for m in MODULES if not m.endswith("__main__")] + [
    "cs231n.layers", "cs231n.layer_utils", "cs231n.conv_layers", "cs231n.fast_layers",
    "cs231n.conv_layer_utils", "cs231n.optim", "cs231n.solver", "cs231n.gradient_check",
    "cs231n.data_utils", "cs231n.classifiers.cnn", "cs231n.classifiers.fc_net",
]  # fmt: skip


@pytest.mark.parametrize("name", STAR_MODULES)
def test_star_import_brings_only_the_api(name):
    if name in ("nndl.kernels.numba_winograd", "nndl.kernels.numba_fused"):
        pytest.importorskip("numba")
    module = importlib.import_module(name)
    ns: dict = {}
    exec(f"from {name} import *", ns)  # noqa: S102 - what a notebook does
    ns.pop("__builtins__")
    if name.startswith("nndl"):
        assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"
        assert set(ns) == set(module.__all__)
        assert len(module.__all__) == len(set(module.__all__)), "duplicates in __all__"
    for key, obj in ns.items():
        assert not inspect.ismodule(obj), f"{name} exports the module {key}"
        if inspect.isfunction(obj) or inspect.isclass(obj):
            # Defined in this module (or, for a package, below it, or in a private
            # helper module); the classic names re-export nndl's own objects.
            # A kept import path (COMPAT) re-exports from where its names live now.
            home = "nndl" if name.startswith("cs231n") or name in COMPAT else name
            private = obj.__module__.startswith("nndl._")
            assert obj.__module__ == home or obj.__module__.startswith(home + ".") or private, (
                f"{name} exports {key} from {obj.__module__}"
            )


def test_classic_star_imports_keep_the_notebook_names():
    ns: dict = {}
    exec("from cs231n.layers import *; from cs231n.solver import *", ns)  # noqa: S102
    for key in ("affine_forward", "conv_forward_naive", "spatial_batchnorm_forward", "Solver"):
        assert key in ns
    for key in ("np", "Any", "os", "time", "math", "warnings", "check_float", "MutableMapping"):
        assert key not in ns


# --- the package boundaries ---------------------------------------------------------------


def test_at_most_20_loose_modules_at_the_top():
    loose = sorted(p.stem for p in (SRC / "nndl").glob("*.py") if not p.stem.startswith("__"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose


def test_nothing_inside_nndl_imports_a_kept_import_path():
    # Code imports the package where a name lives; the kept paths are for users.
    wrong = [
        f"{m} imports {dep}"
        for m in MODULES
        if m not in COMPAT
        for dep in sorted(imports(m) & COMPAT)
    ]
    assert not wrong, "\n".join(wrong)


# Calls that import a module named by a string, which the import checker cannot see.
STRING_IMPORTS = {
    "import_module",
    "__import__",
    "run_module",
    "run_path",
    "spec_from_file_location",
}
# The one exception: nndl tune's child process runs the nndl command as ``python -m nndl``
# would (runpy), so that a trial is exactly an nndl train run. The numba switch
# (nndl.kernels.parallel.compiled) takes a loader function whose import the checker sees.
STRING_IMPORT_ALLOWED = {"nndl.tune._child": {"run_module"}}


def test_no_module_is_imported_by_a_string():
    found = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in STRING_IMPORTS and name not in STRING_IMPORT_ALLOWED.get(m, set()):
                found.append(f"{m}: {name}(...) at line {node.lineno}")
    assert not found, "\n".join(found)


def test_the_string_import_check_can_fail(tmp_path):
    # The scan above sees through an attribute call (importlib.import_module(...)).
    tree = ast.parse("import importlib\nimportlib.import_module('nndl.x')\n")
    calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert calls == ["import_module"] and "import_module" in STRING_IMPORTS


PUBLIC_NAMES = json.loads((REPO_ROOT / "tests" / "data" / "public_names.json").read_text())


@pytest.mark.parametrize("name", sorted(PUBLIC_NAMES))
def test_documented_import_paths_keep_every_name(name):
    # Recorded before the packages by concept: each path offers at least what it did.
    module = importlib.import_module(name)
    missing = [n for n in PUBLIC_NAMES[name] if not hasattr(module, n)]
    assert not missing, f"{name} lost {missing}"
    if hasattr(module, "__all__"):
        assert not set(PUBLIC_NAMES[name]) - set(module.__all__)


def test_the_package_ships_its_type_marker():
    assert (SRC / "nndl" / "py.typed").is_file()


def test_flags_are_checked_in_one_place():
    # "Is this a bool?" is asked through nndl.validation (is_bool / check_bool / bool_arg),
    # not by a local idiom (isinstance(v, (bool, np.bool_)), type(v).__name__ == "bool_").
    idioms = ("(bool, np.bool_)", '__name__ != "bool_"', '__name__ == "bool_"')
    found = [
        f"{m}: {idiom}"
        for m, path in MODULES.items()
        if m != "nndl.validation"
        for idiom in idioms
        if idiom in path.read_text()
    ]
    assert not found, "\n".join(found)
