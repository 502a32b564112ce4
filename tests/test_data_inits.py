"""The initialisers of the airbench94 recipe: uniform_fan_in (PyTorch's default),
dirac_uniform (identity filters first) and patch_whitening (computed from data by the
model before training)."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.fast_layers import conv_forward_fast
from nndl.models import load_model, save_model
from nndl.network import Network
from nndl.nn.init import PATCH_WHITENING_EPS, dirac, patch_whitening_weights

WHITEN = {"type": "conv2d", "name": "whiten", "filters": 24, "kernel_size": 2, "pad": "valid",
          "init": "patch_whitening", "trainable": False}  # fmt: skip
HEAD = [{"type": "global_avgpool"}, {"type": "linear", "units": 3, "init": "uniform_fan_in"}]


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    # Correlated channels and neighbouring pixels, so whitening has something to undo.
    base = rng.standard_normal((n, 1, 9, 9))
    X = np.concatenate([base, 0.5 * base, -base], axis=1) + 0.3 * rng.standard_normal((n, 3, 9, 9))
    return X.astype(np.float64)


def test_uniform_fan_in_is_pytorchs_default_range():
    net = Network([{"type": "conv2d", "filters": 64, "init": "uniform_fan_in"}, *HEAD],
                  input_dim=(8, 6, 6), num_classes=3, seed=0)  # fmt: skip
    w = net.params["conv1.W"]
    bound = 1 / np.sqrt(8 * 9)
    assert np.abs(w).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound  # the uniform distribution's std
    assert np.abs(net.params["fc1.W"]).max() <= 1 / np.sqrt(64)


def test_dirac_uniform_passes_the_input_through_its_first_filters():
    net = Network([{"type": "conv2d", "filters": 5, "init": "dirac_uniform"}, *HEAD],
                  input_dim=(3, 6, 6), num_classes=3, dtype=np.float64, seed=0)  # fmt: skip
    W, b = net.params["conv1.W"], net.params["conv1.b"]
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    out, _ = conv_forward_fast(x, W, b, {"stride": 1, "pad": 1})
    np.testing.assert_allclose(out[:, :3], x, atol=1e-12)
    assert np.count_nonzero(W[3:]) == W[3:].size  # the rest stay random


def test_dirac_with_fewer_filters_than_channels():
    w = dirac(np.ones((2, 4, 3, 3)))
    assert w.sum() == 2 and w[0, 0, 1, 1] == 1 and w[1, 1, 1, 1] == 1


def test_patch_whitening_is_computed_from_data_by_the_model():
    X = _images()
    net = Network([WHITEN, "gelu", *HEAD], input_dim=(3, 9, 9), num_classes=3,
                  dtype=np.float64, seed=0)  # fmt: skip
    assert net.data_init_params == ["whiten.W"]
    with pytest.raises(ValueError, match=r"Network.loss: \['whiten.W'\] are initialised from data"):
        net.loss(X[:2])
    net.init_from_data(X)
    assert net.data_init_params == []
    np.testing.assert_allclose(net.params["whiten.W"], patch_whitening_weights(X, 2, 5e-4))
    # The first half of the filters whitens the 2x2 patches: second moment ~ identity.
    half = net.params["whiten.W"][:12]
    out, _ = conv_forward_fast(X, half, np.zeros(12), {"stride": 1, "pad": 0})
    rows = out.transpose(0, 2, 3, 1).reshape(-1, 12)
    lam = np.linalg.eigvalsh(rows.T @ rows / len(rows))
    assert np.all(lam > 0.5) and np.all(lam < 1.0 + 1e-9)
    assert PATCH_WHITENING_EPS == 5e-4


def test_a_loaded_model_is_not_waiting_for_data(tmp_path):
    X = _images()
    net = Network([WHITEN, "gelu", *HEAD], input_dim=(3, 9, 9), num_classes=3, seed=0)
    net.init_from_data(X)
    save_model(tmp_path / "m.npz", net)
    loaded, _ = load_model(tmp_path / "m.npz")
    assert loaded.data_init_params == []
    np.testing.assert_array_equal(loaded.loss(X[:3]), net.loss(X[:3]))


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([{**WHITEN, "filters": 12}, *HEAD], "makes 2 \\* C \\* k \\* k = 24 filters"),
        ([{"type": "conv2d", "filters": 3}, WHITEN, *HEAD], "for the network's first layer"),
        ([{"type": "flatten"}, {"type": "linear", "units": 3, "init": "dirac_uniform"}],
         "init: expected one of"),
    ],
)  # fmt: skip
def test_misplaced_data_inits_are_refused(layers, message):
    with pytest.raises(ValueError, match=message):
        Network(layers, input_dim=(3, 9, 9), num_classes=3)
