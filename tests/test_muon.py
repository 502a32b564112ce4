"""Muon (nndl.optim.orthogonal): the Newton-Schulz iteration orthogonalises, the update rule's
step, state and options, Muon in a parameter group beside a first-order rule, a run whose
loss falls, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from _resume import assert_resume_is_the_same_run

from nndl.network import Network
from nndl.optim import RULE_STATE, muon, newton_schulz, state_shapes
from nndl.optim.orthogonal import NS_COEFFICIENTS
from nndl.solver import Solver


def _conditioned(m, n, cond, seed=0):
    """An (m, n) matrix with singular values spread evenly over [1, cond], its U and V."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    U = np.linalg.qr(rng.standard_normal((m, k)))[0]
    V = np.linalg.qr(rng.standard_normal((n, k)))[0]
    s = np.linspace(cond, 1.0, k)
    return (U * s) @ V.T, U, V


@pytest.mark.parametrize("shape", [(16, 16), (64, 576), (576, 64), (1, 40)])
def test_newton_schulz_orthogonalises_a_well_conditioned_matrix(shape):
    """Its singular vectors are the input's, its singular values all near 1 (the quintic
    lands in about [0.7, 1.2], not exactly on 1) whatever the input's were."""
    G, U, V = _conditioned(*shape, cond=4.0)
    X = newton_schulz(G, steps=5)
    assert X.shape == G.shape
    s = np.linalg.svd(X, compute_uv=False)
    assert s.min() > 0.6 and s.max() < 1.25, s
    inner = U.T @ X @ V  # diagonal iff X = U diag(p(s)) V^T
    off = inner - np.diag(np.diag(inner))
    assert np.abs(off).max() < 1e-10 * np.abs(inner).max()


def test_newton_schulz_is_the_quintic_on_each_singular_value():
    G, U, V = _conditioned(8, 12, cond=3.0)
    a, b, c = NS_COEFFICIENTS
    s = np.linalg.svd(G, compute_uv=False) / np.linalg.norm(G)
    for _ in range(3):
        s = a * s + b * s**3 + c * s**5
    np.testing.assert_allclose(newton_schulz(G, steps=3), (U * s) @ V.T, atol=1e-6)


def test_newton_schulz_ignores_the_scale_and_refuses_a_non_matrix():
    G = _conditioned(6, 9, cond=2.0)[0]
    np.testing.assert_allclose(newton_schulz(1e3 * G), newton_schulz(G), atol=1e-6)
    with pytest.raises(ValueError, match=r"newton_schulz: expected a matrix \(m, n\)"):
        newton_schulz(np.ones((2, 3, 4)))


def test_a_filter_bank_is_stepped_as_its_matrix():
    """Plain Muon (no momentum) on conv filters (F, C, k, k): w - lr * NS(dw as (F, C*k*k))."""
    rng = np.random.default_rng(1)
    w, dw = rng.standard_normal((8, 3, 3, 3)), rng.standard_normal((8, 3, 3, 3))
    config = {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False}
    out, config = muon(w, dw, config)
    expected = w - 0.1 * newton_schulz(dw.reshape(8, 27), 5).reshape(w.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert config["momentum_buffer"].shape == w.shape
    assert state_shapes("muon", w.shape) == {"momentum_buffer": w.shape}
    assert "muon" in RULE_STATE


def test_nesterov_momentum_and_the_gradients_scale():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 7))
    grads = [rng.standard_normal((5, 7)) for _ in range(3)]
    config, buf, ref = {"learning_rate": 0.05, "momentum": 0.9}, np.zeros_like(w), w.copy()
    for g in grads:
        w, config = muon(w, g, config)
        buf = 0.9 * buf + g
        ref = ref - 0.05 * newton_schulz(g + 0.9 * buf, 5)
    np.testing.assert_allclose(w, ref, rtol=1e-10)
    # a summed loss (every gradient 64x larger) takes the same steps
    a, _ = muon(np.ones((5, 7)), grads[0], {})
    b, _ = muon(np.ones((5, 7)), 64 * grads[0], {})
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_renormalize_sets_the_weights_norm_to_root_fan_out():
    rng = np.random.default_rng(3)
    w = 5 * rng.standard_normal((16, 4, 3, 3)).astype(np.float32)
    out, _ = muon(w, rng.standard_normal(w.shape).astype(np.float32),
                  {"learning_rate": 0.0, "renormalize": True})  # fmt: skip
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out), 4.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("config", "match"),
    [({"ns_steps": 0}, r"muon: expected config\['ns_steps'\] >= 1, got 0"),
     ({"nesterov": "yes"}, r"muon: expected config\['nesterov'\] to be a bool"),
     ({"weight_decay": -1.0}, r"muon: expected config\['weight_decay'\]")],  # fmt: skip
)
def test_bad_settings_are_refused_by_name(config, match):
    with pytest.raises((ValueError, TypeError), match=match):
        muon(np.ones((3, 4)), np.ones((3, 4)), config)


# --- Muon in a parameter group ------------------------------------------------------------

SPEC = [
    {"type": "conv2d", "filters": 8, "bias": False}, "batchnorm2d", "relu",
    {"type": "maxpool2d"},
    {"type": "conv2d", "filters": 8, "bias": False}, "batchnorm2d", "relu",
    "global_avgpool", {"type": "linear", "units": 3},
]  # fmt: skip
FILTERS = {"params": ["*conv*.W"], "update_rule": "muon",
           "optim_config": {"learning_rate": 0.05, "momentum": 0.6, "ns_steps": 3,
                            "renormalize": True}}  # fmt: skip


def _data(n=96, seed=0):
    """Three classes told apart by which colour channel is bright."""
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=n)
    X = rng.normal(0, 0.5, (n, 3, 8, 8))
    X[np.arange(n), y] += 1.5
    return {"X_train": X[:72], "y_train": y[:72], "X_val": X[72:], "y_val": y[72:]}


def _solver(seed=0, **kw):
    model = Network(SPEC, input_dim=(3, 8, 8), num_classes=3, dtype=np.float64, seed=seed)
    kw = {"batch_size": 12, "num_epochs": 3, **kw}
    return Solver(model, _data(), update_rule="sgdw",
                  optim_config={"learning_rate": 0.05, "momentum": 0.85},
                  param_groups=[copy.deepcopy(FILTERS)], verbose=False, seed=seed,
                  **kw)  # fmt: skip


def test_muon_trains_the_filters_and_the_loss_falls():
    solver = _solver()
    solver.train()
    rules = solver.state_dict()["update_rules"]
    assert {k for k, r in rules.items() if r == "muon"} == {
        k for k in solver.model.params if "conv" in k and k.endswith(".W")}  # fmt: skip
    assert set(rules.values()) == {"muon", "sgdw"}
    first, last = np.mean(solver.loss_history[:3]), np.mean(solver.loss_history[-3:])
    assert last < 0.7 * first, (first, last)
    assert solver.best_val_acc > 0.8


def test_resume_with_muon_is_the_same_run(tmp_path):
    assert_resume_is_the_same_run(_solver, tmp_path, at=7)


@pytest.mark.parametrize("renormalize", [True, False])
def test_muon_matches_the_pytorch_peer_of_the_benchmarks(renormalize):
    """nndl's rule against ``benchmarks/torch_muon.py`` (written from Muon's public
    description, in PyTorch): three steps on a filter bank under a changing rate."""
    torch = pytest.importorskip("torch")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        from torch_muon import Muon
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((8, 3, 3, 3))
    grads = [rng.standard_normal(w0.shape) for _ in range(3)]
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = Muon([p], lr=0.24, momentum=0.6, ns_steps=3, renormalize=renormalize)
    w = w0.copy()
    config = {"momentum": 0.6, "ns_steps": 3, "renormalize": renormalize}
    for lr, g in zip([0.24, 0.16, 0.08], grads, strict=True):
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.tensor(g)
        opt.step()
        config["learning_rate"] = lr
        w, config = muon(w, g, config)
    np.testing.assert_allclose(w, p.detach().numpy(), rtol=1e-10, atol=1e-12)
