"""``recompute``: a network's conv layers cache their input instead of its transformed
copy (Winograd tiles, im2col columns) and rebuild it in the backward pass. The same loss
and gradients, bit for bit, in less memory; ``nndl train --recompute`` sets it."""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _cifar import write_synthetic_cifar10  # noqa: E402
from _cli import run_cli  # noqa: E402

from nndl.cli.presets import airbench_spec  # noqa: E402
from nndl.network import Network  # noqa: E402
from nndl.nn.module import Context  # noqa: E402


def _net(recompute):
    net = Network(airbench_spec((16, 32, 32)), seed=0, label_smoothing=0.2)
    net.init_from_data(np.random.default_rng(2).standard_normal((64, 3, 32, 32)))
    net.recompute = recompute
    return net


def _batch(N=24):
    rng = np.random.default_rng(1)
    return rng.standard_normal((N, 3, 32, 32)).astype(np.float32), rng.integers(10, size=N)


def test_recompute_gives_the_same_loss_and_gradients_bit_for_bit():
    X, y = _batch()
    loss, grads = _net(False).loss(X, y)
    loss_r, grads_r = _net(True).loss(X, y)
    assert loss_r == loss
    assert set(grads_r) == set(grads)
    for key, grad in grads.items():
        np.testing.assert_array_equal(grads_r[key], grad, err_msg=key)


def _cached_bytes(net, X):
    """Bytes NumPy holds after a training forward pass, its caches kept."""
    tracemalloc.start()
    try:
        ctx = Context(net.params, net.buffers, {}, "train", None, need_input_grad=False,
                      recompute=net.recompute)  # fmt: skip
        before = tracemalloc.get_traced_memory()[0]
        out, cache = net.root.forward(X, ctx)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_recompute_keeps_the_transformed_inputs_out_of_the_caches():
    X, _ = _batch(48)
    nets = _net(False), _net(True)
    for net in nets:  # the per-thread scratch buffers, allocated by a first pass
        net.loss(X, np.zeros(len(X), int))
    kept, recomputed = (_cached_bytes(net, X) for net in nets)
    # Each conv's input is already held (by the layer before it); its transformed copy,
    # 2.25x (Winograd F(4x4,3x3)) or 4x (F(2x2,3x3), the NumPy path) its size, is gone.
    assert recomputed < 0.75 * kept, (recomputed, kept)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return write_synthetic_cifar10(tmp_path_factory.mktemp("data"), n_per_batch=40, n_test=40)


SMALL = ["--num-training", "160", "--num-validation", "40", "--num-test", "40", "--epochs",
         "1", "--batch-size", "40", "--no-plots", "--quiet"]  # fmt: skip


def test_the_flag_recomputes_and_is_recorded(cifar, tmp_path):
    runs = {}
    for flag in ("--no-recompute", "--recompute"):
        run = tmp_path / flag
        code, _, err = run_cli("train", "--data-dir", cifar, "--out", run, "--num-filters",
                               "16", "16", flag, *SMALL)  # fmt: skip
        assert code == 0, err
        runs[flag] = run
    configs = {f: json.loads((r / "config.json").read_text()) for f, r in runs.items()}
    assert configs["--recompute"]["settings"]["recompute"] is True
    assert configs["--no-recompute"]["settings"]["recompute"] is False
    metrics = {f: (r / "metrics.jsonl").read_text() for f, r in runs.items()}
    strip = [line.split('"elapsed"')[0] for line in metrics["--recompute"].splitlines()]
    assert strip == [line.split('"elapsed"')[0] for line in metrics["--no-recompute"].splitlines()]


def test_the_flag_is_refused_for_a_classic_model(cifar, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data-dir", cifar, "--out", run, "--model", "fc_net",
                           "--recompute", *SMALL)  # fmt: skip
    assert code == 2 and "nndl train: error: --recompute applies to" in err, err
    assert "not fc_net" in err and not run.exists()
