"""Tests for nndl.optim: each update rule against two steps computed by hand.

Two steps, so the state carried in ``config`` (velocity, cache, Adam's m, v and t) is
exercised; the hand computations use the textbook formulas, not the library's
rearranged ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from nndl import optim
from nndl.optim import (
    UPDATE_RULES,
    adam,
    get_update_rule,
    nesterov_momentum,
    rmsprop,
    sgd,
    sgd_momentum,
)
from nndl.optim import rules as optim_rules

N, D = 4, 5


def _problem(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, D)).astype(dtype)
    dws = [rng.standard_normal((N, D)).astype(dtype) for _ in range(2)]
    return w, dws


def _run(rule, w, dws, config):
    """Two steps of ``rule`` from ``w``; returns the weights after each and the config."""
    ws = []
    for dw in dws:
        w, config = rule(w, dw, config)
        ws.append(w)
    return ws, config


def test_sgd_two_steps():
    w, dws = _problem()
    ws, config = _run(sgd, w, dws, {"learning_rate": 0.1})
    np.testing.assert_allclose(ws[0], w - 0.1 * dws[0])
    np.testing.assert_allclose(ws[1], w - 0.1 * dws[0] - 0.1 * dws[1])
    assert config["learning_rate"] == 0.1


def test_sgd_momentum_two_steps():
    w, dws = _problem(1)
    lr, mu = 0.1, 0.8
    ws, config = _run(sgd_momentum, w, dws, {"learning_rate": lr, "momentum": mu})
    v1 = -lr * dws[0]
    w1 = w + v1
    v2 = mu * v1 - lr * dws[1]
    w2 = w1 + v2
    np.testing.assert_allclose(ws[0], w1)
    np.testing.assert_allclose(ws[1], w2)
    np.testing.assert_allclose(config["velocity"], v2)


def test_sgd_momentum_starts_from_given_velocity():
    w, dws = _problem(2)
    v0 = np.random.default_rng(3).standard_normal((N, D))
    config = {"learning_rate": 1e-3, "velocity": v0.copy()}
    next_w, config = sgd_momentum(w, dws[0], config)
    v1 = 0.9 * v0 - 1e-3 * dws[0]  # default momentum 0.9
    np.testing.assert_allclose(next_w, w + v1)
    np.testing.assert_allclose(config["velocity"], v1)


def test_nesterov_momentum_two_steps():
    w, dws = _problem(4)
    lr, mu = 0.05, 0.9
    ws, config = _run(nesterov_momentum, w, dws, {"learning_rate": lr, "momentum": mu})
    v0 = np.zeros_like(w)
    v1 = mu * v0 - lr * dws[0]
    w1 = w - mu * v0 + (1 + mu) * v1
    v2 = mu * v1 - lr * dws[1]
    w2 = w1 - mu * v1 + (1 + mu) * v2
    np.testing.assert_allclose(ws[0], w1)
    np.testing.assert_allclose(ws[1], w2)
    np.testing.assert_allclose(config["velocity"], v2)


def test_rmsprop_two_steps():
    w, dws = _problem(5)
    lr, decay, eps = 1e-2, 0.9, 1e-8
    ws, config = _run(rmsprop, w, dws, {"learning_rate": lr, "decay_rate": decay})
    c1 = (1 - decay) * dws[0] ** 2
    w1 = w - lr * dws[0] / (np.sqrt(c1) + eps)
    c2 = decay * c1 + (1 - decay) * dws[1] ** 2
    w2 = w1 - lr * dws[1] / (np.sqrt(c2) + eps)
    np.testing.assert_allclose(ws[0], w1)
    np.testing.assert_allclose(ws[1], w2)
    np.testing.assert_allclose(config["cache"], c2)
    assert config["epsilon"] == eps


def _adam_by_hand(w, dw, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    t = t + 1
    m = b1 * m + (1 - b1) * dw
    v = b2 * v + (1 - b2) * dw**2
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps), m, v, t


def test_adam_defaults_and_two_steps():
    w, dws = _problem(6)
    ws, config = _run(adam, w, dws, None)
    assert config["learning_rate"] == 1e-3
    assert config["beta1"] == 0.9
    assert config["beta2"] == 0.999
    assert config["epsilon"] == 1e-8
    assert config["t"] == 2
    m, v, t = np.zeros_like(w), np.zeros_like(w), 0
    w1, m, v, t = _adam_by_hand(w, dws[0], m, v, t, 1e-3)
    w2, m, v, t = _adam_by_hand(w1, dws[1], m, v, t, 1e-3)
    np.testing.assert_allclose(ws[0], w1, rtol=1e-12)
    np.testing.assert_allclose(ws[1], w2, rtol=1e-12)
    np.testing.assert_allclose(config["m"], m)
    np.testing.assert_allclose(config["v"], v)


def test_adam_continues_from_given_state():
    """The CS231n-style check: start from given m, v and step counter t."""
    w = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    dw = np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)
    m = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    v = np.linspace(0.7, 0.5, num=N * D).reshape(N, D)
    config = {"learning_rate": 1e-2, "m": m.copy(), "v": v.copy(), "t": 5}
    next_w, config = adam(w, dw, config)
    w1, m1, v1, t1 = _adam_by_hand(w, dw, m, v, 5, 1e-2)
    np.testing.assert_allclose(next_w, w1, rtol=1e-12)
    np.testing.assert_allclose(config["m"], m1)
    np.testing.assert_allclose(config["v"], v1)
    assert config["t"] == t1 == 6


def test_adam_small_gradients_use_epsilon():
    """Where v is tiny epsilon dominates the denominator; the folded form must agree."""
    w = np.ones((2, 3))
    dw = np.full((2, 3), 1e-9)
    dw[0, 0] = 0.0
    next_w, _ = adam(w, dw, {"learning_rate": 1.0})
    expected, *_ = _adam_by_hand(w, dw, 0.0, 0.0, 0, 1.0)
    np.testing.assert_allclose(next_w, expected, rtol=1e-12)


RULES = [pytest.param(rule, id=name) for name, rule in UPDATE_RULES.items()]


@pytest.mark.parametrize("rule", RULES)
def test_inplace_option_matches_out_of_place(rule):
    w, dws = _problem(7)
    w_orig = w.copy()
    ws_out, _ = _run(rule, w, dws, {"learning_rate": 1e-2})
    # Out of place: the caller's array is left alone and each step is a new array.
    np.testing.assert_array_equal(w, w_orig)
    assert ws_out[0] is not w

    w_in = w.copy()
    ws_in, config = _run(rule, w_in, dws, {"learning_rate": 1e-2, "inplace": True})
    assert ws_in[0] is w_in and ws_in[1] is w_in
    np.testing.assert_allclose(w_in, ws_out[1], rtol=1e-12, atol=1e-15)
    assert config["inplace"] is True


@pytest.mark.parametrize("rule", RULES)
def test_update_rules_keep_float32(rule):
    w, dws = _problem(8, dtype=np.float32)
    ws, config = _run(rule, w, dws, None)
    assert all(x.dtype == np.float32 for x in ws)
    for key in ("velocity", "cache", "m", "v", "momentum_buffer"):
        if key in config:
            assert config[key].dtype == np.float32
    # And it agrees with the float64 run to float32 precision.
    ws64, _ = _run(rule, w.astype(np.float64), [d.astype(np.float64) for d in dws], None)
    np.testing.assert_allclose(ws[1], ws64[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_update_rule_fills_default_config(rule):
    w, dws = _problem(9)
    next_w, config = rule(w, dws[0])
    assert isinstance(config, dict) and config["learning_rate"] > 0
    assert next_w.shape == w.shape
    # A config passed in is the one updated and returned.
    mine = {"learning_rate": 1e-4}
    _, returned = rule(w, dws[0], mine)
    assert returned is mine


def test_registry_holds_the_spec_rules_and_the_decoupled_ones():
    spec_rules = {"sgd", "sgd_momentum", "nesterov_momentum", "rmsprop", "adam"}
    assert set(UPDATE_RULES) == spec_rules | {"sgdw", "adamw", "muon"}
    assert set(optim.RULE_DEFAULTS) == set(UPDATE_RULES)
    for name, rule in UPDATE_RULES.items():
        assert get_update_rule(name) is rule is getattr(optim, name)
        _, config = rule(np.ones(3), np.ones(3))
        # The defaults filled into a config are exactly the documented table ...
        state = {"velocity", "cache", "m", "v", "momentum_buffer"}
        assert {k: v for k, v in config.items() if k not in state | {"t"}} == {
            k: v for k, v in optim.RULE_DEFAULTS[name].items() if k != "t"
        }
        # ... and the classic rules keep weight decay out of their config (off).
        assert ("weight_decay" in config) == (name not in spec_rules)


def test_star_import_is_clean():
    ns: dict = {}
    exec("from nndl.optim import *", ns)
    assert set(ns) - {"__builtins__"} == set(optim.__all__)
    assert "np" not in ns and "Config" not in ns


def test_get_update_rule_passes_callables_through():
    def my_rule(w, dw, config=None):
        return w, config

    assert get_update_rule(my_rule) is my_rule


def test_get_update_rule_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"^get_update_rule: .*'adagrad'") as info:
        get_update_rule("adagrad")
    for name in UPDATE_RULES:
        assert repr(name) in str(info.value)


# --- decoupled weight decay, SGDW and AdamW ----------------------------------------------


def _sgdw_by_hand(w, dw, buf, lr, mu, wd, nesterov):
    buf = mu * buf + dw
    d = dw + mu * buf if nesterov else buf
    return w * (1 - lr * wd) - lr * d, buf


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgdw_two_steps(nesterov):
    w, dws = _problem(10)
    lr, mu, wd = 0.1, 0.85, 0.05
    config = {"learning_rate": lr, "momentum": mu, "weight_decay": wd, "nesterov": nesterov}
    ws, config = _run(optim.sgdw, w, dws, config)
    w1, b1 = _sgdw_by_hand(w, dws[0], 0.0, lr, mu, wd, nesterov)
    w2, b2 = _sgdw_by_hand(w1, dws[1], b1, lr, mu, wd, nesterov)
    np.testing.assert_allclose(ws[0], w1, rtol=1e-14)
    np.testing.assert_allclose(ws[1], w2, rtol=1e-14)
    np.testing.assert_allclose(config["momentum_buffer"], b2, rtol=1e-14)


def test_sgdw_scales_the_whole_step_by_the_current_learning_rate():
    """A schedule changes learning_rate between steps; the buffer holds raw gradients."""
    w, dws = _problem(11)
    config = {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.0}
    w1, config = optim.sgdw(w, dws[0], config)
    config["learning_rate"] = 0.02
    w2, config = optim.sgdw(w1, dws[1], config)
    b1 = dws[0]
    b2 = 0.9 * b1 + dws[1]
    np.testing.assert_allclose(w2, w - 0.1 * (dws[0] + 0.9 * b1) - 0.02 * (dws[1] + 0.9 * b2))


def test_adamw_two_steps():
    w, dws = _problem(12)
    lr, wd = 1e-2, 0.1
    ws, config = _run(optim.adamw, w, dws, {"learning_rate": lr, "weight_decay": wd})
    assert config["beta1"] == 0.9 and config["t"] == 2
    m, v, t = np.zeros_like(w), np.zeros_like(w), 0
    # Decoupled: the decay multiplies w; Adam's step is computed from the gradient alone.
    w1, m, v, t = _adam_by_hand(w * (1 - lr * wd), dws[0], m, v, t, lr)
    w2, m, v, t = _adam_by_hand(w1 * (1 - lr * wd), dws[1], m, v, t, lr)
    np.testing.assert_allclose(ws[0], w1, rtol=1e-13)
    np.testing.assert_allclose(ws[1], w2, rtol=1e-13)
    np.testing.assert_allclose(config["m"], m)
    np.testing.assert_allclose(config["v"], v)


def test_adamw_without_decay_is_adam():
    w, dws = _problem(13)
    ws_a, _ = _run(adam, w, dws, {"learning_rate": 1e-2})
    ws_w, _ = _run(optim.adamw, w, dws, {"learning_rate": 1e-2, "weight_decay": 0.0})
    np.testing.assert_array_equal(ws_a[1], ws_w[1])


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "nesterov_momentum", "rmsprop", "adam"])
def test_classic_rules_take_decoupled_weight_decay(name):
    """w_decayed = w * (1 - lr * wd) + (the rule's own step from w), for each rule."""
    rule = UPDATE_RULES[name]
    w, dws = _problem(14)
    lr, wd = 1e-2, 0.3
    plain, _ = rule(w, dws[0], {"learning_rate": lr})
    decayed, config = rule(w, dws[0], {"learning_rate": lr, "weight_decay": wd})
    np.testing.assert_allclose(decayed, plain - lr * wd * w, rtol=1e-13, atol=1e-15)
    assert config["weight_decay"] == wd


@pytest.mark.parametrize("name", sorted(UPDATE_RULES))
@pytest.mark.parametrize("wd", [-0.1, "0.1", True, None])
def test_bad_weight_decay_is_a_clear_error(name, wd):
    w, dws = _problem(15)
    with pytest.raises(ValueError, match=rf"^{name}: expected config\['weight_decay'\] to be"):
        UPDATE_RULES[name](w, dws[0], {"weight_decay": wd})


def test_sgdw_nesterov_must_be_a_bool():
    w, dws = _problem(16)
    with pytest.raises(TypeError, match=r"sgdw: expected config\['nesterov'\] to be a bool"):
        optim.sgdw(w, dws[0], {"nesterov": "yes"})


@pytest.mark.parametrize("name", ["sgdw", "adamw", "rmsprop"])
def test_blocked_rules_over_many_blocks_and_non_contiguous_arrays(name):
    """Arrays longer than one block, and strided views (one block), give the same steps."""
    rule = UPDATE_RULES[name]
    rng = np.random.default_rng(17)
    n = 2 * optim_rules._BLOCK + 7
    w = rng.standard_normal(n)
    dws = [rng.standard_normal(n) for _ in range(2)]
    cfg = {"learning_rate": 1e-2, "weight_decay": 0.1}
    ws, _ = _run(rule, w, dws, dict(cfg))
    # Element-wise rules: the same rule on the pieces, one by one, agrees.
    parts = [slice(0, 5), slice(5, n)]
    for part in parts:
        ws_part, _ = _run(rule, w[part].copy(), [d[part].copy() for d in dws], dict(cfg))
        np.testing.assert_allclose(ws[1][part], ws_part[1], rtol=1e-14)
    # A non-contiguous view (every other element of a wider array) takes the one-block path.
    wide = np.zeros((n, 2))
    wide[:, 0] = w
    gw = [np.zeros((n, 2)) for _ in dws]
    for g, d in zip(gw, dws, strict=True):
        g[:, 0] = d
    ws_view, _ = _run(rule, wide[:, 0], [g[:, 0] for g in gw], {**cfg, "inplace": True})
    np.testing.assert_allclose(wide[:, 0], ws[1], rtol=1e-14)
    assert np.all(wide[:, 1] == 0)


def test_sgdw_and_adamw_match_pytorch():
    """Independent implementations: PyTorch's AdamW, and its Nesterov SGD (which has no
    decoupled decay) with ``w *= 1 - lr * wd`` applied by hand before each step."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    w0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(3)]
    lrs = [0.1, 0.05, 0.02]  # a schedule: the rate changes every step

    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.AdamW([p], lr=lrs[0], weight_decay=0.1, betas=(0.9, 0.999), eps=1e-8)
    w, config = w0.copy(), {"weight_decay": 0.1}
    for lr, g in zip(lrs, grads, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor(g)
        opt.step()
        config["learning_rate"] = lr
        w, config = optim.adamw(w, g, config)
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-12)

    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([p], lr=lrs[0], momentum=0.85, nesterov=True)
    w, config = w0.copy(), {"momentum": 0.85, "weight_decay": 0.2}
    for lr, g in zip(lrs, grads, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            p.mul_(1 - lr * 0.2)  # decoupled decay, the AdamW way
        p.grad = torch.tensor(g)
        opt.step()
        config["learning_rate"] = lr
        w, config = optim.sgdw(w, g, config)
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-12)


# --- coupled weight decay (L2 through the gradient) --------------------------------------


@pytest.mark.parametrize("name", sorted(UPDATE_RULES))
def test_coupled_decay_is_the_rule_on_the_decayed_gradient(name):
    """``coupled_decay``: the rule steps with ``dw + wd * w``, and nothing else decays w."""
    rule = UPDATE_RULES[name]
    w, dws = _problem(19)
    lr, wd = 1e-2, 0.3
    coupled, config = _run(
        rule, w, dws, {"learning_rate": lr, "weight_decay": wd, "coupled_decay": True}
    )
    plain_cfg = {"learning_rate": lr, "weight_decay": 0.0}
    w1, plain_cfg = rule(w, dws[0] + wd * w, plain_cfg)
    w2, plain_cfg = rule(w1, dws[1] + wd * w1, plain_cfg)
    np.testing.assert_allclose(coupled[0], w1, rtol=1e-13)
    np.testing.assert_allclose(coupled[1], w2, rtol=1e-13)
    assert config["coupled_decay"] is True


def test_coupled_decay_leaves_the_callers_gradient_alone():
    w, dws = _problem(20)
    g = dws[0].copy()
    optim.sgdw(w, g, {"weight_decay": 0.5, "coupled_decay": True})
    np.testing.assert_array_equal(g, dws[0])


def test_coupled_decay_must_be_a_bool():
    w, dws = _problem(21)
    with pytest.raises(TypeError, match=r"sgdw: expected config\['coupled_decay'\] to be a bool"):
        optim.sgdw(w, dws[0], {"coupled_decay": "yes"})


def test_coupled_sgdw_matches_pytorch_sgd_weight_decay():
    """airbench94's optimiser: PyTorch's Nesterov SGD with (coupled) weight_decay, under
    a learning rate that changes every step."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(22)
    w0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(3)]
    lrs = [0.1, 0.05, 0.02]
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([p], lr=lrs[0], momentum=0.85, nesterov=True, weight_decay=0.2)
    w, config = w0.copy(), {"momentum": 0.85, "weight_decay": 0.2, "coupled_decay": True}
    for lr, g in zip(lrs, grads, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor(g)
        opt.step()
        config["learning_rate"] = lr
        w, config = optim.sgdw(w, g, config)
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-12)
