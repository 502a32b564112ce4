"""One place per layer: every registered layer type declares its spec name, its nn class,
its FLOPs and has an ONNX emitter; one activation registry feeds the fused passes, their
compiled kernels and the layer objects; parameter roles say what a parameter is."""

from __future__ import annotations

import pytest

from nndl.export import EMITTERS
from nndl.functional.activation import ACTIVATIONS
from nndl.kernels import fused
from nndl.kernels.fused_compiled import ACT_CODES
from nndl.nn import LAYERS, Module, ParamSpec, register_layer
from nndl.nn.activations import ACTIVATION_LAYERS
from nndl.nn.module import OLD_ROLES, ROLES


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_declares_what_nndl_needs(name):
    cls = LAYERS[name]
    assert cls.type_name == name
    assert cls.prefix and cls.prefix != Module.prefix, f"{name}: no automatic-name prefix"
    for method in ("out_shape", "forward", "backward", "flops"):
        assert getattr(cls, method) is not getattr(Module, method), f"{name}: no {method}"
    assert cls in EMITTERS, f"{name}: no ONNX emitter in nndl.export.EMITTERS"


def test_registering_checks_the_name():
    class Nameless(Module):
        pass

    with pytest.raises(TypeError, match="register_layer: Nameless has no type_name"):
        register_layer(Nameless)

    class Copy(Module):
        type_name = "relu"

    with pytest.raises(ValueError, match="layer type 'relu' is already"):
        register_layer(Copy)
    assert LAYERS["relu"] is not Copy


def test_one_activation_registry():
    assert set(ACTIVATION_LAYERS) == set(ACTIVATIONS)
    assert fused.ACTIVATIONS == (None, *ACTIVATIONS)
    assert ACT_CODES == {None: 0, **{n: a.code for n, a in ACTIVATIONS.items()}}
    codes = [a.code for a in ACTIVATIONS.values()]
    assert len(set(codes)) == len(codes) and 0 not in codes
    for name, cls in ACTIVATION_LAYERS.items():
        assert LAYERS[name] is cls


def test_the_compiled_kernels_use_the_registry_codes():
    pytest.importorskip("numba")
    from nndl.kernels import numba_fused

    assert numba_fused.RELU == ACTIVATIONS["relu"].code
    assert numba_fused.GELU == ACTIVATIONS["gelu"].code


def test_roles_say_what_a_parameter_is():
    assert ParamSpec((3,), "ones", False, "norm_scale").role == "norm_scale"
    # The names of earlier releases still read, as today's.
    for old, new in OLD_ROLES.items():
        assert ParamSpec((3,), "ones", False, old).role == new
    with pytest.raises(ValueError, match="expected role one of"):
        ParamSpec((3,), "ones", False, "scale")
    assert set(ROLES) == {"weight", "bias", "norm_scale", "norm_shift"}


def test_running_statistics_come_from_declared_buffers():
    from nndl.cnn import ConvNet, ThreeLayerConvNet

    net = ConvNet(input_dim=(3, 8, 8), num_filters=(4,), num_classes=3, seed=0)
    assert set(net.buffers) == {"block1.bn.running_mean", "block1.bn.running_var"}
    assert not hasattr(net, "bn_params") and not hasattr(net, "dropout_param")
    classic = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=4, filter_size=3,
                                hidden_dim=5, num_classes=3, use_batchnorm=True)  # fmt: skip
    assert [b["layer"] for b in classic.bn_params] == [1, 2]
    assert set(classic.state_arrays()) == {
        "running_mean1", "running_var1", "running_mean2", "running_var2"
    }  # fmt: skip
