"""The house rules, checked on the source: dependencies run one way (file formats -> data
-> layers -> models -> training -> export -> command line, no import cycle, function-local
and type-checking imports included), every module's ``__all__`` lists only its API, and
no module grows past about 400 lines."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from _cifar import REPO_ROOT

SRC = REPO_ROOT / "src"

# Tiers from the bottom: a module may import its own tier and those below it.
TIERS = {
    "base": ["nndl", "nndl.checks", "nndl.backend", "nndl.specs", "nndl.rng"],
    "io": ["nndl.io", "nndl.io.*"],
    "plots": ["nndl.plots"],
    "data": ["nndl.data", "nndl.datasets", "nndl.datasets.*"],
    "layers": [
        "nndl.layers", "nndl.layer_utils", "nndl.conv_layers", "nndl.fast_layers",
        "nndl._layout", "nndl._im2col", "nndl._max_pool", "nndl.fast_pooling",
        "nndl.conv_layer_utils", "nndl.winograd", "nndl._winograd_transforms",
        "nndl._winograd_compiled", "nndl.fused", "nndl._fused_numpy", "nndl._fused_compiled",
        "nndl.parallel", "nndl._scratch", "nndl._numba_kernels", "nndl._numba_fused",
        "nndl.gradient_check",
        "nndl.nn", "nndl.nn.*",
    ],
    "models": [
        "nndl.model_base", "nndl.cnn", "nndl.fc_net", "nndl.network", "nndl.legacy",
        "nndl.models",
    ],
    "training": [
        "nndl.optim", "nndl._param_groups", "nndl.schedules", "nndl.ema", "nndl.augment",
        "nndl.batch_loader", "nndl.callbacks", "nndl.interrupts", "nndl.solver_state",
        "nndl.solver_setup", "nndl.solver",
    ],
    "export": ["nndl.export", "nndl.export.*"],
    "explain": ["nndl.explain", "nndl.explain.*"],
    # nndl tune drives nndl train's flags, and the nndl command hands it 'nndl tune ...'.
    "cli": ["nndl.cli", "nndl.cli.*", "nndl.__main__", "nndl.tune", "nndl.tune.*"],
}  # fmt: skip
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
    assert "nndl.nn" in imports("nndl.network")


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
    if name == "nndl._numba_kernels":
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
            home = "nndl" if name.startswith("cs231n") else name
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
