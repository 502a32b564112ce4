"""One configurable fused conv block (conv_block); the spec names of earlier releases are
aliases of it that read, build and compute as before."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.network import Network
from nndl.nn import ConvBlock, as_spec

ALIASES = [  # (old spec, the same block as a conv_block)
    ({"type": "conv_bn_relu", "filters": 4},
     {"type": "conv_block", "filters": 4}),
    ({"type": "conv_bn_relu_pool", "filters": 4, "pool_size": 2},
     {"type": "conv_block", "filters": 4, "pool": "last"}),
    ({"type": "conv_bn_act", "filters": 4, "activation": "gelu"},
     {"type": "conv_block", "filters": 4, "activation": "gelu"}),
    ({"type": "conv_pool_bn_act", "filters": 4, "floor": True, "scale": False},
     {"type": "conv_block", "filters": 4, "pool": "after_conv", "floor": True, "scale": False}),
    ({"type": "conv_relu", "filters": 4, "bias": False},
     {"type": "conv_block", "filters": 4, "bias": False, "batchnorm": False}),
    ({"type": "conv_relu_pool", "filters": 4},
     {"type": "conv_block", "filters": 4, "batchnorm": False, "pool": "last"}),
]  # fmt: skip
TAIL = [{"type": "linear", "units": 3}]


def _pair(first, second, seed=0):
    kw = {"input_dim": (3, 6, 6), "num_classes": 3, "dtype": np.float64, "seed": seed}
    return Network([first, *TAIL], **kw), Network([second, *TAIL], **kw)


def _same_run(a, b):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((4, 3, 6, 6)), np.array([0, 1, 2, 0])
    b.params = {k: v.copy() for k, v in a.params.items()}
    loss_a, grads_a = a.loss(X, y)
    loss_b, grads_b = b.loss(X, y)
    assert loss_a == loss_b
    for k in grads_a:
        np.testing.assert_array_equal(grads_a[k], grads_b[k])
    for k in a.buffers:
        np.testing.assert_array_equal(a.buffers[k], b.buffers[k])


@pytest.mark.parametrize(("old", "new"), ALIASES, ids=[a[0]["type"] for a in ALIASES])
def test_an_old_name_is_the_same_block(old, new):
    a, b = _pair(old, new)
    assert isinstance(a.root.layers[0], ConvBlock)
    assert set(a.params) == set(b.params) and set(a.buffers) == set(b.buffers)
    _same_run(a, b)
    # The old name's spec reads as before: its own arguments only.
    spec = as_spec(a.root)[0]
    assert spec["type"] == old["type"] and "batchnorm" not in spec and "pool" not in spec


def test_a_block_equals_its_unfused_layers():
    fused = {"type": "conv_block", "filters": 4, "activation": "gelu", "pool": "after_conv",
             "pool_size": 3, "pool_stride": 2, "floor": True, "momentum": 0.5}  # fmt: skip
    unfused = {"type": "sequential", "name": "block1", "layers": [
        {"type": "conv2d", "filters": 4, "name": "conv"},
        {"type": "maxpool2d", "pool_size": 3, "stride": 2, "floor": True, "name": "pool"},
        {"type": "batchnorm2d", "momentum": 0.5, "name": "bn"}, {"type": "gelu", "name": "gelu"},
    ]}  # fmt: skip
    a, b = _pair(fused, unfused)
    assert set(a.params) == set(b.params)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((4, 3, 6, 6)), np.array([0, 1, 2, 0])
    b.params = {k: v.copy() for k, v in a.params.items()}
    (la, ga), (lb, gb) = a.loss(X, y), b.loss(X, y)
    assert abs(la - lb) < 1e-12
    for k in ga:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-9, atol=1e-12)
    rebuilt = Network(as_spec(a.root), input_dim=(3, 6, 6), num_classes=3)
    assert as_spec(rebuilt.root) == as_spec(a.root)


def test_bad_block_arguments_are_named():
    with pytest.raises(ValueError, match=r"pool: expected one of \[None, 'after_conv', 'last'\]"):
        ConvBlock(4, pool="first")
    with pytest.raises(ValueError, match=r"activation: expected one of \['gelu', 'relu'\]"):
        ConvBlock(4, activation="tanh")
    with pytest.raises(ValueError, match="batchnorm: expected true or false"):
        ConvBlock(4, batchnorm="yes")
