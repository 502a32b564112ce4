"""Gradients nobody reads are not computed: ``Network.skip_grads`` (the Solver passes the
parameters a step leaves unchanged) returns zeros for them, leaves every other gradient
and the loss as they were, and lets a layer that nothing before it learns skip its
backward pass (airbench94_muon's whitening conv once its bias stops training)."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.network import Network
from nndl.solver import Solver

SPEC = [
    {"type": "conv2d", "name": "whiten", "filters": 4, "kernel_size": 2, "pad": "valid"},
    {"type": "gelu", "name": "act"},
    {"type": "conv_bn_act", "name": "block", "filters": 5, "activation": "gelu"},
    {"type": "flatten"},
    {"type": "linear", "name": "head", "units": 3},
]


def _net(reg=0.1):
    return Network(SPEC, input_dim=(2, 5, 5), num_classes=3, reg=reg, dtype=np.float64, seed=0)


def _batch(N=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 2, 5, 5)), rng.integers(3, size=N)


def _spy(module, calls):
    """Record each backward call's ``need_input_grad`` on ``module``."""
    backward = module.backward

    def spy(dout, cache, ctx):
        calls.append(ctx.need_input_grad)
        return backward(dout, cache, ctx)

    module.backward = spy


@pytest.mark.parametrize("skipped", [{"whiten.W"}, {"whiten.W", "whiten.b"}, {"head.W"}])
def test_skipped_gradients_are_zeros_and_the_rest_are_unchanged(skipped):
    net = _net()
    X, y = _batch()
    loss, grads = net.loss(X, y)
    net.skip_grads(skipped)
    loss_skip, grads_skip = net.loss(X, y)
    assert loss_skip == pytest.approx(loss, rel=1e-14)  # the penalties still count
    assert set(grads_skip) == set(grads)
    for key, grad in grads.items():
        if key in skipped:
            assert not grads_skip[key].any(), key
        else:
            np.testing.assert_allclose(grads_skip[key], grad, rtol=1e-12, atol=1e-15)
    net.skip_grads(())  # all computed again
    np.testing.assert_array_equal(net.loss(X, y)[1]["whiten.W"], grads["whiten.W"])


def test_a_layer_nothing_before_learns_runs_no_backward_pass():
    net = _net()
    X, y = _batch()
    whiten, act, block = net.root.layers[:3]
    calls = {name: [] for name in ("whiten", "act", "block")}
    for name, module in zip(calls, (whiten, act, block), strict=True):
        _spy(module, calls[name])
    net.loss(X, y)
    assert calls == {"whiten": [False], "act": [True], "block": [True]}
    net.skip_grads({"whiten.W"})  # the bias learns: its gradient needs dx of act
    net.loss(X, y)
    assert calls == {"whiten": [False] * 2, "act": [True] * 2, "block": [True] * 2}
    net.skip_grads({"whiten.W", "whiten.b"})  # nothing below block learns: no dx for it
    net.loss(X, y)
    assert calls == {"whiten": [False] * 2, "act": [True] * 2, "block": [True, True, False]}


def test_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match=r"Network.skip_grads: .*unknown \['whiten.gamma'\]"):
        _net().skip_grads(["whiten.W", "whiten.gamma"])


def _solver(model, **kw):
    X, y = _batch(N=24, seed=2)
    data = {"X_train": X[:16], "y_train": y[:16], "X_val": X[16:], "y_val": y[16:]}
    groups = [{"params": "whiten.W", "frozen": True},
              {"params": "whiten.b", "train_epochs": 1}]  # fmt: skip
    return Solver(model, data, update_rule="sgd_momentum", batch_size=4, num_epochs=3,
                  optim_config={"learning_rate": 0.05}, param_groups=groups,
                  schedule={"name": "linear"}, verbose=False, seed=0, **kw)  # fmt: skip


def test_the_solver_skips_what_each_step_leaves_unchanged_and_trains_the_same():
    model = _net()
    passed = []
    skip_grads = model.skip_grads
    model.skip_grads = lambda names: (passed.append(frozenset(names)), skip_grads(names))
    solver = _solver(model)
    solver.train()
    steps = passed[0::2]  # each step sets its skip set, then clears it
    assert all(not s for s in passed[1::2]) and len(steps) == 12
    assert steps[:4] == [frozenset({"whiten.W"})] * 4  # the bias trains for epoch 1
    assert steps[4:] == [frozenset({"whiten.W", "whiten.b"})] * 8
    reference = _net()
    reference.skip_grads = None  # a model that cannot skip: every gradient computed
    ref = _solver(reference)
    ref.train()
    for key, value in ref.model.params.items():
        np.testing.assert_allclose(solver.model.params[key], value, rtol=1e-10, atol=1e-13)
