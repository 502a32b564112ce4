"""ConvNet re-expressed on Network computes exactly what the hand-wired ConvNet of nndl
0.1.0 computed (kept as benchmarks/hand_wired_convnet.py): the same initial parameters
from a seed, the same loss, gradients, running statistics and scores, under the renaming
of nndl.models.legacy (W1, b1, gamma1, ... -> block1.conv.W, ...)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from _cifar import REPO_ROOT

from nndl.cnn import ConvNet
from nndl.models.legacy import numbered_names
from nndl.network import Network

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from hand_wired_convnet import HandWiredConvNet  # noqa: E402

CONFIGS = [
    {"num_filters": (16, 32, 64)},  # the CLI's default net
    {"num_filters": (3, 4), "hidden_dims": (5,), "dropout": 0.7},
    {"num_filters": (3, 4, 2, 2), "pool_every": 2, "use_batchnorm": False, "weight_scale": 0.1},
    {"num_filters": (2,), "hidden_dims": (4, 6), "filter_size": 5, "reg": 0.3},
    {"num_filters": (2, 3), "hidden_dims": (3,), "use_batchnorm": False, "dropout": 0.5},
]


def _pair(kwargs, dtype=np.float64, seed=3):
    kw = {"input_dim": (3, 16, 16), "dtype": dtype, "seed": seed, **kwargs}
    names = numbered_names(ConvNet.param_plan(**kw), ConvNet.buffer_plan(**kw))
    return HandWiredConvNet(**kw), ConvNet(**kw), names


def _arrays(model):
    return {**model.params, **model.state_arrays()}


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_the_same_network_as_the_hand_wired_convnet(kwargs):
    old, new, names = _pair(kwargs)
    assert isinstance(new, Network) and set(names.values()) == set(_arrays(new))
    assert set(names) == set(_arrays(old))
    for o, n in names.items():  # the same draws in the same order
        assert np.array_equal(_arrays(old)[o], _arrays(new)[n]), (o, n)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 3, 16, 16)), rng.integers(10, size=6)
    for _ in range(2):  # train mode twice: running statistics and dropout masks move alike
        loss_old, grads_old = old.loss(X, y)
        loss_new, grads_new = new.loss(X, y)
        assert loss_old == loss_new
        for o, g in grads_old.items():
            assert np.array_equal(g, grads_new[names[o]]), o
    for o, n in names.items():
        assert np.array_equal(_arrays(old)[o], _arrays(new)[n]), (o, n)
    assert np.array_equal(old.loss(X), new.loss(X))


def test_float32_and_unseeded_draws_match_too(global_state):
    old, new, _ = _pair(CONFIGS[1], dtype=np.float32)
    X = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    assert np.array_equal(old.loss(X), new.loss(X))
    np.random.seed(7)
    a = HandWiredConvNet(input_dim=(3, 16, 16), num_filters=(2, 3))
    np.random.seed(7)
    b = ConvNet(input_dim=(3, 16, 16), num_filters=(2, 3))
    assert np.array_equal(a.params["W2"], b.params["block2.conv.W"])


@pytest.fixture
def global_state():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def test_convnet_keeps_its_keywords_and_config():
    model = ConvNet(num_filters=[4, 8], hidden_dims=[6], dropout=0.5, seed=1)
    assert model.name == "convnet" and model.config["num_filters"] == [4, 8]
    rebuilt = ConvNet(**model.config)
    assert rebuilt.root.config() == model.root.config()
    assert ConvNet.param_shapes(**model.config) == {k: v.shape for k, v in model.params.items()}
