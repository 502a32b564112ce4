"""Tests for nndl.validation and the input validation every layer does through it.

Each bad input must raise ValueError or TypeError whose message names the function,
what it expected and what it was given. Layers that exist in a naive and a fast form
get the same bad inputs through both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from nndl import optim
from nndl.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
    spatial_batchnorm_forward,
)
from nndl.fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from nndl.layers import (
    affine_backward,
    affine_forward,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    relu_forward,
    softmax_loss,
    svm_loss,
)
from nndl.validation import check_labels, conv_shapes, output_size, pool_shapes


def _a(*shape, dtype=np.float64):
    return np.zeros(shape, dtype=dtype)


@dataclass
class Case:
    id: str
    call: Callable[[], object]
    exc: type[Exception]
    fn: str
    says: tuple[str, ...]  # fragments the message must contain: expected and given

    def param(self):
        return pytest.param(self, id=self.id)


def _conv_cases(name, forward):
    def conv(x=None, w=None, b=None, conv_param=None):
        x = _a(2, 3, 5, 5) if x is None else x
        w = _a(2, 3, 3, 3) if w is None else w
        b = _a(2) if b is None else b
        conv_param = {"stride": 1, "pad": 1} if conv_param is None else conv_param
        return lambda: forward(x, w, b, conv_param)

    return [
        Case(
            f"{name}-x-ndim", conv(x=_a(3, 5, 5)), ValueError, name, ("4 dimensions", "(3, 5, 5)")
        ),
        Case(
            f"{name}-w-ndim", conv(w=_a(2, 3, 3)), ValueError, name, ("4 dimensions", "(2, 3, 3)")
        ),
        Case(
            f"{name}-channels",
            conv(w=_a(2, 4, 3, 3)),
            ValueError,
            name,
            ("3 channels", "expects 4", "(2, 4, 3, 3)"),
        ),
        Case(f"{name}-bias", conv(b=_a(3)), ValueError, name, ("(2,)", "(3,)")),
        Case(f"{name}-bias-ndim", conv(b=_a(2, 1)), ValueError, name, ("(2,)", "(2, 1)")),
        Case(
            f"{name}-stride0",
            conv(conv_param={"stride": 0, "pad": 1}),
            ValueError,
            name,
            ("stride", ">= 1", "got 0"),
        ),
        Case(
            f"{name}-pad-neg",
            conv(conv_param={"stride": 1, "pad": -1}),
            ValueError,
            name,
            ("pad", ">= 0", "got -1"),
        ),
        Case(
            f"{name}-missing-pad",
            conv(conv_param={"stride": 1}),
            ValueError,
            name,
            ("'pad'", "['stride']"),
        ),
        Case(
            f"{name}-missing-stride",
            conv(conv_param={"pad": 1}),
            ValueError,
            name,
            ("'stride'", "['pad']"),
        ),
        Case(
            f"{name}-not-whole",
            conv(x=_a(1, 1, 5, 6), w=_a(1, 1, 2, 2), b=_a(1), conv_param={"stride": 2, "pad": 0}),
            ValueError,
            name,
            ("whole", "(1, 1, 5, 6)", "(1, 1, 2, 2)", "stride 2"),
        ),
        Case(
            f"{name}-kernel-too-big",
            conv(x=_a(1, 1, 2, 2), w=_a(1, 1, 5, 5), b=_a(1), conv_param={"stride": 1, "pad": 1}),
            ValueError,
            name,
            ("(1, 1, 2, 2)", "(1, 1, 5, 5)"),
        ),
        Case(
            f"{name}-int-x",
            conv(x=_a(2, 3, 5, 5, dtype=np.int64)),
            TypeError,
            name,
            ("floating", "int64"),
        ),
        Case(
            f"{name}-float-stride",
            conv(conv_param={"stride": 1.5, "pad": 1}),
            TypeError,
            name,
            ("int", "1.5"),
        ),
        Case(
            f"{name}-param-not-dict",
            conv(conv_param=[1, 1]),
            TypeError,
            name,
            ("dict", "list"),
        ),
    ]


def _pool_cases(name, forward):
    def pool(x=None, **pp):
        x = _a(2, 3, 4, 4) if x is None else x
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        pool_param.update(pp)
        pool_param = {k: v for k, v in pool_param.items() if v is not None}
        return lambda: forward(x, pool_param)

    return [
        Case(
            f"{name}-x-ndim", pool(x=_a(2, 4, 4)), ValueError, name, ("4 dimensions", "(2, 4, 4)")
        ),
        Case(
            f"{name}-missing-width",
            pool(pool_width=None),
            ValueError,
            name,
            ("'pool_width'", "['pool_height', 'stride']"),
        ),
        Case(f"{name}-stride0", pool(stride=0), ValueError, name, ("stride", ">= 1", "got 0")),
        Case(f"{name}-height0", pool(pool_height=0), ValueError, name, ("pool_height", "got 0")),
        Case(
            f"{name}-window-too-big",
            pool(x=_a(1, 1, 3, 3), pool_height=4, stride=1),
            ValueError,
            name,
            ("4x2", "larger", "3x3", "(1, 1, 3, 3)"),
        ),
        Case(
            f"{name}-not-whole",
            pool(x=_a(1, 1, 5, 4)),
            ValueError,
            name,
            ("whole", "(1, 1, 5, 4)", "stride 2"),
        ),
        Case(f"{name}-int-x", pool(x=_a(2, 3, 4, 4, dtype=np.int32)), TypeError, name, ("int32",)),
    ]


def _backward_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4))
    w = rng.standard_normal((2, 3, 3, 3))
    b = np.zeros(2)
    pp = {"pool_height": 2, "pool_width": 2, "stride": 2}
    cases = []
    for name, fwd, bwd in [
        ("conv_backward_naive", conv_forward_naive, conv_backward_naive),
        ("conv_backward_fast", conv_forward_fast, conv_backward_fast),
    ]:
        cache = fwd(x, w, b, {"stride": 1, "pad": 1})[1]
        cases.append(
            Case(
                f"{name}-dout-ndim",
                lambda bwd=bwd, cache=cache: bwd(_a(2, 2, 16), cache),
                ValueError,
                name,
                ("4 dimensions", "(2, 2, 16)"),
            )
        )
        cases.append(
            Case(
                f"{name}-dout-shape",
                lambda bwd=bwd, cache=cache: bwd(_a(2, 2, 3, 3), cache),
                ValueError,
                name,
                ("(2, 2, 4, 4)", "(2, 2, 3, 3)"),
            )
        )
    for name, fwd, bwd in [
        ("max_pool_backward_naive", max_pool_forward_naive, max_pool_backward_naive),
        ("max_pool_backward_fast", max_pool_forward_fast, max_pool_backward_fast),
    ]:
        cache = fwd(x, pp)[1]
        cases.append(
            Case(
                f"{name}-dout-ndim",
                lambda bwd=bwd, cache=cache: bwd(_a(2, 3, 4), cache),
                ValueError,
                name,
                ("4 dimensions", "(2, 3, 4)"),
            )
        )
        # (2, 3, 1, 1) broadcasts against the (2, 3, 2, 2) output: it must still fail.
        cases.append(
            Case(
                f"{name}-dout-shape",
                lambda bwd=bwd, cache=cache: bwd(_a(2, 3, 1, 1), cache),
                ValueError,
                name,
                ("(2, 3, 2, 2)", "(2, 3, 1, 1)"),
            )
        )
    affine_cache = affine_forward(x, rng.standard_normal((48, 5)), np.zeros(5))[1]
    cases.append(
        Case(
            "affine_backward-dout-shape",
            lambda: affine_backward(_a(2, 4), affine_cache),
            ValueError,
            "affine_backward",
            ("(2, 5)", "(2, 4)"),
        )
    )
    drop_cache = dropout_forward(x, {"mode": "train", "p": 0.5, "seed": 0})[1]
    cases.append(
        Case(
            "dropout_backward-dout-shape",
            lambda: dropout_backward(_a(1, 3, 4, 4), drop_cache),
            ValueError,
            "dropout_backward",
            ("(2, 3, 4, 4)", "(1, 3, 4, 4)"),
        )
    )
    return cases


def _bn_cases():
    cases = []
    g, bt = np.ones(3), np.zeros(3)
    for name, fwd, good, bad in [
        ("batchnorm_forward", batchnorm_forward, _a(4, 3), _a(4, 3, 2)),
        ("spatial_batchnorm_forward", spatial_batchnorm_forward, _a(4, 3, 2, 2), _a(4, 3)),
    ]:
        cases += [
            Case(
                f"{name}-x-ndim",
                lambda fwd=fwd, bad=bad: fwd(bad, g, bt, {"mode": "train"}),
                ValueError,
                name,
                ("dimensions", str(bad.shape)),
            ),
            Case(
                f"{name}-mode",
                lambda fwd=fwd, good=good: fwd(good, g, bt, {"mode": "eval"}),
                ValueError,
                name,
                ("'train'", "'test'", "'eval'"),
            ),
            Case(
                f"{name}-test-before-train",
                lambda fwd=fwd, good=good: fwd(good, g, bt, {"mode": "test"}),
                ValueError,
                name,
                ("'test'", "running_mean", "'train' first"),
            ),
            Case(
                f"{name}-gamma",
                lambda fwd=fwd, good=good: fwd(good, np.ones(4), bt, {"mode": "train"}),
                ValueError,
                name,
                ("gamma", "(3,)", "(4,)"),
            ),
            Case(
                f"{name}-beta",
                lambda fwd=fwd, good=good: fwd(good, g, np.zeros(2), {"mode": "train"}),
                ValueError,
                name,
                ("beta", "(3,)", "(2,)"),
            ),
            Case(
                f"{name}-param-not-dict",
                lambda fwd=fwd, good=good: fwd(good, g, bt, "train"),
                TypeError,
                name,
                ("dict", "str"),
            ),
        ]
    return cases


def _dropout_cases():
    name = "dropout_forward"
    x = _a(3, 4)
    cases = [
        Case(
            f"{name}-p-{p!r}",
            lambda p=p: dropout_forward(x, {"mode": "train", "p": p}),
            ValueError,
            name,
            ("(0, 1]", repr(p)),
        )
        for p in (0, 0.0, -0.5, 1.5, None, float("nan"), "0.5")
    ]
    cases.append(
        Case(
            f"{name}-missing-p",
            lambda: dropout_forward(x, {"mode": "train"}),
            ValueError,
            name,
            ("(0, 1]", "None"),
        )
    )
    cases.append(
        Case(
            f"{name}-legacy-rng",
            lambda: dropout_forward(
                x, {"mode": "train", "p": 0.5, "rng": np.random.RandomState(0)}
            ),
            TypeError,
            name,
            ("Generator", "RandomState"),
        )
    )
    cases.append(
        Case(
            f"{name}-mode",
            lambda: dropout_forward(x, {"mode": "predict", "p": 0.5}),
            ValueError,
            name,
            ("'train'", "'predict'"),
        )
    )
    return cases


def _loss_cases():
    cases = []
    x = np.zeros((2, 5))
    for name, fn in [("softmax_loss", softmax_loss), ("svm_loss", svm_loss)]:
        cases += [
            Case(
                f"{name}-x-ndim",
                lambda fn=fn: fn(np.zeros(5), np.array([0])),
                ValueError,
                name,
                ("2 dimensions", "(5,)"),
            ),
            Case(
                f"{name}-label-high",
                lambda fn=fn: fn(x, np.array([0, 5])),
                ValueError,
                name,
                ("[0, 5)", "to 5"),
            ),
            Case(
                f"{name}-label-negative",
                lambda fn=fn: fn(x, np.array([-1, 2])),
                ValueError,
                name,
                ("[0, 5)", "from -1"),
            ),
            Case(
                f"{name}-label-float",
                lambda fn=fn: fn(x, np.array([0.0, 1.0])),
                TypeError,
                name,
                ("integer", "float64"),
            ),
            Case(
                f"{name}-label-count",
                lambda fn=fn: fn(x, np.array([0, 1, 2])),
                ValueError,
                name,
                ("(2,)", "(3,)"),
            ),
            Case(
                f"{name}-label-list",
                lambda fn=fn: fn(x, [0, 1]),
                TypeError,
                name,
                ("array", "list"),
            ),
        ]
    return cases


def _affine_cases():
    name = "affine_forward"
    x = _a(4, 2, 3)
    return [
        Case(
            f"{name}-w-ndim",
            lambda: affine_forward(x, _a(6), _a(6)),
            ValueError,
            name,
            ("2 dimensions", "(6,)"),
        ),
        Case(
            f"{name}-w-rows",
            lambda: affine_forward(x, _a(5, 3), _a(3)),
            ValueError,
            name,
            ("(4, 2, 3)", "(5, 3)", "(6, M)"),
        ),
        Case(
            f"{name}-bias",
            lambda: affine_forward(x, _a(6, 3), _a(4)),
            ValueError,
            name,
            ("(3,)", "(4,)"),
        ),
        Case(
            f"{name}-int-x",
            lambda: affine_forward(x.astype(np.int64), _a(6, 3), _a(3)),
            TypeError,
            name,
            ("int64",),
        ),
        Case(
            "relu_forward-list",
            lambda: relu_forward([1.0, -1.0]),
            TypeError,
            "relu_forward",
            ("array", "list"),
        ),
    ]


def _optim_cases():
    return [
        Case(
            f"{name}-shape",
            lambda rule=rule: rule(_a(3, 4), _a(4, 3)),
            ValueError,
            name,
            ("dw", "(3, 4)", "(4, 3)"),
        )
        for name, rule in optim.UPDATE_RULES.items()
    ] + [
        Case(
            f"{name}-config",
            lambda rule=rule: rule(_a(3), _a(3), [("learning_rate", 1.0)]),
            TypeError,
            name,
            ("dict", "list"),
        )
        for name, rule in optim.UPDATE_RULES.items()
    ]


CASES = (
    _conv_cases("conv_forward_naive", conv_forward_naive)
    + _conv_cases("conv_forward_fast", conv_forward_fast)
    + _pool_cases("max_pool_forward_naive", max_pool_forward_naive)
    + _pool_cases("max_pool_forward_fast", max_pool_forward_fast)
    + _backward_cases()
    + _bn_cases()
    + _dropout_cases()
    + _loss_cases()
    + _affine_cases()
    + _optim_cases()
)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input_message_names_function_expected_and_given(case: Case):
    with pytest.raises(case.exc, match=rf"^{re.escape(case.fn)}: ") as info:
        case.call()
    message = str(info.value)
    for fragment in case.says:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


def test_every_layer_family_is_covered_in_both_forms():
    """The naive and fast forms get the same bad inputs, case for case."""
    for naive, fast in [
        ("conv_forward_naive", "conv_forward_fast"),
        ("max_pool_forward_naive", "max_pool_forward_fast"),
    ]:
        naive_ids = {c.id.removeprefix(naive) for c in CASES if c.fn == naive}
        fast_ids = {c.id.removeprefix(fast) for c in CASES if c.fn == fast}
        assert naive_ids and naive_ids == fast_ids


# --- the helpers themselves --------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad", "expected"),
    [
        (5, 3, 1, 1, 5),
        (32, 7, 1, 3, 32),
        (4, 4, 2, 1, 2),
        (7, 2, 3, 2, 4),
        (8, 2, 2, 0, 4),
        (5, 2, 2, 0, None),  # 3 / 2 is not whole
        (2, 5, 1, 1, None),  # kernel larger than the padded input
        (3, 3, 5, 0, 1),  # a single window, any stride
    ],
)
def test_output_size(size, kernel, stride, pad, expected):
    assert output_size(size, kernel, stride, pad) == expected


def test_conv_and_pool_shapes_return_sizes():
    x, w, b = _a(2, 3, 7, 5), _a(4, 3, 2, 3), _a(4)
    assert conv_shapes("f", x, w, b, {"stride": 3, "pad": 2}) == (3, 2, 4, 3)
    pool = {"pool_height": 3, "pool_width": 1, "stride": 2}
    assert pool_shapes("f", x, pool) == (3, 1, 2, 1 + (7 - 3) // 2, 1 + (5 - 1) // 2)
    # Numpy integers are accepted as parameters.
    assert conv_shapes("f", x, w, b, {"stride": np.int64(3), "pad": np.int32(2)})[:2] == (3, 2)


def test_check_labels_accepts_valid_labels():
    check_labels("f", np.array([0, 4, 2], dtype=np.uint8), 3, 5)
    check_labels("f", np.zeros(0, dtype=np.int64), 0, 5)
    with pytest.raises(TypeError, match=r"^f: .*bool"):
        check_labels("f", np.array([True, False]), 2, 5)
