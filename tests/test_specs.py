"""Tests for nndl.train.specs.parse_spec, the one validator of registry specs."""

from __future__ import annotations

import inspect

import pytest

from nndl.train import specs
from nndl.train.specs import is_positive, parse_spec, spec_options


def _needs_size(x, *, size, scale=1.0, tags=("a",)):
    return x


REGISTRY = {"thing": _needs_size, "plain": lambda x: x}


def test_options_are_the_keyword_only_parameters():
    required = inspect.Parameter.empty
    assert spec_options(_needs_size) == {"size": required, "scale": 1.0, "tags": ("a",)}
    assert spec_options(REGISTRY["plain"]) == {}


def test_defaults_filled_and_tuples_become_lists():
    out = parse_spec("f", "widget", {"name": "thing", "size": 3}, REGISTRY)
    assert out == {"name": "thing", "size": 3, "scale": 1.0, "tags": ["a"]}
    assert parse_spec("f", "widget", "plain", REGISTRY) == {"name": "plain"}


def test_errors_name_the_caller_key_and_valid_choices():
    with pytest.raises(ValueError, match=r"^f: unknown widget name 'nope'; expected one of"):
        parse_spec("f", "widget", "nope", REGISTRY)
    with pytest.raises(ValueError, match=r"^f: widget 'thing' got unknown key\(s\) \['sise'\]"):
        parse_spec("f", "widget", {"name": "thing", "size": 1, "sise": 2}, REGISTRY)
    with pytest.raises(ValueError, match=r"missing the required key\(s\) \['size'\]"):
        parse_spec("f", "widget", "thing", REGISTRY)
    checks = {"scale": (is_positive, "a number > 0")}
    with pytest.raises(ValueError, match=r"^f: widget 'thing' expected 'scale' to be a number > 0"):
        parse_spec("f", "widget", {"name": "thing", "size": 1, "scale": -1}, REGISTRY, checks)
    with pytest.raises(TypeError, match=r"^f: expected a widget spec as a name or a dict"):
        parse_spec("f", "widget", ["thing"], REGISTRY)


def test_star_import_is_clean():
    ns: dict = {}
    exec("from nndl.train.specs import *", ns)
    assert set(ns) - {"__builtins__"} == set(specs.__all__)
