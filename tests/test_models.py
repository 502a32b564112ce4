"""The model registry, configs and the cs231n re-exports."""

import json

import numpy as np
import pytest

from nndl.models import MODELS, build_model, model_kwargs

SMALL = {
    "three_layer_convnet": {"input_dim": (3, 8, 8), "num_filters": 2, "filter_size": 3,
                            "hidden_dim": 5, "use_batchnorm": True},
    "convnet": {"input_dim": (3, 8, 8), "num_filters": (2, 3), "hidden_dims": (4,),
                "dropout": 0.5},
    "fc_net": {"hidden_dims": [6, 5], "input_dim": 12, "use_batchnorm": True},
    "two_layer_net": {"input_dim": 12, "hidden_dim": 6},
    "network": {"input_dim": (3, 8, 8), "num_classes": 4,
                "layers": [{"type": "conv_bn_relu_pool", "filters": 2}, "flatten",
                           {"type": "linear", "units": 4}]},
}  # fmt: skip


def test_registry_names():
    assert set(MODELS) == {"three_layer_convnet", "convnet", "fc_net", "two_layer_net", "network"}
    for name, cls in MODELS.items():
        assert cls.name == name


@pytest.mark.parametrize("name", sorted(SMALL))
def test_config_rebuilds_the_same_model(name):
    model = build_model(name, seed=3, **SMALL[name])
    assert model.name == name
    config = json.loads(json.dumps(model.config))  # JSON-serialisable
    assert config["dtype"] == "float32"
    twin = build_model(model.name, **config)
    assert twin.config == model.config
    assert set(twin.params) == set(model.params)
    for k, v in model.params.items():
        assert np.array_equal(twin.params[k], v) and twin.params[k].dtype == v.dtype


def test_dtype_from_string():
    model = build_model("two_layer_net", input_dim=4, hidden_dim=3, dtype="float64")
    assert model.dtype == np.float64 and model.params["W1"].dtype == np.float64


def test_unknown_name_lists_models():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*convnet"):
        build_model("resnet")


def test_unknown_keyword_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown keyword.*'hidden_dimz'.*hidden_dim"):
        build_model("two_layer_net", hidden_dimz=3)
    assert "num_filters" in model_kwargs("convnet")


def test_state_arrays_round_trip():
    model = build_model("fc_net", **SMALL["fc_net"])
    state = model.state_arrays()
    assert set(state) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    new = {k: v + 1 for k, v in state.items()}
    model.load_state_arrays(new)
    assert all(np.array_equal(model.state_arrays()[k], new[k]) for k in new)
    with pytest.raises(ValueError, match="load_state_arrays: expected keys"):
        model.load_state_arrays({"running_mean1": state["running_mean1"]})


def test_cs231n_classifiers_are_the_same_objects():
    import nndl.cnn
    import nndl.fc_net
    import nndl.solver
    from cs231n.classifiers.cnn import ThreeLayerConvNet
    from cs231n.classifiers.fc_net import FullyConnectedNet, TwoLayerNet
    from cs231n.solver import Solver

    assert ThreeLayerConvNet is nndl.cnn.ThreeLayerConvNet
    assert FullyConnectedNet is nndl.fc_net.FullyConnectedNet
    assert TwoLayerNet is nndl.fc_net.TwoLayerNet
    assert Solver is nndl.solver.Solver
