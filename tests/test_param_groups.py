"""Tests for nndl.optim.resolve_param_groups: matching, precedence, validation."""

from __future__ import annotations

import numpy as np
import pytest

from nndl.optim import PARAM_GROUP_KEYS, resolve_param_groups

NAMES = ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
DEFAULT = {
    "lr_mult": 1.0, "weight_decay": None, "frozen": False, "update_rule": None,
    "optim_config": None, "train_epochs": None,
}  # fmt: skip
RULE = {"update_rule": None, "optim_config": None, "train_epochs": None}  # the Solver's


def test_no_groups_gives_defaults_for_every_name_in_order():
    settings = resolve_param_groups(NAMES)
    assert list(settings) == NAMES
    assert all(s == DEFAULT for s in settings.values())
    # Each name has its own dict (no shared mutable default).
    settings["W1"]["lr_mult"] = 5.0
    assert settings["W2"]["lr_mult"] == 1.0


def test_airbench_style_groups():
    groups = [
        {"name": "no decay", "params": ["gamma*", "beta*", "b*"], "weight_decay": 0.0},
        {"name": "bn biases", "params": "beta*", "lr_mult": 64.0},
        {"name": "bn scales", "params": "gamma*", "frozen": True},
    ]
    s = resolve_param_groups(NAMES, groups)
    assert s["W1"] == DEFAULT
    assert s["b1"] == {**{"lr_mult": 1.0, "weight_decay": 0.0, "frozen": False}, **RULE}
    # 'b*' also matches beta1: the first group's decay and the second's multiplier combine.
    assert s["beta2"] == {**{"lr_mult": 64.0, "weight_decay": 0.0, "frozen": False}, **RULE}
    assert s["gamma1"] == {**{"lr_mult": 1.0, "weight_decay": 0.0, "frozen": True}, **RULE}


def test_last_matching_group_wins_per_key():
    groups = [
        {"params": "*", "lr_mult": 2.0, "weight_decay": 0.1},
        {"params": "W*", "lr_mult": 0.5},
        {"params": "W3", "lr_mult": 3.0, "frozen": True},
        {"params": "W3", "frozen": False},
    ]
    s = resolve_param_groups(NAMES, groups)
    assert s["b1"] == {**{"lr_mult": 2.0, "weight_decay": 0.1, "frozen": False}, **RULE}
    assert s["W1"] == {**{"lr_mult": 0.5, "weight_decay": 0.1, "frozen": False}, **RULE}
    assert s["W3"] == {**{"lr_mult": 3.0, "weight_decay": 0.1, "frozen": False}, **RULE}
    # Reversing the order reverses the winner.
    s = resolve_param_groups(NAMES, groups[1::-1])
    assert s["W1"]["lr_mult"] == 2.0


def test_patterns_are_case_sensitive_globs_over_full_names():
    names = ["conv1.W", "conv1.b", "bn1.gamma", "bn1.beta", "fc.W", "Fc.b"]
    s = resolve_param_groups(names, [{"params": ["*.b", "bn?.beta"], "weight_decay": 0.0}])
    assert [n for n in names if s[n]["weight_decay"] == 0.0] == ["conv1.b", "bn1.beta", "Fc.b"]
    s = resolve_param_groups(names, [{"params": "fc.*", "frozen": True}])
    assert [n for n in names if s[n]["frozen"]] == ["fc.W"]
    s = resolve_param_groups(names, [{"params": "conv1.[Wb]", "lr_mult": 0.1}])
    assert [n for n in names if s[n]["lr_mult"] == 0.1] == ["conv1.W", "conv1.b"]


def test_names_may_be_a_params_dict():
    params = {"W1": np.zeros(2), "b1": np.zeros(2)}
    s = resolve_param_groups(params, [{"params": "b1", "weight_decay": 0}])
    assert s["b1"]["weight_decay"] == 0.0 and isinstance(s["b1"]["weight_decay"], float)


def test_values_are_plain_json_types():
    s = resolve_param_groups(
        ["w"], [{"params": "w", "lr_mult": np.float32(2), "frozen": np.bool_(1)}]
    )
    assert type(s["w"]["lr_mult"]) is float and s["w"]["lr_mult"] == 2.0
    assert s["w"]["frozen"] is True


def test_pattern_matching_nothing_is_an_error_unless_not_strict():
    groups = [{"name": "bn", "params": ["gama*"], "frozen": True}]
    with pytest.raises(ValueError, match=r"groups\[0\] \('bn'\) pattern 'gama\*' matches no") as e:
        resolve_param_groups(NAMES, groups)
    assert "gamma1" in str(e.value) and "strict=False" in str(e.value)
    s = resolve_param_groups(NAMES, groups, strict=False)
    assert not any(v["frozen"] for v in s.values())


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"groups\[1\] has unknown key\(s\) \['lr'\]") as e:
        resolve_param_groups(NAMES, [{"params": "W1"}, {"params": "b1", "lr": 0.1}])
    for key in PARAM_GROUP_KEYS:
        assert repr(key) in str(e.value)


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ({"lr_mult": 2.0}, r"groups\[0\] has no 'params'"),
        ({"params": [], "frozen": True}, r"groups\[0\]\['params'\] to be a glob pattern"),
        ({"params": ["W1", 3]}, r"groups\[0\]\['params'\] to be a glob pattern"),
        ({"params": "W1", "lr_mult": -1}, r"groups\[0\]\['lr_mult'\] to be a number >= 0"),
        ({"params": "W1", "lr_mult": "2"}, r"groups\[0\]\['lr_mult'\] to be a number >= 0"),
        ({"params": "W1", "weight_decay": -0.1}, r"'weight_decay'\] to be a number >= 0"),
        ({"params": "W1", "frozen": 1}, r"groups\[0\]\['frozen'\] to be a bool"),
        ({"params": "W1", "name": 7}, r"groups\[0\]\['name'\] to be a string"),
    ],
)
def test_bad_groups_name_the_group_and_key(group, message):
    with pytest.raises(ValueError, match=rf"^resolve_param_groups: .*{message}"):
        resolve_param_groups(NAMES, [group])


def test_bad_container_types():
    with pytest.raises(TypeError, match=r"resolve_param_groups: expected groups to be a list"):
        resolve_param_groups(NAMES, {"params": "W1"})
    with pytest.raises(TypeError, match=r"resolve_param_groups: expected groups\[0\] to be a dict"):
        resolve_param_groups(NAMES, ["W1"])
    with pytest.raises(TypeError, match="resolve_param_groups: expected parameter names"):
        resolve_param_groups([1, 2])
