"""Tests for nndl.ema: the average against its closed form, swapping, state round trips."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.ema import EMA


def _sequence(n, seed=0, shape=(3, 2)):
    rng = np.random.default_rng(seed)
    return [{"W": rng.standard_normal(shape), "b": rng.standard_normal(shape[1])} for _ in range(n)]


def test_average_equals_the_closed_form_without_warmup():
    d, K = 0.8, 6
    seq = _sequence(K + 1)
    ema = EMA(d, warmup=False)
    for params in seq:
        assert ema.update(params)
    # avg_K = d^K w_0 + sum_{k=1..K} (1 - d) d^(K-k) w_k
    for name in ("W", "b"):
        expected = d**K * seq[0][name]
        expected += sum((1 - d) * d ** (K - k) * seq[k][name] for k in range(1, K + 1))
        np.testing.assert_allclose(ema.averages[name], expected, rtol=1e-13)
    assert ema.calls == ema.num_updates == K + 1


def test_warmup_caps_the_decay_by_the_update_count():
    d = 0.99
    seq = _sequence(5, seed=1)
    ema = EMA(d)
    for params in seq:
        ema.update(params)
    avg = seq[0]["W"].copy()
    for k in range(1, 5):
        dk = min(d, (1 + k) / (10 + k))
        avg = dk * avg + (1 - dk) * seq[k]["W"]
    np.testing.assert_allclose(ema.averages["W"], avg, rtol=1e-13)
    assert ema.decay_at(1) == pytest.approx(2 / 11)
    assert ema.decay_at(10_000) == d


def test_constant_weights_average_to_themselves():
    w = {"W": np.full((2, 2), 3.0)}
    ema = EMA(0.9)
    for _ in range(4):
        ema.update(w)
    np.testing.assert_allclose(ema.averages["W"], 3.0)


def test_every_k_averages_only_every_kth_call():
    seq = _sequence(6, seed=2)
    ema = EMA(0.5, every=3, warmup=False)
    averaged = [ema.update(p) for p in seq]
    assert averaged == [False, False, True, False, False, True]
    expected = 0.5 * seq[2]["W"] + 0.5 * seq[5]["W"]
    np.testing.assert_allclose(ema.averages["W"], expected)
    assert ema.calls == 6 and ema.num_updates == 2


def test_decay_override_for_one_average():
    seq = _sequence(2, seed=3)
    ema = EMA(0.9, warmup=False)
    ema.update(seq[0])
    ema.update(seq[1], decay=0.25)
    np.testing.assert_allclose(ema.averages["W"], 0.25 * seq[0]["W"] + 0.75 * seq[1]["W"])


def test_lookahead_writes_the_average_back():
    seq = _sequence(3, seed=4)
    live = {k: v.copy() for k, v in seq[0].items()}
    ema = EMA(0.5, warmup=False, lookahead=True)
    ema.update(live)
    np.testing.assert_array_equal(live["W"], seq[0]["W"])
    for name in live:  # a training step moves the live weights
        np.copyto(live[name], seq[1][name])
    ema.update(live)
    expected = 0.5 * seq[0]["W"] + 0.5 * seq[1]["W"]
    np.testing.assert_allclose(live["W"], expected)
    np.testing.assert_allclose(ema.averages["W"], expected)


class _Model:
    def __init__(self, params):
        self.params = params

    def loss(self, X):
        return X @ self.params["W"] + self.params["b"]


def test_swapped_puts_the_average_in_and_restores_the_weights():
    seq = _sequence(3, seed=5)
    model = _Model({k: v.copy() for k, v in seq[0].items()})
    arrays = dict(model.params)  # the live arrays: the swap is in place
    ema = EMA(0.5, warmup=False)
    for p in seq:
        ema.update(p)
    current = {k: v.copy() for k, v in model.params.items()}
    X = np.ones((2, 3))
    with ema.swapped(model) as m:
        assert m is model
        np.testing.assert_array_equal(model.params["W"], ema.averages["W"])
        swapped_scores = model.loss(X)
    np.testing.assert_allclose(swapped_scores, X @ ema.averages["W"] + ema.averages["b"])
    for k in current:
        np.testing.assert_array_equal(model.params[k], current[k])
        assert model.params[k] is arrays[k]


def test_swapped_restores_after_an_exception():
    seq = _sequence(2, seed=6)
    params = {k: v.copy() for k, v in seq[1].items()}
    ema = EMA(0.5)
    ema.update(seq[0])
    with pytest.raises(KeyError), ema.swapped(params):
        raise KeyError("boom")
    np.testing.assert_array_equal(params["W"], seq[1]["W"])


def test_copy_to_and_read_only_averages():
    seq = _sequence(2, seed=7)
    ema = EMA(0.5)
    ema.update(seq[0])
    target = {k: np.zeros_like(v) for k, v in seq[0].items()}
    ema.copy_to(target)
    np.testing.assert_array_equal(target["b"], seq[0]["b"])
    with pytest.raises(ValueError):
        ema.averages["W"][0, 0] = 1.0


def test_float32_weights_keep_a_float32_average():
    p = {"W": np.ones((2, 2), np.float32)}
    ema = EMA(0.9)
    ema.update(p)
    ema.update({"W": np.zeros((2, 2), np.float32)})
    assert ema.averages["W"].dtype == np.float32


def test_state_dict_round_trip_resumes_exactly():
    seq = _sequence(7, seed=8)
    whole = EMA(0.9, every=2)
    for p in seq:
        whole.update(p)
    first = EMA(0.9, every=2)
    for p in seq[:3]:
        first.update(p)
    state = first.state_dict()
    first.update(seq[3])  # the saved state is a copy, unaffected by later updates
    resumed = EMA(0.5)  # settings come from the state
    resumed.load_state_dict(state)
    assert (resumed.decay, resumed.every, resumed.warmup) == (0.9, 2, True)
    for p in seq[3:]:
        resumed.update(p)
    np.testing.assert_array_equal(resumed.averages["W"], whole.averages["W"])
    assert resumed.calls == whole.calls and resumed.num_updates == whole.num_updates


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"EMA: expected decay in \[0, 1\), got 1.0"):
        EMA(1.0)
    with pytest.raises(ValueError, match="EMA: expected every to be an int >= 1"):
        EMA(0.9, every=0)
    ema = EMA(0.9)
    with pytest.raises(RuntimeError, match=r"EMA.swapped: no average yet"):
        with ema.swapped({"W": np.zeros(2)}):
            pass
    with pytest.raises(TypeError, match="EMA.update: expected 'W' to be a floating point"):
        ema.update({"W": np.zeros(2, np.int64)})
    ema.update({"W": np.zeros(2)})
    with pytest.raises(ValueError, match=r"EMA.update: expected the arrays \['W'\]"):
        ema.update({"V": np.zeros(2)})
    with pytest.raises(ValueError, match=r"EMA.swapped: expected 'W' of shape \(2,\)"):
        with ema.swapped({"W": np.zeros(3)}):
            pass
    with pytest.raises(TypeError, match="EMA.copy_to: expected a model with a params dict"):
        ema.copy_to([1, 2])
    with pytest.raises(ValueError, match=r"EMA.update: expected decay in \[0, 1\)"):
        ema.update({"W": np.zeros(2)}, decay=2.0)
    with pytest.raises(ValueError, match=r"EMA.load_state_dict: state is missing \['shadow'\]"):
        ema.load_state_dict({k: v for k, v in ema.state_dict().items() if k != "shadow"})


def test_star_import_is_clean():
    ns: dict = {}
    exec("from nndl.ema import *", ns)
    assert set(ns) - {"__builtins__"} == {"EMA"}
