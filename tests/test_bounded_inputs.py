"""Bounded inputs: JSON nesting and size, spec size, image pixels and decode memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli

from nndl.io.jsonfile import (
    MAX_JSON_DEPTH,
    JSONLimitError,
    loads_bounded,
    read_json,
    text_depth,
)
from nndl.nn.spec import MAX_LAYERS, MAX_NAME_LENGTH, MAX_NESTING

DEEP = "[" * 300 + "]" * 300  # json's own decoder copes; nndl refuses it by its limit
LINEAR = {"type": "linear", "units": 10}


def nested_spec(levels: int) -> list:
    spec: list = [dict(LINEAR)]
    for _ in range(levels - 1):
        spec = [{"type": "sequential", "layers": spec}]
    return spec


def write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def refused(code: int, err: str, *names: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    last = err.strip().splitlines()[-1]  # argparse prints its usage lines first
    assert last.startswith("nndl ") and ": error: " in last, err
    for name in names:
        assert name in last, err


# --- the reader ------------------------------------------------------------------------


def test_depth_counts_brackets_outside_strings_only():
    assert text_depth('[1, "[[[[{{", {"a": "\\"]]["}]') == 2
    assert text_depth('"[[["') == 0
    assert loads_bounded("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(JSONLimitError, match=f"x: JSON nested deeper than {MAX_JSON_DEPTH}"):
        loads_bounded("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "x")
    with pytest.raises(ValueError):  # invalid JSON still raises json's ValueError
        loads_bounded('{"a": ')


def test_reader_counts_bytes_and_refuses_what_is_not_a_file(tmp_path):
    write(tmp_path / "big.json", "[" + "1," * 600 + "1]")
    with pytest.raises(JSONLimitError, match="larger than 1,000 bytes"):
        read_json(tmp_path / "big.json", max_bytes=1000)
    with pytest.raises(JSONLimitError, match="a folder"):
        read_json(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(JSONLimitError, match="a device"):
            read_json("/dev/zero")


# --- the command line ------------------------------------------------------------------


def test_deep_arch_is_refused_by_summary_and_by_train_before_data(tmp_path):
    arch = write(tmp_path / "arch.json", DEEP)
    refused(*run_cli("summary", "--arch", arch)[::2], "arch.json", "nested deeper than 64")
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--arch", arch, "--data-dir", tmp_path / "nodata",
                           "--out", out, "--quiet")  # fmt: skip
    refused(code, err, "nested deeper than 64")
    assert not out.exists()


@pytest.mark.parametrize(
    "spec, limit",
    [
        ([{"type": "relu"}] * MAX_LAYERS + [LINEAR], f"more than {MAX_LAYERS} layers"),
        ([{**LINEAR, "name": "a" * (MAX_NAME_LENGTH + 1)}], f"at most {MAX_NAME_LENGTH}"),
        (nested_spec(MAX_NESTING + 1), f"nested deeper than {MAX_NESTING} levels"),
    ],
    ids=["layers", "name", "nesting"],
)
def test_spec_limits_refused_by_summary_and_train_alike(tmp_path, spec, limit):
    arch = write(tmp_path / "arch.json", spec)
    refused(*run_cli("summary", "--arch", arch)[::2], "arch.json", limit)
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--arch", arch, "--data-dir", tmp_path / "nodata",
                           "--out", out, "--quiet")  # fmt: skip
    refused(code, err, "arch.json", limit)
    assert not out.exists()


def test_spec_at_the_limits_is_accepted(tmp_path):
    spec = nested_spec(MAX_NESTING)
    spec[0]["name"] = "b" * MAX_NAME_LENGTH
    code, out, err = run_cli("summary", "--arch", write(tmp_path / "arch.json", spec))
    assert code == 0, err


def test_deep_schedule_is_refused(tmp_path):
    schedule = '{"name": "cosine", "x": ' + DEEP + "}"
    code, _, err = run_cli("train", "--schedule", schedule, "--data-dir", tmp_path / "nodata",
                           "--out", tmp_path / "run")  # fmt: skip
    refused(code, err, "--schedule", "nested deeper than 64")


def test_deep_config_json_of_a_run_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write(run / "config.json", '{"settings": {"a": ' + DEEP + "}}")
    refused(*run_cli("evaluate", run)[::2], "config.json", "nested deeper than 64")


@pytest.mark.parametrize("source", ["zero", "fifo"])
@pytest.mark.parametrize("flag", ["--arch", "--space"])
def test_devices_and_fifos_are_refused_at_once(tmp_path, flag, source):
    if source == "zero" and not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    if source == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    if flag == "--space":
        pytest.importorskip("optuna")
    path = "/dev/zero"
    if source == "fifo":
        path = str(tmp_path / "pipe")
        os.mkfifo(path)
    tune = ["tune", "--space", path, "--out", str(tmp_path / "t"), "--n-trials", "1"]
    argv = ["summary", "--arch", path] if flag == "--arch" else tune
    proc = subprocess.run([sys.executable, "-m", "nndl", *argv], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    kind = "a device" if source == "zero" else "a FIFO"
    refused(proc.returncode, proc.stderr, kind)


def test_deep_space_is_refused(tmp_path):
    pytest.importorskip("optuna")
    space = write(tmp_path / "space.json", '{"--lr": ' + DEEP + "}")
    code, _, err = run_cli("tune", "--space", space, "--out", tmp_path / "t", "--n-trials", "1")
    refused(code, err, "--space", "nested deeper than 64")


# --- the Python API --------------------------------------------------------------------


def test_api_raises_value_error_for_deep_or_large_specs():
    from nndl.network import Network
    from nndl.nn import Linear, Sequential

    for spec in (nested_spec(600), nested_spec(MAX_NESTING + 1),
                 [{"type": "relu"}] * (MAX_LAYERS + 1) + [LINEAR]):  # fmt: skip
        with pytest.raises(ValueError, match=f"{MAX_NESTING}|64|{MAX_LAYERS}"):
            Network(spec, input_dim=[4])
    module = Linear(10)
    for _ in range(3000):
        module = Sequential([module])
    with pytest.raises(ValueError, match="nested deeper"):
        Network(module, input_dim=[4])


def test_load_model_refuses_deep_meta(tmp_path):
    from nndl.models import load_model, save_model
    from nndl.network import Network

    path = save_model(tmp_path / "m.npz", Network([LINEAR], input_dim=[4], seed=0))
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta["extra"] = json.loads(DEEP)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="nested deeper than 64"):
        load_model(path)


# --- images ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "pillows", "match"),
    [(300 * 200 - 1, None, "300 x 200 pixels; at most"),
     # past Pillow's own limit its warning turns into our error, not a printed warning
     (10**9, 300 * 200 - 1, "decompression bomb")],  # fmt: skip
)
def test_image_above_the_pixel_limit_is_refused_without_pillows_warning(
    tmp_path, monkeypatch, ours, pillows, match
):
    Image = pytest.importorskip("PIL.Image")
    from nndl.cli import inputs
    from nndl.cli.errors import CLIError

    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(inputs, "MAX_IMAGE_PIXELS", ours)
    if pillows is not None:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CLIError, match=match):
            inputs.load_images([tmp_path / "big.png"], (32, 32))
    assert not caught


def test_large_16_bit_png_decodes_within_a_memory_budget(tmp_path):
    """The image is 2 bytes a pixel; the old float64 path peaked near 26 bytes a pixel."""
    Image = pytest.importorskip("PIL.Image")
    n = 2000
    y, x = np.mgrid[0:n, 0:n]
    Image.fromarray(((x * 7 + y * 3) % 65536).astype(np.uint16)).save(tmp_path / "g.png")
    code = textwrap.dedent(f"""
        import resource, sys
        from nndl.cli.inputs import load_images
        import numpy, PIL.Image, PIL.PngImagePlugin
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        X = load_images([{str(tmp_path / "g.png")!r}], (32, 32))
        assert X.shape == (1, 3, 32, 32) and 0 <= X.min() and X.max() <= 255
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    if sys.platform != "linux":
        pytest.skip("ru_maxrss is in kB on Linux only")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # The peak's rise in a fresh process: at most 8 bytes a pixel (30 MB here), far below
    # the old path's ~100 MB.
    rise_mb = int(proc.stdout.split()[-1]) / 1024
    assert rise_mb < 8 * n * n / 2**20, rise_mb
