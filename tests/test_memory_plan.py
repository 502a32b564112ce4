"""nndl train plans its memory before any data loads and refuses a plan the machine
cannot hold (nndl.cli.memory_plan)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli

from nndl.cli import memory_plan
from nndl.cli.errors import CLIError
from nndl.cli.flags import DEFAULTS
from nndl.cli.model_plan import preflight
from nndl.nn import build, summarize

# 1.3 M parameters, but 128 filters at full 32x32 resolution in eight layers: about 8 MiB
# of layer outputs per image, so batch 2048 plans well over 16 GiB of activations.
WIDE = [{"type": "conv_bn_relu", "filters": 128} for _ in range(8)] + [
    "global_avgpool",
    {"type": "linear", "units": 10},
]


def _settings(**over):
    return {**DEFAULTS, **over}


def test_the_plan_adds_up_its_parts():
    settings = _settings()
    plan = memory_plan.plan_memory(settings, preflight(settings))
    assert plan["total"] == sum(v for k, v in plan.items() if k != "total")
    assert set(plan) == {"runtime", "parameters", "activations", "data", "total"}
    # 49000 training images kept as bytes, 1000 + 1000 as float32, the 60000 raw uint8 read
    assert plan["data"] == 49_000 * 3072 + 2_000 * 3072 * 4 + 60_000 * 3072
    # a data set read as floats (its training images standardised as floats first)
    floats = memory_plan.plan_memory(_settings(dataset="mnist"), preflight(settings), (1, 28, 28))
    assert floats["data"] == 51_000 * 784 * 4 + 60_000 * 784


def test_activations_follow_the_layer_outputs_of_the_batch():
    settings = _settings(model="network", arch=WIDE, batch_size=256)
    kwargs = preflight(settings)
    root = build(WIDE)
    root.bind((3, 32, 32))
    outputs = summarize(root, np.float32, 256)["activation_bytes"]
    plan = memory_plan.plan_memory(settings, kwargs)
    assert plan["activations"] == memory_plan.ACTIVATION_FACTOR * outputs
    doubled = memory_plan.plan_memory({**settings, "batch_size": 512}, kwargs)
    assert doubled["activations"] == 2 * plan["activations"]


@pytest.mark.parametrize(("rule", "copies"), [("sgd", 0), ("sgd_momentum", 1), ("adam", 2)])
def test_parameter_copies_count_the_update_rules_state(rule, copies):
    settings = _settings(update_rule=rule)
    plan = memory_plan.plan_memory(settings, preflight(settings))
    base = memory_plan.plan_memory(_settings(update_rule="sgd"), preflight(_settings()))
    # weights, gradients and the best copy, plus the rule's state arrays
    assert plan["parameters"] * 3 == base["parameters"] * (3 + copies)
    with_ema = memory_plan.plan_memory({**settings, "ema": 0.99}, preflight(settings))
    assert with_ema["parameters"] * (3 + copies) == plan["parameters"] * (4 + copies)


def test_check_memory_refuses_a_plan_larger_than_what_is_available():
    plan = {"runtime": 1 << 20, "activations": 30 << 30, "total": (30 << 30) + (1 << 20)}
    with pytest.raises(CLIError, match=r"about 30,721 MiB.*activations 30,720 MiB.*"
                                       r"1,024 MiB is available.*--no-memory-check"):
        memory_plan.check_memory(plan, 1 << 30)
    memory_plan.check_memory(plan, 31 << 30)  # fits
    memory_plan.check_memory(plan, None)  # the system does not say: no check


def test_available_memory_is_a_plausible_figure():
    available = memory_plan.available_memory()
    if available is None:
        pytest.skip("this system does not report its available memory")
    assert 16 << 20 < available < 1 << 50


def _arch(tmp_path: Path) -> Path:
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(WIDE))
    return path


def test_train_refuses_before_any_data_loads_and_leaves_no_run_folder(tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--arch", _arch(tmp_path), "--batch-size", 4096,
                           "--data-dir", tmp_path / "no-data-here", "--out", out)  # fmt: skip
    assert code == 2, err
    assert err.startswith("nndl train: error: training would need about"), err
    assert "--no-memory-check" in err
    assert not out.exists()


def test_no_memory_check_starts_anyway(tmp_path, monkeypatch, tiny_cifar):
    out = tmp_path / "run"
    monkeypatch.setattr(memory_plan, "available_memory", lambda: 1 << 20)
    monkeypatch.setattr("nndl.cli.train.available_memory", lambda: 1 << 20)
    argv = ["train", "--data-dir", tiny_cifar, "--num-training", 64, "--num-validation", 32,
            "--num-test", 0, "--epochs", 1, "--batch-size", 32, "--num-filters", 4, 4, 4,
            "--no-plots", "--quiet", "--out", out]  # fmt: skip
    code, _, err = run_cli(*argv)
    assert code == 2 and "training would need about" in err and not out.exists()
    code, _, err = run_cli(*argv, "--no-memory-check")
    assert code == 0, err
    assert (out / "best_model.npz").exists()
