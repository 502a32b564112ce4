"""Check the conv, pool and batch-norm layers' gradients against numerical ones.

Run with ``python examples/layer_gradient_check.py``. Every relative error should be
tiny (about 1e-8 or less) in float64; a bug in a backward pass shows up as an error
near 1.
"""

import numpy as np

from nndl.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from nndl.fast_layers import conv_backward_fast, conv_forward_fast
from nndl.gradient_check import eval_numerical_gradient_array, rel_error

rng = np.random.default_rng(0)


def report(name: str, analytic: np.ndarray, numeric: np.ndarray) -> None:
    print(f"{name:<28} relative error {rel_error(analytic, numeric):.2e}")


# Convolution: x (N, C, H, W), w (F, C, HH, WW), stride 1, pad 1.
x = rng.standard_normal((4, 3, 5, 5))
w = rng.standard_normal((2, 3, 3, 3))
b = rng.standard_normal(2)
conv_param = {"stride": 1, "pad": 1}
out, cache = conv_forward_naive(x, w, b, conv_param)
dout = rng.standard_normal(out.shape)
dx, dw, db = conv_backward_naive(dout, cache)
report(
    "conv dx",
    dx,
    eval_numerical_gradient_array(lambda x_: conv_forward_naive(x_, w, b, conv_param)[0], x, dout),
)
report(
    "conv dw",
    dw,
    eval_numerical_gradient_array(lambda w_: conv_forward_naive(x, w_, b, conv_param)[0], w, dout),
)
report(
    "conv db",
    db,
    eval_numerical_gradient_array(lambda b_: conv_forward_naive(x, w, b_, conv_param)[0], b, dout),
)

# The fast (im2col) layer must agree with the readable loops.
out_fast, cache_fast = conv_forward_fast(x, w, b, conv_param)
report("conv fast vs naive (out)", out_fast, out)
report("conv fast vs naive (dx)", conv_backward_fast(dout, cache_fast)[0], dx)

# Max pooling 2x2, stride 2.
x = rng.standard_normal((3, 2, 8, 8))
pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
out, cache = max_pool_forward_naive(x, pool_param)
dout = rng.standard_normal(out.shape)
report(
    "max pool dx",
    max_pool_backward_naive(dout, cache),
    eval_numerical_gradient_array(lambda x_: max_pool_forward_naive(x_, pool_param)[0], x, dout),
)

# Spatial batch norm in train mode (normalises each channel over N, H and W).
x = 3 * rng.standard_normal((2, 3, 4, 5)) + 2
gamma, beta = rng.standard_normal(3), rng.standard_normal(3)


def bn(x_, gamma_, beta_):
    return spatial_batchnorm_forward(x_, gamma_, beta_, {"mode": "train"})[0]


out, cache = spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
dout = rng.standard_normal(out.shape)
dx, dgamma, dbeta = spatial_batchnorm_backward(dout, cache)
report(
    "spatial batchnorm dx",
    dx,
    eval_numerical_gradient_array(lambda x_: bn(x_, gamma, beta), x, dout),
)
report(
    "spatial batchnorm dgamma",
    dgamma,
    eval_numerical_gradient_array(lambda g_: bn(x, g_, beta), gamma, dout),
)
report(
    "spatial batchnorm dbeta",
    dbeta,
    eval_numerical_gradient_array(lambda b_: bn(x, gamma, b_), beta, dout),
)
