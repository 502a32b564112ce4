"""The ``cs231n`` namespace re-exports nndl's objects under the classic module names.

Notebooks written against the classic CS231n assignment must run unchanged; the snippets
below follow their import lines and calls.
"""

from __future__ import annotations

import importlib
import inspect
import textwrap

import pytest

# (cs231n module, the nndl modules whose public functions it must re-export)
MODULES = [
    ("cs231n.layers", ["nndl.layers", "nndl.conv_layers"]),
    ("cs231n.layer_utils", ["nndl.layer_utils", "nndl.conv_layer_utils"]),
    ("cs231n.conv_layers", ["nndl.conv_layers"]),
    ("cs231n.conv_layer_utils", ["nndl.conv_layer_utils"]),
    ("cs231n.fast_layers", ["nndl.fast_layers"]),
    ("cs231n.optim", ["nndl.optim"]),
    ("cs231n.gradient_check", ["nndl.gradient_check"]),
]

# Names SPEC promises in each compatibility module.
SPEC_NAMES = {
    "cs231n.layers": [
        "affine_forward",
        "affine_backward",
        "relu_forward",
        "relu_backward",
        "batchnorm_forward",
        "batchnorm_backward",
        "dropout_forward",
        "dropout_backward",
        "softmax_loss",
        "svm_loss",
    ],
    "cs231n.layer_utils": [
        "affine_relu_forward",
        "affine_relu_backward",
        "affine_batchnorm_relu_forward",
        "affine_batchnorm_relu_backward",
    ],
    "cs231n.fast_layers": [
        "conv_forward_fast",
        "conv_backward_fast",
        "max_pool_forward_fast",
        "max_pool_backward_fast",
    ],
    "cs231n.optim": ["sgd", "sgd_momentum", "nesterov_momentum", "rmsprop", "adam"],
    "cs231n.gradient_check": [
        "eval_numerical_gradient",
        "eval_numerical_gradient_array",
        "grad_check_sparse",
        "rel_error",
    ],
}


def _public_functions(module):
    """The module's ``__all__``, else the functions defined in it without a leading _."""
    if hasattr(module, "__all__"):
        return {name: getattr(module, name) for name in module.__all__}
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and inspect.isfunction(obj)
        and obj.__module__ == module.__name__
    }


@pytest.mark.parametrize(("compat", "sources"), MODULES, ids=[m for m, _ in MODULES])
def test_compat_module_reexports_the_same_objects(compat, sources):
    mod = importlib.import_module(compat)
    for source in sources:
        functions = _public_functions(importlib.import_module(source))
        assert functions, source
        for name, obj in functions.items():
            assert getattr(mod, name, None) is obj, f"{compat}.{name} is not {source}.{name}"


@pytest.mark.parametrize("compat", sorted(SPEC_NAMES))
def test_compat_module_has_spec_names(compat):
    mod = importlib.import_module(compat)
    nndl_mod = importlib.import_module(compat.replace("cs231n.", "nndl."))
    for name in SPEC_NAMES[compat]:
        assert getattr(mod, name) is getattr(nndl_mod, name)


def test_compat_optim_registry_is_shared():
    import cs231n.optim
    import nndl.optim

    assert cs231n.optim.UPDATE_RULES is nndl.optim.UPDATE_RULES
    assert cs231n.optim.get_update_rule("adam") is nndl.optim.adam


# A condensed ConvolutionalNetworks notebook: its imports and checks, run as written.
NOTEBOOK = textwrap.dedent(
    """
    import numpy as np
    from cs231n.layers import *
    from cs231n.fast_layers import *
    from cs231n.gradient_check import eval_numerical_gradient_array, eval_numerical_gradient
    from cs231n.layer_utils import conv_relu_pool_forward, conv_relu_pool_backward
    from cs231n.layer_utils import conv_relu_forward, conv_relu_backward

    def rel_error(x, y):
        return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))

    rng = np.random.default_rng(231)
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((3, 3, 3, 3))
    b = rng.standard_normal(3)
    conv_param = {'stride': 2, 'pad': 1}
    dout = rng.standard_normal((2, 3, 3, 3))
    out, cache = conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = conv_backward_naive(dout, cache)
    dx_num = eval_numerical_gradient_array(
        lambda x: conv_forward_naive(x, w, b, conv_param)[0], x, dout)
    errors['conv dx'] = rel_error(dx, dx_num)
    out_fast, cache_fast = conv_forward_fast(x, w, b, conv_param)
    errors['conv fast'] = rel_error(out, out_fast)

    pool_param = {'pool_height': 2, 'pool_width': 2, 'stride': 2}
    xp = rng.standard_normal((2, 3, 4, 4))
    out, cache = max_pool_forward_naive(xp, pool_param)
    dp = rng.standard_normal(out.shape)
    dx = max_pool_backward_naive(dp, cache)
    dx_num = eval_numerical_gradient_array(
        lambda x: max_pool_forward_naive(x, pool_param)[0], xp, dp)
    errors['pool dx'] = rel_error(dx, dx_num)

    gamma, beta = np.ones(3), np.zeros(3)
    bn_param = {'mode': 'train'}
    out, _ = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    errors['sbn mean'] = np.abs(out.mean(axis=(0, 2, 3))).max()

    out, cache = conv_relu_pool_forward(xp, w, b, {'stride': 1, 'pad': 1}, pool_param)
    dr = rng.standard_normal(out.shape)
    dx, dw, db = conv_relu_pool_backward(dr, cache)
    dx_num = eval_numerical_gradient_array(
        lambda x: conv_relu_pool_forward(x, w, b, {'stride': 1, 'pad': 1}, pool_param)[0],
        xp, dr)
    errors['conv_relu_pool dx'] = rel_error(dx, dx_num)

    xs = rng.standard_normal((5, 4))
    ys = rng.integers(0, 4, size=5)
    loss, dxs = softmax_loss(xs, ys)
    dxs_num = eval_numerical_gradient(lambda x: softmax_loss(x, ys)[0], xs, verbose=False)
    errors['softmax dx'] = rel_error(dxs, dxs_num)
    """
)


def test_classic_notebook_runs_unchanged():
    namespace = {"errors": {}}
    exec(compile(NOTEBOOK, "<notebook>", "exec"), namespace)
    errors = namespace["errors"]
    assert set(errors) == {
        "conv dx",
        "conv fast",
        "pool dx",
        "sbn mean",
        "conv_relu_pool dx",
        "softmax dx",
    }
    for name, err in errors.items():
        assert err < 1e-7, (name, err)
