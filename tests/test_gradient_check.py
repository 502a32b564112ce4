"""Tests for nndl.gradient_check against functions whose gradients are known in closed form."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nndl.gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    grad_check_sparse,
    rel_error,
)


def test_rel_error_definition():
    assert rel_error(1.0, 3.0) == pytest.approx(2.0 / 4.0)
    x = np.array([1.0, -2.0, 0.0])
    assert rel_error(x, x) == 0.0
    y = np.array([1.1, -2.0, 0.0])
    assert rel_error(x, y) == rel_error(y, x) == pytest.approx(0.1 / 2.1)
    # Near zero the denominator is floored at 1e-8 rather than dividing by zero.
    assert rel_error(0.0, 1e-12) == pytest.approx(1e-12 / 1e-8)


def test_eval_numerical_gradient_of_a_cubic():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    x_before = x.copy()
    grad = eval_numerical_gradient(lambda a: np.sum(a**3 + 2 * a), x, verbose=False)
    assert rel_error(grad, 3 * x_before**2 + 2) < 1e-8
    # Perturbed in place and restored exactly.
    np.testing.assert_array_equal(x, x_before)


def test_eval_numerical_gradient_perturbs_in_place_for_closures():
    """``f`` may ignore its argument and close over ``x``, as CS231n notebooks do."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(6)
    w = rng.standard_normal(6)
    grad = eval_numerical_gradient(lambda _: float(np.sin(x) @ w), x, verbose=False)
    assert rel_error(grad, np.cos(x) * w) < 1e-8


def test_eval_numerical_gradient_verbose_prints_each_entry(capsys):
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    grad = eval_numerical_gradient(lambda a: np.sum(a**2), x, verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == x.size
    assert "(1, 0)" in lines[2]
    np.testing.assert_allclose(grad, 2 * x)
    eval_numerical_gradient(lambda a: np.sum(a**2), x, verbose=False)
    assert capsys.readouterr().out == ""


def test_eval_numerical_gradient_step_size():
    """With ``h`` the centred difference of a cubic is off by exactly h**2 per entry."""
    x = np.array([0.5, -1.0])
    grad = eval_numerical_gradient(lambda a: np.sum(a**3), x, verbose=False, h=1e-2)
    np.testing.assert_allclose(grad, 3 * x**2 + 1e-4, rtol=1e-9)


def test_eval_numerical_gradient_array_of_an_array_function():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 2))
    df = rng.standard_normal((3, 2, 2))
    x_before = x.copy()
    grad = eval_numerical_gradient_array(lambda a: a**2 + np.exp(a), x, df)
    assert rel_error(grad, (2 * x_before + np.exp(x_before)) * df) < 1e-8
    np.testing.assert_array_equal(x, x_before)


def test_eval_numerical_gradient_array_copes_with_a_reused_output_buffer():
    """A layer that writes into the same output array on every call still checks out."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(5)
    a = rng.standard_normal((4, 5))
    df = rng.standard_normal(4)
    buf = np.empty(4)

    def f(v):
        np.dot(a, v, out=buf)
        return buf

    grad = eval_numerical_gradient_array(f, x, df)
    assert rel_error(grad, a.T @ df) < 1e-8


_LINE = re.compile(r"^numerical: -?\d+\.\d{6} analytic: -?\d+\.\d{6}, relative error: \S+e[+-]\d+$")


def test_grad_check_sparse_reports_small_errors_for_a_right_gradient(capsys):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6))
    errors = grad_check_sparse(lambda a: np.sum(a**3), x, 3 * x**2, num_checks=7, seed=0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(errors) == len(lines) == 7
    assert all(_LINE.match(line) for line in lines), lines
    assert max(errors) < 1e-7


def test_grad_check_sparse_flags_a_wrong_gradient(capsys):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 6))
    errors = grad_check_sparse(lambda a: np.sum(a**3), x, 2 * x**2, num_checks=5, seed=0)
    assert min(errors) == pytest.approx(1 / 5, rel=1e-6)  # |3 - 2| / (3 + 2)
    capsys.readouterr()


def test_grad_check_sparse_seed_is_reproducible_and_leaves_global_state(capsys):
    x = np.random.default_rng(6).standard_normal((10, 10))
    x_before = x.copy()
    state = np.random.get_state()
    wrong = np.random.default_rng(7).standard_normal(x.shape)  # entry-specific errors
    e1 = grad_check_sparse(lambda a: np.sum(a**2), x, wrong, num_checks=4, seed=11)
    e2 = grad_check_sparse(lambda a: np.sum(a**2), x, wrong, num_checks=4, seed=11)
    e3 = grad_check_sparse(lambda a: np.sum(a**2), x, wrong, num_checks=4, seed=12)
    capsys.readouterr()
    assert e1 == e2 and e1 != e3
    np.testing.assert_array_equal(x, x_before)
    after = np.random.get_state()
    np.testing.assert_array_equal(state[1], after[1])
    assert state[2:] == after[2:]


@pytest.mark.parametrize(
    "call",
    [
        lambda x: eval_numerical_gradient(lambda v: float(v.sum()), x, verbose=False),
        lambda x: eval_numerical_gradient_array(lambda v: v * 2, x, np.ones(x.shape)),
        lambda x: grad_check_sparse(lambda v: float(v.sum()), x, np.ones(x.shape)),
    ],
)
def test_integer_arrays_are_refused(call):
    # x + h on an integer array rounds the step away: the "gradient" would be garbage.
    with pytest.raises(TypeError, match=r"expected x to be a floating point array, got dtype int"):
        call(np.arange(6).reshape(2, 3))
