"""The recipe on the command line: presets, the new training flags, per-channel
normalisation through predict and export, --num-validation 0, --test-at-end and
``nndl evaluate --num-test/--tta``, on a tiny synthetic CIFAR-10."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("PIL.Image")

from _cifar import write_synthetic_cifar10  # noqa: E402
from _cli import run_cli  # noqa: E402

from nndl.augment import tta_predict  # noqa: E402
from nndl.cli.flags import DEFAULTS, add_train_flags, settings_from_args  # noqa: E402
from nndl.cli.presets import AIRBENCH94, AIRBENCH94_MUON, PRESETS, airbench_spec  # noqa: E402
from nndl.cli.recipe import solver_kwargs  # noqa: E402
from nndl.cli.report import softmax  # noqa: E402
from nndl.cli.run_folder import RunFolder  # noqa: E402
from nndl.data import apply_preprocess, channel_mean_std, get_CIFAR10_data  # noqa: E402
from nndl.models import load_model  # noqa: E402
from nndl.network import Network  # noqa: E402
from nndl.optim import UPDATE_RULES  # noqa: E402
from nndl.train.schedules import make_schedule  # noqa: E402
from nndl.train.setup import ParamPlan  # noqa: E402

SIZES = ["--num-training", "100", "--num-validation", "20", "--num-test", "40"]
ARCH = [
    {"type": "conv2d", "name": "whiten", "filters": 24, "kernel_size": 2, "pad": "valid",
     "init": "patch_whitening", "trainable": False},
    "gelu",
    {"type": "conv_pool_bn_act", "name": "block1", "filters": 8, "bias": False,
     "scale": False, "activation": "gelu", "floor": True, "momentum": 0.6,
     "init": "dirac_uniform"},
    "global_maxpool",
    {"type": "linear", "name": "head", "units": 10, "bias": False, "scale": 0.5},
]  # fmt: skip
RECIPE = [
    "--update-rule", "sgdw", "--lr", "0.2", "--momentum", "0.85", "--weight-decay", "5e-4",
    "--coupled-decay", "--bias-decay", "--bn-bias-lr", "4", "--schedule", "triangular",
    "--warmup", "0.3", "--label-smoothing", "0.2", "--ema", "0.8", "--ema-every", "2",
    "--ema-power", "1", "--lookahead", "--normalize", "channel", "--crop-pad", "2",
    "--flip", "alternating", "--num-validation", "0", "--test-at-end", "--tta",
    "mirror_translate", "--batch-size", "20", "--epochs", "4", "--quiet", "--no-plots",
]  # fmt: skip


def settings(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_train_flags(parser)
    return settings_from_args(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    return write_synthetic_cifar10(tmp_path_factory.mktemp("data"), n_per_batch=40, n_test=40)


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, cifar) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("recipe")
    (root / "arch.json").write_text(json.dumps(ARCH))
    run = root / "run"
    code, out, err = run_cli("train", "--data-dir", cifar, "--out", run, *SIZES,
                             "--arch", root / "arch.json", *RECIPE)  # fmt: skip
    assert code == 0, err
    return run, out


# --- presets ----------------------------------------------------------------------------


def test_plain_nndl_train_is_the_65_preset_and_the_default_run():
    plain = settings()
    assert plain == settings("--preset", "65")
    assert plain["preset"] == "65"
    changed = {"ema": 0.99}  # the 65 preset's own
    for key, value in DEFAULTS.items():
        assert plain[key] == changed.get(key, value), key
    kwargs = solver_kwargs(plain, Network(ARCH, seed=0).param_specs)
    # The classic Solver (Adam at 2e-3 halved per epoch, SPEC's shuffle) and an average of
    # the weights for every accuracy check and the best model.
    assert kwargs["optim_config"] == {"learning_rate": 2e-3} and kwargs["lr_decay"] == 0.5
    assert kwargs["batch_size"] == 64 and kwargs["ema"]["decay"] == 0.99
    assert all(kwargs[k] is None for k in ("schedule", "param_groups", "augment"))


def test_a_flag_turns_the_main_jobs_average_off():
    assert settings("--ema", "0")["ema"] == 0.0
    assert solver_kwargs(settings("--ema", "0"), Network(ARCH, seed=0).param_specs)["ema"] is None


def test_the_94_sgd_preset_resolves_to_the_airbench_recipe():
    name = "94-sgd"
    s = settings("--preset", name)
    assert s["preset"] == name and s["model"] == "network"
    for key in ("lr", "momentum", "weight_decay", "coupled_decay", "schedule", "ema",
                "ema_power", "lookahead", "flip", "crop_pad", "num_validation"):  # fmt: skip
        assert s[key] == AIRBENCH94[key], key
    assert s["lr"] == 1.5 == pytest.approx(11.5 / (1 + 1 / (1 - 0.85)), rel=1e-15)
    assert s["weight_decay"] == 0.0153 / 11.5
    assert s["num_training"] == 50000 and s["num_test"] == 10000 and s["lr_decay"] == 1.0
    assert s["arch"] == PRESETS[name].settings["arch"]


def test_the_94_preset_resolves_to_airbench94_muon_in_mean_loss_terms():
    s = settings("--preset", "94")
    assert s["preset"] == "94" and s["arch"] == AIRBENCH94_MUON["arch"]
    assert (s["batch_size"], s["epochs"], s["recompute"]) == (2000, 10, True)
    assert (s["num_training"], s["num_test"]) == (50000, 10000)
    assert s["schedule"] == {"name": "linear", "warmup": 0.0, "start": 0.0, "end": 0.0}
    assert s["label_smoothing"] == 0.2 and s["tta"] == "mirror_translate"
    assert s["ema"] is None and not s["lookahead"]  # no weight average, as airbench94_muon
    net = Network(s["arch"], seed=0)
    assert net.param_specs["whiten.W"].trainable and net.param_specs["whiten.b"].trainable
    kwargs = solver_kwargs(s, net.param_specs)
    solver_like = ParamPlan(net, kwargs["optim_config"], "sgdw", kwargs["param_groups"],
                            make_schedule(s["schedule"]), UPDATE_RULES["sgdw"])  # fmt: skip
    # PyTorch's summed-loss SGD (lr_sum, weight_decay = 2e-6 * B / lr_sum) at batch B is
    # nndl's mean-loss SGD with lr = lr_sum * B and coupled decay 2e-6 / lr_sum.
    B = 2000
    configs = solver_like.initial_configs(kwargs["optim_config"])
    filters = [k for k in net.params if k.endswith("conv.W")]
    assert len(filters) == 6
    for k, config in configs.items():
        if k == "whiten.W":
            assert k in solver_like.frozen
        elif k in filters:
            assert solver_like.rule_name[k] == "muon"
            assert {x: config[x] for x in ("learning_rate", "momentum", "nesterov",
                    "ns_steps", "renormalize")} == {"learning_rate": 0.24, "momentum": 0.6,
                    "nesterov": True, "ns_steps": 3, "renormalize": True}  # fmt: skip
            assert config.get("weight_decay", 0.0) == 0.0
        else:
            lr_sum = 0.67 if k == "head.W" else 0.053
            assert solver_like.rule_name[k] == "sgdw", k
            assert config["learning_rate"] == pytest.approx(lr_sum * B, rel=1e-12), k
            assert config["weight_decay"] == pytest.approx(2e-6 / lr_sum, rel=1e-12), k
            assert config["momentum"] == 0.85 and config["coupled_decay"] is True
    assert solver_like.train_epochs["whiten.b"] == 3
    assert all(e is None for k, e in solver_like.train_epochs.items() if k != "whiten.b")
    head = [layer for layer in s["arch"] if layer.get("name") == "head"][0]
    assert head["scale"] == 1 / 256


def test_the_90_preset_is_the_94_recipe_shortened():
    s, s94 = settings("--preset", "90"), settings("--preset", "94")
    assert s["epochs"] == 3
    assert {k: v for k, v in s.items() if k not in ("preset", "epochs")} == {
        k: v for k, v in s94.items() if k not in ("preset", "epochs")}


def test_the_80_preset_is_the_94_recipe_narrower_with_the_whitening_conv_frozen():
    s = settings("--preset", "80")
    assert (s["epochs"], s["tta"], s["batch_size"]) == (2, "mirror", 2000)
    net = Network(s["arch"], seed=0)
    assert not net.param_specs["whiten.W"].trainable and not net.param_specs["whiten.b"].trainable
    assert [net.params[f"block{i}b.conv.W"].shape[0] for i in (1, 2, 3)] == [64, 128, 128]
    head = [layer for layer in s["arch"] if layer.get("name") == "head"][0]
    assert head["scale"] == 1 / 128
    kwargs = solver_kwargs(s, net.param_specs)
    plan = ParamPlan(net, kwargs["optim_config"], "sgdw", kwargs["param_groups"],
                     make_schedule(s["schedule"]), UPDATE_RULES["sgdw"])  # fmt: skip
    filters = {k for k in net.params if k.endswith("conv.W")}
    assert len(filters) == 6 and all(plan.rule_name[k] == "muon" for k in filters)
    assert plan.rule_name["head.W"] == "sgdw"
    assert {k for k in net.params if k.endswith(".beta")} <= set(plan.rule_name)
    assert plan.frozen == {"whiten.W", "whiten.b"}  # the whitening conv never steps


def test_flags_override_a_preset_and_the_model_plans():
    s = settings("--preset", "94-sgd", "--epochs", "3", "--tta", "none", "--no-lookahead")
    assert (s["epochs"], s["tta"], s["lookahead"]) == (3, "none", False)
    assert s["batch_size"] == 1024  # the rest is the preset's
    net = Network(s["arch"], seed=0)
    assert net.param_specs["whiten.W"].trainable is False
    assert net.params["head.W"].shape == (256, 10)
    kwargs = solver_kwargs(s, net.param_specs)
    groups = {g["name"]: g for g in kwargs["param_groups"]}
    assert groups["bn biases"]["lr_mult"] == 64.0
    assert groups["bn biases"]["weight_decay"] == pytest.approx(s["weight_decay"] / 64)
    assert kwargs["optim_config"]["coupled_decay"] is True
    assert kwargs["ema"] == {"decay": 0.95**5, "every": 5, "lookahead": False, "power": 3.0,
                             "warmup": False}  # fmt: skip
    assert kwargs["augment"] == [{"name": "random_crop", "pad": 2, "mode": "reflect"},
                                 "alternating_flip"]  # fmt: skip


def test_airbench_spec_is_the_benchmark_net_with_the_recipe_inits():
    with open(Path(__file__).parents[1] / "benchmarks" / "specs" / "airbench94.json") as f:
        bench = json.load(f)
    ours = airbench_spec()
    strip = ("init",)
    assert [{k: v for k, v in layer.items() if k not in strip} for layer in ours] == [
        {k: v for k, v in layer.items() if k not in strip} for layer in bench
    ]


def test_help_lists_the_presets_and_the_new_flags():
    code, out, _ = run_cli("train", "--help")
    assert code == 0
    for text in ("presets (--preset NAME", "94: airbench94_muon", "94-sgd: airbench94",
                 "--schedule", "--ema-power", "--bn-bias-lr", "--normalize", "--test-at-end",
                 "--crop-pad"):  # fmt: skip
        assert text in out, text


def test_a_schedule_replaces_the_per_epoch_decay_and_takes_the_warmup():
    s = settings("--schedule", "triangular", "--warmup", "0.1")
    assert s["lr_decay"] == 1.0
    assert s["schedule"] == {"name": "triangular", "start": 0.2, "peak_at": 0.1, "end": 0.07}
    s = settings("--schedule", '{"name": "cosine", "end": 0.01}', "--warmup", "0.2")
    assert s["schedule"] == {"name": "cosine", "warmup": 0.2, "start": 0.0, "end": 0.01}


# --- a run with the recipe ----------------------------------------------------------------


def test_the_recipe_run_learns_and_records_its_settings(recipe_run):
    run, out = recipe_run
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["val_acc"] for m in metrics] == [None] * 4  # --num-validation 0
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["preset"] == "65"
    assert config["settings"]["schedule"]["peak_at"] == 0.3
    assert config["data"]["num_validation"] == 0 and len(config["data"]["mean"]) == 3
    test = config["test"]
    assert test["num_images"] == 40 and test["tta"] == "mirror_translate"
    assert f"test accuracy: {test['accuracy']:.4f}" in out
    assert json.loads((run / "evaluation.json").read_text())["accuracy"] == test["accuracy"]


def test_without_validation_the_best_model_is_the_last(recipe_run):
    run, _ = recipe_run
    best, best_extra = load_model(run / "best_model.npz")
    last, last_extra = load_model(run / "last_model.npz")
    assert best_extra["epoch"] == last_extra["epoch"] == 4
    for k in best.params:
        np.testing.assert_array_equal(best.params[k], last.params[k])


def test_channel_normalisation_is_stored_and_applied_by_predict(recipe_run, cifar, tmp_path):
    run, _ = recipe_run
    raw = get_CIFAR10_data(100, 0, 0, subtract_mean=False, data_dir=cifar)["X_train"]
    mean, std = channel_mean_std(raw)
    pre = RunFolder(run).read_preprocess()
    np.testing.assert_allclose(pre["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(pre["std"], std, rtol=1e-6)
    assert not pre["mean_image"].any()
    from PIL import Image

    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    code, out, err = run_cli("predict", run, tmp_path / "x.png", "--top-k", "1")
    assert code == 0, err
    model, _ = load_model(run / "best_model.npz")
    x = image.transpose(2, 0, 1)[None].astype(np.float32)
    by_hand = (x - mean[:, None, None].astype(np.float32)) / std[:, None, None].astype(np.float32)
    probs = softmax(model.loss(by_hand))[0]
    names = RunFolder(run).read_preprocess()["class_names"]
    assert f"{names[int(probs.argmax())]} {probs.max():.4f}" in out


def test_the_onnx_export_applies_the_channel_normalisation(recipe_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    run, _ = recipe_run
    code, _, err = run_cli("export", run, "--output", tmp_path / "m.onnx")
    assert code == 0, err
    folder = RunFolder(run)
    model, _, pre = folder.load_model()
    X = (np.random.default_rng(1).random((6, 3, 32, 32)) * 255).astype(np.float32)
    (probs,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"images": X})
    np.testing.assert_allclose(probs, softmax(model.loss(apply_preprocess(X, pre))), atol=1e-5)


@pytest.mark.parametrize("tta", ["none", "mirror", "mirror_translate"])
def test_evaluate_num_test_and_tta(recipe_run, cifar, tta):
    run, _ = recipe_run
    code, out, err = run_cli("evaluate", run, "--num-test", "30", "--tta", tta)
    assert code == 0, err
    result = json.loads((run / "evaluation.json").read_text())
    assert result["num_images"] == 30 and result["tta"] == tta
    model, _, pre = RunFolder(run).load_model()
    data = get_CIFAR10_data(1, 0, 30, subtract_mean=False, data_dir=cifar)
    scores = tta_predict(model.loss, apply_preprocess(data["X_test"], pre), tta)
    assert result["accuracy"] == np.mean(scores.argmax(1) == data["y_test"])
    assert f"test accuracy: {result['accuracy']:.4f}" in out


def test_evaluate_defaults_to_the_runs_test_size_and_tta(recipe_run):
    run, _ = recipe_run
    code, out, err = run_cli("evaluate", run)
    assert code == 0, err
    assert "40 images, test-time augmentation mirror_translate" in out
    code, _, err = run_cli("evaluate", run, "--split", "val")
    assert code == 2 and "without a validation split" in err


def test_test_at_end_with_no_finished_epoch_is_a_note_not_an_error(cifar, tmp_path):
    """A time limit that ends the run inside its first epoch leaves no best model: the
    run succeeds, and the note says how to evaluate the updates it made."""
    run = tmp_path / "run"
    code, out, err = run_cli("train", "--data-dir", cifar, "--out", run, *SIZES,
                             "--num-filters", "4", "--num-validation", "0", "--test-at-end",
                             "--batch-size", "4", "--time-limit", "0.001", "--no-plots",
                             "--quiet")  # fmt: skip
    assert code == 0, err
    assert f"test at end: skipped, no epoch finished; nndl evaluate {run} --last" in out
    assert not (run / "evaluation.json").exists() and (run / "last_model.npz").is_file()
    assert run_cli("evaluate", run, "--last")[0] == 0


# --- --param-groups: a rule per group from the command line ------------------------------

MUON_FILTERS = json.dumps([{"params": "*conv.W", "update_rule": "muon",
                            "optim_config": {"learning_rate": 0.05, "momentum": 0.6,
                                             "ns_steps": 3, "renormalize": True}}])  # fmt: skip
SMALL = [*SIZES, "--num-filters", "4", "8", "--batch-size", "20", "--no-plots", "--quiet"]


def test_param_groups_train_the_filters_with_muon_and_resume_exactly(cifar, tmp_path):
    from nndl.io.checkpoint import read_tree

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for run, epochs in ((straight, 2), (stopped, 1)):
        code, _, err = run_cli("train", "--data-dir", cifar, "--out", run, *SMALL, "--epochs",
                               epochs, "--param-groups", MUON_FILTERS)  # fmt: skip
        assert code == 0, err
    config = json.loads((straight / "config.json").read_text())
    assert config["settings"]["param_groups"] == json.loads(MUON_FILTERS)
    rules = read_tree("test", straight / "checkpoint.npz")["solver"]["update_rules"]
    assert {k for k, r in rules.items() if r == "muon"} == {"block1.conv.W", "block2.conv.W"}
    assert set(rules.values()) == {"muon", "adam"}
    code, _, err = run_cli("train", "--out", stopped, "--resume", "--epochs", 2)
    assert code == 0, err
    a, _ = load_model(straight / "last_model.npz")
    b, _ = load_model(stopped / "last_model.npz")
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


@pytest.mark.parametrize(
    ("groups", "says"),
    [("[{\"params\": \"*.W\"", "not valid JSON"),
     ("[]", "expected a JSON list of parameter groups"),
     ('[{"params": "*.W", "update_rule": "bogus"}]', "group 0: unknown update_rule 'bogus'"),
     ('[{"params": "*.W", "colour": 1}]', "unknown key(s) ['colour']"),
     ('[{"params": "*.W", "lr_mult": -1}]', "'lr_mult'] to be a number >= 0")],  # fmt: skip
)
def test_bad_param_groups_are_refused_before_the_run_folder(cifar, tmp_path, groups, says):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data-dir", cifar, "--out", run, *SMALL,
                           "--param-groups", groups)  # fmt: skip
    assert code == 2 and "--param-groups" in err and says in err, err
    assert not run.exists()


def test_a_ladder_presets_flop_budget_is_its_own_count():
    """``benchmarks/bench_train.py``'s limit for 80 and 90: the net's forward FLOPs x (3 per
    training image and epoch + 1 per test image and TTA view)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bench_train import PFLOP_BUDGET, preset_pflop

    forward = Network(PRESETS["90"].settings["arch"], seed=0).summary_data()["total_flops"]
    assert forward == pytest.approx(237.26e6, rel=1e-4)  # airbench94's net, as `nndl summary`
    assert preset_pflop("90") == pytest.approx(forward * (3 * 3 * 50000 + 6 * 10000) / 1e15)
    assert preset_pflop("80") == pytest.approx(0.03495, rel=1e-3)  # widths 64-128-128, 2 views
    # airbench94_muon's 8 epochs counted the same way are the 0.29 PFLOP, give or take
    assert forward * (3 * 8 * 50000 + 6 * 10000) / 1e15 == pytest.approx(PFLOP_BUDGET["94"],
                                                                        rel=0.05)  # fmt: skip
    assert preset_pflop("65") is None  # no architecture spec: the classic ConvNet
