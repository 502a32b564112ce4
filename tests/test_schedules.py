"""Tests for nndl.schedules: values at given iterations, validation, purity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nndl.schedules import (
    SCHEDULES,
    Schedule,
    learning_rate_at,
    lr_decay_schedule,
    lr_multiplier,
    make_schedule,
)
from nndl.train import schedules


def test_registry_holds_every_schedule_and_star_import_is_clean():
    assert set(SCHEDULES) == {
        "constant",
        "step",
        "exponential",
        "linear",
        "triangular",
        "cosine",
        "one_cycle",
    }
    ns: dict = {}
    exec("from nndl.schedules import *", ns)
    assert set(ns) - {"__builtins__"} == set(schedules.__all__)
    assert "np" not in ns and "math" not in ns


def test_constant_is_one_everywhere():
    s = make_schedule(None)
    assert s.spec == {"name": "constant"}
    assert [s(t, 10) for t in (0, 5, 9, 10)] == [1.0] * 4


def test_step_milestones_in_epochs():
    spec = {"name": "step", "milestones": [2, 4], "gamma": 0.1}
    ipe = 5
    # Epochs 0-1 (t 0..9): 1; epochs 2-3 (t 10..19): 0.1; from epoch 4 (t >= 20): 0.01.
    assert lr_multiplier(spec, 0, 30, ipe) == 1.0
    assert lr_multiplier(spec, 9, 30, ipe) == 1.0
    assert lr_multiplier(spec, 10, 30, ipe) == pytest.approx(0.1)
    assert lr_multiplier(spec, 19, 30, ipe) == pytest.approx(0.1)
    assert lr_multiplier(spec, 20, 30, ipe) == pytest.approx(0.01)
    assert lr_multiplier(spec, 29, 30, ipe) == pytest.approx(0.01)


def test_step_allows_fractional_milestones_and_repeats():
    spec = {"name": "step", "milestones": [0.5, 1, 1], "gamma": 0.5}
    ipe = 4
    assert lr_multiplier(spec, 1, 12, ipe) == 1.0
    assert lr_multiplier(spec, 2, 12, ipe) == 0.5  # half an epoch
    assert lr_multiplier(spec, 4, 12, ipe) == 0.125  # two milestones at epoch 1


def test_exponential_is_the_classic_per_epoch_decay():
    """The Solver's lr_decay: during epoch e the rate is lr * lr_decay**e."""
    spec = lr_decay_schedule(0.5)
    assert spec == {"name": "exponential", "gamma": 0.5}
    ipe, epochs, lr = 3, 4, 0.1
    expected = []
    current = lr
    for _ in range(epochs):  # the Solver's loop: multiply after each epoch
        expected += [current] * ipe
        current *= 0.5
    got = [learning_rate_at(lr, spec, t, ipe * epochs, ipe) for t in range(ipe * epochs)]
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    assert lr_decay_schedule(1.0) == {"name": "constant"}


def test_epoch_schedules_need_iterations_per_epoch():
    with pytest.raises(ValueError, match=r"Schedule\('step'\).*iterations_per_epoch"):
        lr_multiplier({"name": "step", "milestones": [1]}, 3, 10)
    with pytest.raises(ValueError, match=r"Schedule\('exponential'\).*iterations_per_epoch"):
        lr_multiplier({"name": "exponential", "gamma": 0.9}, 3, 10)


def test_linear_warmup_then_decay():
    spec = {"name": "linear", "warmup": 0.1, "start": 0.0, "end": 0.0}
    T = 100
    assert lr_multiplier(spec, 0, T) == 0.0
    assert lr_multiplier(spec, 5, T) == pytest.approx(0.5)
    assert lr_multiplier(spec, 10, T) == pytest.approx(1.0)
    assert lr_multiplier(spec, 55, T) == pytest.approx(0.5)
    assert lr_multiplier(spec, 99, T) == pytest.approx(1 / 90)
    assert lr_multiplier(spec, 100, T) == pytest.approx(0.0)


def test_linear_without_warmup_starts_at_peak():
    assert lr_multiplier("linear", 0, 8) == 1.0
    assert lr_multiplier("linear", 4, 8) == 0.5


def test_triangular_start_peak_end():
    spec = {"name": "triangular", "start": 0.2, "peak_at": 0.25, "end": 0.1}
    T = 200
    assert lr_multiplier(spec, 0, T) == pytest.approx(0.2)
    assert lr_multiplier(spec, 25, T) == pytest.approx(0.6)  # halfway up
    assert lr_multiplier(spec, 50, T) == pytest.approx(1.0)  # the peak
    assert lr_multiplier(spec, 125, T) == pytest.approx(0.55)  # halfway down
    assert lr_multiplier(spec, 200, T) == pytest.approx(0.1)
    m = make_schedule(spec).multipliers(T)
    assert int(np.argmax(m)) == 50 and m.max() == pytest.approx(1.0)


def test_triangular_defaults_are_airbench94s():
    assert make_schedule("triangular").spec == {
        "name": "triangular",
        "start": 0.2,
        "peak_at": 0.23,
        "end": 0.07,
    }


@pytest.mark.parametrize("peak_at", [0.0, 1.0])
def test_triangular_degenerate_peaks_do_not_divide_by_zero(peak_at):
    spec = {"name": "triangular", "start": 0.5, "peak_at": peak_at, "end": 0.5}
    m = make_schedule(spec).multipliers(10)
    assert np.all(np.isfinite(m))
    if peak_at == 0.0:
        assert m[0] == 1.0 and m[5] == pytest.approx(0.75)
    else:
        assert m[0] == 0.5 and m[5] == pytest.approx(0.75)
        assert lr_multiplier(spec, 10, 10) == 1.0


def test_cosine_with_and_without_warmup():
    T = 100
    assert lr_multiplier("cosine", 0, T) == 1.0
    assert lr_multiplier("cosine", 50, T) == pytest.approx(0.5)
    assert lr_multiplier("cosine", 25, T) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_multiplier("cosine", 100, T) == pytest.approx(0.0, abs=1e-15)
    spec = {"name": "cosine", "warmup": 0.2, "start": 0.1, "end": 0.01}
    assert lr_multiplier(spec, 0, T) == pytest.approx(0.1)
    assert lr_multiplier(spec, 10, T) == pytest.approx(0.55)
    assert lr_multiplier(spec, 20, T) == pytest.approx(1.0)
    assert lr_multiplier(spec, 60, T) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_multiplier(spec, 100, T) == pytest.approx(0.01)


def test_cosine_is_monotone_after_warmup():
    m = make_schedule({"name": "cosine", "warmup": 0.1}).multipliers(50)
    assert np.all(np.diff(m[:5]) > 0) and np.all(np.diff(m[5:]) < 0)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_start_peak_end(anneal):
    spec = {"name": "one_cycle", "pct_start": 0.3, "div_factor": 25.0, "anneal": anneal}
    T = 1000
    spec["final_div_factor"] = 1e4
    assert lr_multiplier(spec, 0, T) == pytest.approx(1 / 25)
    assert lr_multiplier(spec, 300, T) == pytest.approx(1.0)
    assert lr_multiplier(spec, 1000, T) == pytest.approx(1 / 25 / 1e4)
    mid_up = lr_multiplier(spec, 150, T)
    assert mid_up == pytest.approx((1 / 25 + 1) / 2)  # cos and linear meet halfway
    quarter = lr_multiplier(spec, 75, T)
    if anneal == "cos":  # the cosine is flat at the ends: slower than linear at first
        assert quarter < 1 / 25 + 0.25 * (1 - 1 / 25)
    else:
        assert quarter == pytest.approx(1 / 25 + 0.25 * (1 - 1 / 25))


def test_multipliers_are_pure_functions_of_t():
    """Any t evaluated alone equals the same t inside a full sweep (resume exactness)."""
    for name, spec in [
        ("triangular", "triangular"),
        ("cosine", {"name": "cosine", "warmup": 0.05}),
        ("one_cycle", "one_cycle"),
        ("step", {"name": "step", "milestones": [1, 2]}),
    ]:
        s = make_schedule(spec)
        sweep = s.multipliers(37, iterations_per_epoch=10)
        for t in (0, 3, 17, 36):
            assert s(t, 37, 10) == sweep[t], name


def test_past_the_end_stays_at_the_end_value():
    assert lr_multiplier("triangular", 150, 100) == pytest.approx(0.07)


def test_spec_is_json_serialisable_and_round_trips():
    s = make_schedule({"name": "step", "milestones": (3, 6)})
    text = json.dumps(s.spec)
    assert make_schedule(json.loads(text)) == s
    assert s.spec == {"name": "step", "milestones": [3, 6], "gamma": 0.1}
    assert make_schedule(s) is s


def test_unknown_key_names_it_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"^make_schedule: .*'peak'") as info:
        make_schedule({"name": "triangular", "peak": 0.3})
    msg = str(info.value)
    for key in ("start", "peak_at", "end"):
        assert key in msg


def test_unknown_name_lists_the_registry():
    with pytest.raises(ValueError, match=r"make_schedule: unknown schedule name 'cosin'") as e:
        make_schedule("cosin")
    for name in SCHEDULES:
        assert repr(name) in str(e.value)
    with pytest.raises(ValueError, match="unknown schedule name None"):
        make_schedule({"peak_at": 0.2})
    with pytest.raises(TypeError, match="make_schedule: expected a schedule spec"):
        make_schedule(3)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"name": "triangular", "peak_at": 1.5}, "peak_at"),
        ({"name": "cosine", "warmup": -0.1}, "warmup"),
        ({"name": "linear", "end": -1}, "end"),
        ({"name": "step", "milestones": [5, 2]}, "milestones"),
        ({"name": "step", "milestones": 5}, "milestones"),
        ({"name": "exponential", "gamma": 0}, "gamma"),
        ({"name": "one_cycle", "anneal": "exp"}, "anneal"),
        ({"name": "one_cycle", "div_factor": True}, "div_factor"),
    ],
)
def test_bad_values_name_the_key(spec, key):
    with pytest.raises(ValueError, match=rf"make_schedule: .*expected '{key}' to be"):
        make_schedule(spec)


def test_missing_required_key():
    with pytest.raises(
        ValueError, match=r"'step' is missing the required key\(s\) \['milestones'\]"
    ):
        make_schedule("step")


@pytest.mark.parametrize(("t", "total"), [(-1, 10), (1.5, 10), (0, 0), (True, 10)])
def test_bad_counters(t, total):
    with pytest.raises(ValueError, match=r"Schedule\('cosine'\): expected"):
        lr_multiplier("cosine", t, total)


def test_schedule_is_a_frozen_value():
    s = make_schedule("cosine")
    assert isinstance(s, Schedule)
    with pytest.raises(AttributeError):
        s.spec = {}  # type: ignore[misc]


def test_plot_lr_schedule_draws_the_values_and_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from nndl.plots import plot_lr_schedule

    lrs = 0.1 * make_schedule("triangular").multipliers(40)
    path = tmp_path / "lr.png"
    fig = plot_lr_schedule(lrs, iterations_per_epoch=10, path=path)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "learning rate"]
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 41))
    np.testing.assert_allclose(line.get_ydata(), lrs)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic writer left no temp file
    fig = plot_lr_schedule(
        0.1 * make_schedule(lr_decay_schedule(0.5)).multipliers(40, 10), log=True
    )
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="plot_lr_schedule: a log scale needs"):
        plot_lr_schedule([0.1, 0.0], log=True)
    with pytest.raises(ValueError, match="plot_lr_schedule: expected learning_rates to be a 1-d"):
        plot_lr_schedule(np.zeros((2, 2)))
