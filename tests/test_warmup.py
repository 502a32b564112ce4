"""The kernels of a run compiled ahead of its first step (nndl.train.warmup): the dry run
lists what a step calls without running it; after the warm-up a training step compiles
nothing; the warm-up never changes a run's result."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _cifar import write_synthetic_cifar10
from _cli import run_cli

from nndl.cli.flags import DEFAULTS
from nndl.cli.model_plan import preflight
from nndl.kernels import parallel
from nndl.models import build_model, load_model

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_record_compiled_lists_the_calls_and_runs_none():
    ran = []

    def kernel(*args):
        ran.append(args)

    with parallel.record_compiled() as calls:
        parallel.run_compiled(kernel, 5, "a", 1)
        with parallel.record_compiled() as inner:
            parallel.run_compiled(kernel, 3, "b")
        parallel.run_compiled(kernel, 2, "c")
    assert ran == []
    assert calls == [(kernel, ("a", 1, 0, 5)), (kernel, ("c", 0, 2))]
    assert inner == [(kernel, ("b", 0, 3))]
    parallel.run_compiled(kernel, 1, "d")  # outside a dry run, kernels run again
    assert ran == [("d", 0, 1)]


def _main_job_net():
    kwargs = preflight(DEFAULTS, (), (3, 32, 32), 10)
    return build_model(DEFAULTS["model"], **kwargs)


def test_the_dry_run_lists_the_main_jobs_kernels_in_call_order():
    pytest.importorskip("numba")
    from nndl.train.warmup import kernel_calls

    calls = kernel_calls(_main_job_net(), (3, 32, 32), np.float32)
    names = [kernel.py_func.__name__ for kernel, _ in calls]
    # conv1 (3 channels) is im2col; conv2 and conv3 Winograd; each block conv-BN-ReLU-pool.
    assert names == ["forward_pool_last", "input_transform4", "output_transform4",
                     "backward_pool_last", "channel_sums", "dout_transform4", "input_grad4",
                     "crop4"]  # fmt: skip
    for _, signature in calls:  # float32 arrays throughout, as the run's steps pass them
        assert all(getattr(t, "dtype", None) in (None, *_numba_types()) for t in signature)


@pytest.mark.parametrize("preset", ["94", "80", "94-sgd"])
def test_the_dry_run_lists_the_kernels_of_each_ladder_net(preset):
    pytest.importorskip("numba")
    from nndl.cli.entry import build_parser
    from nndl.cli.flags import settings_from_args
    from nndl.train.warmup import kernel_calls

    settings = settings_from_args(build_parser().parse_args(["train", "--preset", preset]))
    model = build_model(settings["model"], **preflight(settings, (), (3, 32, 32), 10))
    names = [kernel.py_func.__module__ + "." + kernel.py_func.__name__
             for kernel, _ in kernel_calls(model, (3, 32, 32), settings["dtype"])]  # fmt: skip
    # the whitening conv is initialised from the dry run's images; the Winograd conv of
    # each group pools inside its output transform (airbench's conv - pool - BN - GELU)
    assert "nndl.kernels.numba_winograd.output_transform4_pool2" in names
    assert "nndl.kernels.numba_winograd.dout_transform4_pool2" in names
    assert len(names) == len(set(names))


def _numba_types():
    from numba import types

    return (types.float32, types.uint8)


# A fresh numba cache: the warm-up (thread and helper process), then a real step at
# another batch size under a listener for numba compiles, which must hear none.
_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from nndl.cli.flags import DEFAULTS
    from nndl.cli.model_plan import preflight
    from nndl.models import build_model
    from nndl.train.warmup import KernelWarmup, _on_first_compile, kernel_calls

    kwargs = preflight(DEFAULTS, (), (3, 32, 32), 10)
    compiles = []
    with _on_first_compile(lambda: compiles.append("dry run")):
        kernel_calls(build_model("convnet", **kwargs), (3, 32, 32), np.float32)
    warm = KernelWarmup("convnet", kwargs, (3, 32, 32), "float32")
    with warm:
        pass
    model = build_model("convnet", **kwargs)
    X = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    with _on_first_compile(lambda: compiles.append("step")):
        model.loss(X, np.arange(8) % 10)
        model.loss(X)
    print(json.dumps({"compiles": compiles, "error": repr(warm.error),
                      "helper": warm.helper_started, "process": warm._process is None}))
    """
)


def test_after_the_warmup_a_training_step_compiles_nothing(tmp_path):
    pytest.importorskip("numba")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PYTHONPATH": SRC,
           "NNDL_NUMBA": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"compiles": [], "error": "None", "helper": True, "process": True}
    # the helper wrote into the same cache the thread read
    assert any((tmp_path / "numba").rglob("*.nbi"))


def test_the_warmup_keeps_its_errors_to_itself():
    from nndl.train.warmup import KernelWarmup

    warm = KernelWarmup("convnet", {"num_filters": "not a list"}, (3, 32, 32), "float32")
    with warm:
        pass
    assert isinstance(warm.error, Exception)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return write_synthetic_cifar10(tmp_path_factory.mktemp("data"), n_per_batch=40, n_test=40)


def test_a_run_is_the_same_with_and_without_the_warmup(cifar, tmp_path, monkeypatch):
    import nndl.cli.train as train

    flags = ["--data-dir", cifar, "--epochs", "1", "--num-training", "80", "--num-validation",
             "20", "--num-test", "20", "--batch-size", "20", "--quiet", "--no-plots"]  # fmt: skip
    assert run_cli("train", "--out", tmp_path / "warm", *flags)[0] == 0
    monkeypatch.setattr(train, "_kernel_warmup", lambda *a: contextlib.nullcontext())
    assert run_cli("train", "--out", tmp_path / "cold", *flags)[0] == 0
    warm, _ = load_model(tmp_path / "warm" / "last_model.npz")
    cold, _ = load_model(tmp_path / "cold" / "last_model.npz")
    assert warm.params.keys() == cold.params.keys()
    for name in warm.params:
        np.testing.assert_array_equal(warm.params[name], cold.params[name])
