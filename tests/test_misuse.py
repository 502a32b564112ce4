"""The misuse battery: the real ``nndl`` command, run as a subprocess, against bad input.

Every refusal must exit with status 2, print ``nndl CMD: error: ...`` naming the
offending flag or file, never a traceback, and leave every file that was in the run
folder before byte-for-byte and mtime unchanged (the ``.lock`` file is the only file a
refused command may add). Beyond refusals: two runs into one folder, ``kill -9`` before
and after the first checkpoint, Ctrl-C at several points, each resumed and compared with
an uninterrupted run (parameters, running statistics, optimiser state, histories: all
bit-identical), and output without a terminal.

Fault points a signal from outside could only hit by luck are hit exactly with
``tests/_fault_driver.py`` (the same ``nndl.cli.main`` with one fault injected). One
uninterrupted run is trained once and copied by the tests that need a run folder; the
refusal cases run concurrently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from _cifar import CLASS_NAMES, write_pickle, write_synthetic_cifar10
from _signals import resume_after_signal, signal_from_outside

PIL_Image = pytest.importorskip("PIL.Image")

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "_fault_driver.py"
SIZES = ["--num-training", "100", "--num-validation", "20", "--num-test", "20"]
# A tiny ConvNet with batch norm (running statistics) and dropout (the model's Generator),
# 5 steps per epoch; 3 epochs are the uninterrupted reference run.
NET = ["--num-filters", "4", "8", "--hidden-dims", "8", "--dropout", "0.9", "--batch-size", "20"]
QUIET = ["--no-plots", "--quiet"]
# The parameters of NET's first and second conv and of its hidden layer.
W1, W2, W3 = "block1.conv.W", "block2.conv.W", "fc1.W"
EPOCHS = ["--epochs", "3"]


def environment(**extra: str) -> dict[str, str]:
    """The subprocesses' environment: this one (conftest points downloads at a closed
    port) with one BLAS thread, for the same arithmetic in every process and less
    contention on 2 cores."""
    # One thread everywhere: the cases run concurrently, and under a memory limit every
    # extra thread's stack and BLAS buffers would count against it.
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "NNDL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
        **extra,
    }
    env.pop("NNDL_DEBUG", None)
    return env


def nndl(*args, cwd=None, env=None, limit_mb=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m nndl ARGS`` (under an address-space limit of ``limit_mb`` if given)."""
    argv = [str(a) for a in args]
    if limit_mb is None:
        cmd = [sys.executable, "-m", "nndl", *argv]
    else:
        code = (
            # OpenBLAS allocates its work buffers on the first product and exits the process
            # when that fails; warm it up first so the limit meets NumPy's own allocations.
            "import resource, runpy, sys, numpy as np; "
            "np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32); "
            f"resource.setrlimit(resource.RLIMIT_AS, ({limit_mb << 20}, {limit_mb << 20})); "
            f"sys.argv = ['nndl', *{argv!r}]; runpy.run_module('nndl', run_name='__main__')"
        )
        cmd = [sys.executable, "-c", code]
    return subprocess.run(
        cmd, cwd=cwd, env=env or environment(), capture_output=True, text=True, timeout=timeout
    )


def sigint_default() -> None:
    """preexec_fn of a child that gets SIGINT: Python raises KeyboardInterrupt on it only
    if SIGINT was not ignored when it started, as it is when the suite runs in the
    background (``pytest &``, nohup)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def driver(fault: str, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(DRIVER), fault, *map(str, args)]
    return subprocess.run(
        cmd, env=env or environment(), capture_output=True, text=True, timeout=timeout,
        preexec_fn=sigint_default,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: (sha256 of its bytes, mtime in ns)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                p.stat().st_mtime_ns,
            )
    return out


def assert_unchanged(before: dict, after: dict) -> None:
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"files changed or removed: {changed}"
    added = [k for k in after if k not in before and Path(k).name != ".lock"]
    assert not added, f"files added: {added}"


def assert_clean_refusal(proc: subprocess.CompletedProcess, *names: str) -> None:
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err + proc.stdout, err
    assert err.startswith(("nndl ", "usage: nndl")), err
    for name in names:
        assert name in err, (name, err)


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders end in the same state: every array of the last model and the
    checkpoint (parameters, running statistics, optimiser state, best parameters,
    histories, shuffle), the solver's counters and RNG states, and the metrics."""
    for name in ("last_model.npz", "checkpoint.npz", "best_model.npz"):
        x, y = npz_arrays(a / name), npz_arrays(b / name)
        assert sorted(x) == sorted(y), name
        for key in x:
            if key == "meta":
                mx, my = json.loads(str(x[key])), json.loads(str(y[key]))
                assert mx.get("solver") == my.get("solver"), name
                assert mx["model"] == my["model"] and mx["extra"] == my["extra"], name
            else:
                nan = x[key].dtype.kind == "f"  # (no validation split: NaN accuracies)
                assert np.array_equal(x[key], y[key], equal_nan=nan), (name, key)
    strip = lambda r: {k: v for k, v in r.items() if k != "elapsed"}  # noqa: E731
    ma = [strip(json.loads(x)) for x in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [strip(json.loads(x)) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert ma == mb


# --- fixtures: data sets and one uninterrupted run ------------------------------------


class _Exploit:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    sets = {
        "cifar": write_synthetic_cifar10(root / "a", n_per_batch=40, n_test=40),
        "other": write_synthetic_cifar10(root / "b", n_per_batch=40, n_test=40, seed=1),
        "nine": write_synthetic_cifar10(root / "c", n_per_batch=40, n_test=40),
        "evil": write_synthetic_cifar10(root / "d", n_per_batch=40, n_test=40),
    }
    write_pickle(sets["nine"] / "batches.meta", {"label_names": CLASS_NAMES[:9]})
    marker = root / "pwned"
    # A batch whose unpickling would run os.system: the classic pickle exploit.
    write_pickle(sets["evil"] / "data_batch_1", {"data": _Exploit(os.system, f"touch {marker}")})
    sets["marker"] = marker
    return sets


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data) -> Path:
    """The uninterrupted 3-epoch run every interrupted one must end up equal to."""
    run = tmp_path_factory.mktemp("straight") / "run"
    proc = nndl("train", "--data-dir", data["cifar"], "--out", run, *SIZES, *NET, *EPOCHS, *QUIET)
    assert proc.returncode == 0, proc.stderr
    return run


def train_args(data: dict, out: Path, *extra: str) -> list:
    return [
        "train",
        "--data-dir",
        data["cifar"],
        "--out",
        out,
        *SIZES,
        *NET,
        *EPOCHS,
        *QUIET,
        *extra,
    ]


# --- corrupting and crafting files ----------------------------------------------------


def truncate(name: str, keep: float) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        run = d / "run"
        raw = (run / name).read_bytes()
        (run / name).write_bytes(raw[: int(len(raw) * keep)])

    return prepare


def flip_bit(name: str, member: str) -> Callable[[Path], None]:
    """Flip one bit in the array data of ``member`` (so only its CRC can tell)."""

    def prepare(d: Path) -> None:
        path = d / "run" / name
        raw = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(member)
        name_len, extra_len = struct.unpack(
            "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
        )
        start = info.header_offset + 30 + name_len + extra_len
        raw[start + info.compress_size - 3] ^= 0x10  # inside the array data, past the header
        path.write_bytes(bytes(raw))

    return prepare


def rewrite_npz(name: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Load every array of ``name``, let ``edit`` change them, write them back."""

    def prepare(d: Path) -> None:
        arrays = npz_arrays(d / "run" / name)
        edit(arrays)
        np.savez(d / "run" / name, **arrays)

    return prepare


def craft_config(**changes) -> Callable[[dict], None]:
    def edit(arrays: dict) -> None:
        meta = json.loads(str(arrays["meta"]))
        meta["model"]["config"].update(changes)
        arrays["meta"] = np.array(json.dumps(meta))

    return edit


def lying_header(name: str, member: str) -> Callable[[Path], None]:
    """Replace ``member`` by an .npy whose header claims a 10**12-element array."""

    def prepare(d: Path) -> None:
        path = d / "run" / name
        with zipfile.ZipFile(path) as z:
            entries = {i.filename: z.read(i) for i in z.infolist()}
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
        header = header.ljust(118) + "\n"
        entries[member] = (
            b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64
        )
        with zipfile.ZipFile(path, "w") as z:
            for n, b in entries.items():
                z.writestr(n, b)

    return prepare


def edit_text(name: str, edit: Callable[[str], str]) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        path = d / "run" / name
        path.write_text(edit(path.read_text()))

    return prepare


def edit_settings(**changes) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        path = d / "run" / "config.json"
        config = json.loads(path.read_text())
        for k, v in changes.items():
            if v is ...:
                del config["settings"][k]
            else:
                config["settings"][k] = v
        path.write_text(json.dumps(config))

    return prepare


def bomb_png(path: Path) -> None:
    """A PNG whose header claims 40000 x 40000 pixels (Pillow's decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# --- the refusal battery: run concurrently, asserted one by one -------------------------


@dataclass
class Case:
    argv: list  # after "nndl"; "{run}", "{d}" (the case folder) and data keys are filled in
    names: tuple  # what stderr must name
    prepare: Callable[[Path], None] | None = None  # applied to the case's copy of the run
    needs_run: bool = False
    limit_mb: int | None = None
    no_out: bool = False  # the --out folder must not even be created
    started: bool = False  # a fresh run that started and then failed may leave its files


T = ["train", "--data-dir", "{cifar}", "--out", "{d}/new", *SIZES, *QUIET]
RESUME = ["train", "--out", "{run}", "--resume", "--epochs", "4"]
EVALUATE = ["evaluate", "{run}"]
ARCH = ["--arch", "{d}/arch.json"]
GOOD_ARCH = (
    '[{"type": "conv_bn_relu_pool", "filters": 4}, "global_avgpool", '
    '{"type": "linear", "units": 10}]'
)
EXPORT = ["export", "{run}", "--output", "{d}/m.onnx"]
# Without the onnx extra, export refuses (naming the extra) once the flags are checked.
ONNX = importlib.util.find_spec("onnx") is not None
NO_ONNX = ("pip install 'nndl[onnx]'",)


def flag_case(*flags: str, names: tuple) -> Case:
    """A fresh run refused for its flags: before the --out folder is even created."""
    return Case([*T, *flags], names, no_out=True)


def run_case(argv: list, names: tuple, prepare=None, limit_mb=None) -> Case:
    """A command on a copy of the uninterrupted run (prepared first)."""
    return Case(argv, names, prepare, needs_run=True, limit_mb=limit_mb)


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(text)


def _huge(name: str) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        with open(d / "run" / name, "r+b") as f:
            f.truncate(17 << 20)  # sparse: 17 MiB that take no disk

    return prepare


def _float_tiff(d: Path) -> None:
    PIL_Image.fromarray(np.full((8, 8), 1e6, np.float32), mode="F").save(d / "wide.tif")


def _object_array(d: Path) -> None:
    np.savez(d / "run" / "best_model.npz", meta=np.array([{"a": 1}], dtype=object))


def _bad_rng(arrays: dict) -> None:
    meta = json.loads(str(arrays["meta"]))
    meta["model"]["rng"] = {"bit_generator": "seed"}  # would call np.random.seed()
    arrays["meta"] = np.array(json.dumps(meta))


CASES: dict[str, Case] = {
    # Non-finite and out-of-range numbers, refused before anything is touched.
    "lr-nan": flag_case("--lr", "nan", names=("--lr", "finite")),
    "lr-inf": flag_case("--lr", "inf", names=("--lr", "finite")),
    "lr-minus-inf": flag_case("--lr=-inf", names=("--lr", "finite")),
    "weight-scale-nan": flag_case("--weight-scale", "nan", names=("--weight-scale", "finite")),
    "reg-inf": flag_case("--reg", "inf", names=("--reg", "finite")),
    "dropout-nan": flag_case("--dropout", "nan", names=("--dropout", "finite")),
    "lr-decay-nan": flag_case("--lr-decay", "NaN", names=("--lr-decay", "finite")),
    "time-limit-nan": flag_case("--time-limit", "nan", names=("--time-limit", "finite")),
    "target-acc-inf": flag_case("--target-acc", "inf", names=("--target-acc", "finite")),
    "lr-zero": flag_case("--lr", "0", names=("--lr must be a number > 0",)),
    "reg-negative": flag_case("--reg", "-1", names=("--reg must be a number >= 0",)),
    "dropout-above-1": flag_case("--dropout", "1.5", names=("--dropout must be",)),
    "weight-scale-zero": flag_case("--weight-scale", "0", names=("--weight-scale must be",)),
    "target-acc-2": flag_case("--target-acc", "2", names=("--target-acc must be",)),
    "time-limit-negative": flag_case("--time-limit", "-1", names=("--time-limit must be",)),
    # Sizes: zero, negative, too large for the image or for memory.
    "num-filters-0": flag_case("--num-filters", "0", names=("--num-filters must be",)),
    "num-filters-negative": flag_case("--num-filters", "-4", "8", names=("--num-filters", "-4")),
    "filter-size-0": flag_case("--filter-size", "0", names=("--filter-size must be",)),
    "filter-size-99": flag_case("--filter-size", "99", names=("--filter-size must be at most 32",)),
    "filter-size-33": flag_case("--filter-size", "33", names=("--filter-size must be at most 32",)),
    "hidden-dims-0": flag_case("--hidden-dims", "0", names=("--hidden-dims must be",)),
    "pool-every-0": flag_case("--pool-every", "0", names=("--pool-every must be",)),
    "seed-negative": flag_case("--seed", "-1", names=("--seed must be an integer >= 0",)),
    "batch-size-0": flag_case("--batch-size", "0", names=("--batch-size must be",)),
    "batch-above-data": flag_case(
        "--batch-size", "101", names=("--batch-size 101", "--num-training")
    ),
    "num-test-negative": flag_case("--num-test", "-1", names=("--num-test must be",)),
    "model-too-big": flag_case(
        "--num-filters", "100000", "100000", names=("parameters", "--num-filters")
    ),
    "one-value-flag": flag_case(
        "--model", "three_layer_convnet", "--num-filters", "4", "8", names=("--num-filters",)
    ),
    # Where things go: checked before the data loads (which here would fail).
    "out-empty": Case(["train", "--data-dir", "{cifar}", "--out", "", *SIZES], ("--out is empty",)),
    "out-is-a-file": Case(
        ["train", "--data-dir", "{d}/no-data", "--out", "{d}/file", *SIZES],
        ("--out", "/file exists and is not a folder"),
        _write("file", "notes"),
    ),
    "data-dir-is-a-file": Case(
        ["train", "--data-dir", "{d}/file", "--out", "{d}/new", *SIZES],
        ("/file", "is a file"),
        _write("file", "notes"),
    ),
    "data-dir-empty": Case(
        ["train", "--data-dir", "", "--out", "{d}/new", *SIZES],
        ("--data-dir is empty",),
        no_out=True,
    ),
    "run-dir-empty": Case(["evaluate", ""], ("RUN_DIR is empty",)),
    # Data that is wrong or hostile.
    "nine-class-meta": Case(
        ["train", "--data-dir", "{nine}", "--out", "{d}/new", *SIZES], ("batches.meta", "got 9")
    ),
    "crafted-pickle": Case(
        ["train", "--data-dir", "{evil}", "--out", "{d}/new", *SIZES],
        ("data_batch_1", "refusing", "system"),
    ),
    "out-of-memory": Case(
        [*T, "--num-filters", "256", "--batch-size", "100"],
        ("out of memory", "--batch-size"),
        limit_mb=400,
        started=True,
    ),
    # A folder that holds a run, used wrongly.
    "fresh-run-over-a-run": run_case(
        ["train", "--data-dir", "{cifar}", "--out", "{run}", *SIZES, *NET, *EPOCHS, *QUIET],
        ("already holds a run",),
    ),
    "resume-changes-lr": run_case([*RESUME, "--lr", "0.5"], ("cannot change --lr",)),
    "resume-no-more-epochs": run_case(
        ["train", "--out", "{run}", "--resume", "--epochs", "3"], ("already trained 3 epochs",)
    ),
    "resume-other-data": run_case(
        [*RESUME, "--data-dir", "{other}"],
        ("differs", "{other_resolved}", "{cifar_resolved}"),
    ),
    # Damaged files, each named.
    "checkpoint-empty": run_case(RESUME, ("checkpoint.npz",), truncate("checkpoint.npz", 0)),
    "checkpoint-cut-head": run_case(
        RESUME, ("checkpoint.npz", "truncated or corrupt"), truncate("checkpoint.npz", 0.02)
    ),
    "checkpoint-cut-half": run_case(
        RESUME, ("checkpoint.npz", "truncated or corrupt"), truncate("checkpoint.npz", 0.5)
    ),
    "checkpoint-cut-tail": run_case(
        RESUME, ("checkpoint.npz", "truncated or corrupt"), truncate("checkpoint.npz", 0.999)
    ),
    "checkpoint-bit-flip": run_case(
        RESUME, ("checkpoint.npz", "CRC"), flip_bit("checkpoint.npz", f"model/params/{W1}.npy")
    ),
    "checkpoint-bit-flip-optim": run_case(
        RESUME,
        ("checkpoint.npz", "CRC"),
        flip_bit("checkpoint.npz", f"solver/optim_configs/{W2}/m.npy"),
    ),
    "checkpoint-other-shapes": run_case(
        RESUME,
        ("checkpoint.npz", f"holds params {W1} of shape (5, 3, 3, 3)"),
        rewrite_npz(
            "checkpoint.npz", lambda a: a.update({f"model/params/{W1}": np.zeros((5, 3, 3, 3))})
        ),
    ),
    "checkpoint-bad-shuffle": run_case(
        RESUME,
        ("checkpoint.npz", "shuffle"),
        rewrite_npz("checkpoint.npz", lambda a: a.update({"solver/perm": a["solver/perm"] + 1000})),
    ),
    "best-model-cut": run_case(
        EVALUATE, ("best_model.npz", "truncated or corrupt"), truncate("best_model.npz", 0.5)
    ),
    "best-model-bit-flip": run_case(
        EVALUATE, ("best_model.npz", "CRC"), flip_bit("best_model.npz", f"model/params/{W3}.npy")
    ),
    "best-model-predict": run_case(
        ["predict", "{run}", "{d}/img.png"], ("best_model.npz",), truncate("best_model.npz", 0.3)
    ),
    "last-model-cut": run_case(
        [*EVALUATE, "--last"],
        ("last_model.npz", "truncated or corrupt"),
        truncate("last_model.npz", 0.7),
    ),
    "preprocess-cut": run_case(
        EVALUATE, ("preprocess.npz", "truncated or corrupt"), truncate("preprocess.npz", 0.5)
    ),
    "preprocess-predict": run_case(
        ["predict", "{run}", "{d}/img.png"], ("preprocess.npz",), truncate("preprocess.npz", 0.9)
    ),
    # Crafted files: refused within a memory limit far below what they ask for.
    "config-1e6-filters": run_case(
        EVALUATE,
        ("best_model.npz", "holds params"),
        rewrite_npz("best_model.npz", craft_config(num_filters=[1000000])),
        limit_mb=400,
    ),
    "config-huge-input": run_case(
        EVALUATE,
        ("best_model.npz", "shape"),
        rewrite_npz("best_model.npz", craft_config(input_dim=[3, 100000, 100000])),
        limit_mb=400,
    ),
    "config-bad-type": run_case(
        EVALUATE,
        ("best_model.npz", "invalid convnet config"),
        rewrite_npz("best_model.npz", craft_config(num_filters="many")),
    ),
    "config-filter-size-0": run_case(
        EVALUATE,
        ("best_model.npz", "filter_size"),
        rewrite_npz("best_model.npz", craft_config(filter_size=0)),
    ),
    "header-claims-1e12": run_case(
        EVALUATE,
        ("best_model.npz", "header says"),
        lying_header("best_model.npz", f"model/params/{W1}.npy"),
        limit_mb=400,
    ),
    "crafted-rng-state": run_case(
        EVALUATE, ("best_model.npz", "bad rng state"), rewrite_npz("best_model.npz", _bad_rng)
    ),
    "object-array": run_case(EVALUATE, ("best_model.npz", "object array"), _object_array),
    # config.json and metrics.jsonl, malformed.
    "config-not-json": run_case(
        EVALUATE, ("config.json", "not valid JSON"), edit_text("config.json", lambda t: t[:-20])
    ),
    "config-a-list": run_case(RESUME, ("config.json",), edit_text("config.json", lambda t: "[1]")),
    "config-huge": run_case(EVALUATE, ("config.json", "larger than 16 MiB"), _huge("config.json")),
    "metrics-huge": run_case(
        RESUME, ("metrics.jsonl", "larger than 16 MiB"), _huge("metrics.jsonl")
    ),
    "config-resumed-not-a-list": run_case(
        RESUME,
        ("config.json: 'resumed' is not a list",),
        edit_text("config.json", lambda t: t[: t.rindex("}")] + ', "resumed": {"a": 1}}'),
    ),
    "config-missing-setting": run_case(
        EVALUATE, ("config.json: settings.num_test is missing",), edit_settings(num_test=...)
    ),
    "config-wrong-type": run_case(
        EVALUATE,
        ("config.json: settings.num_training must be",),
        edit_settings(num_training="100"),
    ),
    "config-resume-bad-setting": run_case(
        RESUME, ("config.json: settings.lr must be",), edit_settings(lr=None)
    ),
    "config-resume-missing": run_case(
        RESUME, ("config.json: settings.batch_size is missing",), edit_settings(batch_size=...)
    ),
    "metrics-not-json": run_case(
        RESUME,
        ("metrics.jsonl", "not valid JSON"),
        edit_text("metrics.jsonl", lambda t: t + "{oops\n"),
    ),
    "metrics-missing-field": run_case(
        RESUME,
        ("metrics.jsonl", "record 1"),
        edit_text("metrics.jsonl", lambda t: t.replace('"elapsed"', '"elapsed_s"')),
    ),
    # --arch, summary and export.
    "arch-not-json": Case([*T, *ARCH], ("--arch", "arch.json", "not valid JSON"),
                          _write("arch.json", "[{"), no_out=True),
    "arch-missing": Case([*T, "--arch", "{d}/none.json"], ("--arch", "none.json", "no such file"),
                         no_out=True),
    "arch-not-a-list": Case([*T, *ARCH], ("--arch", "expected a JSON list"),
                            _write("arch.json", '{"layers": []}'), no_out=True),
    "arch-unknown-layer": Case([*T, *ARCH], ("--arch", "unknown layer type 'conv3d'"),
                               _write("arch.json", '[{"type": "conv3d"}]'), no_out=True),
    "arch-wrong-output": Case([*T, *ARCH], ("--arch", "expected (10,) scores"),
                              _write("arch.json", '["flatten", {"type": "linear", "units": 7}]'),
                              no_out=True),
    "arch-too-big": Case([*T, *ARCH], ("parameters", "GiB"),
                         _write("arch.json", '["flatten", {"type": "linear", "units": 300000},'
                                ' {"type": "linear", "units": 10}]'), no_out=True),
    "arch-with-num-filters": Case([*T, *ARCH, "--num-filters", "4"],
                                  ("--num-filters does not apply to --arch",),
                                  _write("arch.json", GOOD_ARCH), no_out=True),
    "arch-on-convnet": Case([*T, *ARCH, "--model", "convnet"],
                            ("--arch does not apply to model convnet",),
                            _write("arch.json", GOOD_ARCH), no_out=True),
    "network-without-arch": flag_case("--model", "network", names=("needs --arch FILE.json",)),
    "resume-adds-arch": run_case([*RESUME, *ARCH], ("cannot change --arch",),
                                 _write("arch.json", GOOD_ARCH)),
    "summary-neither": Case(["summary"], ("nndl summary: error: give either RUN_DIR or --arch",)),
    "summary-both": run_case(["summary", "{run}", *ARCH], ("either RUN_DIR or --arch",),
                             _write("arch.json", GOOD_ARCH)),
    "summary-bad-arch": Case(["summary", *ARCH], ("--arch", "unknown layer type 'conv3d'"),
                             _write("arch.json", '[{"type": "conv3d"}]')),
    "summary-batch-0": run_case(["summary", "{run}", "--batch-size", "0"],
                                ("--batch-size must be an integer >= 1",)),
    "summary-damaged-model": run_case(["summary", "{run}"],
                                      ("best_model.npz", "truncated or corrupt"),
                                      truncate("best_model.npz", 0.5)),
    "summary-no-run": Case(["summary", "{d}/nothing"], ("run folder not found",)),
    "export-no-output": run_case(["export", "{run}"], ("--output",)),
    "export-format": run_case([*EXPORT, "--format", "tflite"], ("invalid choice: 'tflite'",)),
    "export-bad-opset": run_case([*EXPORT, "--opset", "5"], ("--opset must be 13 or later",)),
    "export-output-is-a-folder": run_case(["export", "{run}", "--output", "{d}"],
                                          ("--output", "is a folder")),
    "export-no-run": Case(["export", "{d}/nothing", "--output", "{d}/m.onnx"],
                          ("run folder not found",)),
    "export-damaged-model": run_case(
        EXPORT, ("best_model.npz", "truncated or corrupt") if ONNX else NO_ONNX,
        truncate("best_model.npz", 0.5)),
    "export-opset-too-new": run_case(
        [*EXPORT, "--opset", "999"], ("expected opset in",) if ONNX else NO_ONNX),
    # Images.
    "image-bomb": run_case(
        ["predict", "{run}", "{d}/bomb.png"],
        ("cannot read image", "bomb.png"),
        lambda d: bomb_png(d / "bomb.png"),
    ),
    "image-float-out-of-range": run_case(
        ["predict", "{run}", "{d}/wide.tif"],
        ("cannot read image", "wide.tif", "values span"),
        _float_tiff,
    ),
    "image-not-an-image": run_case(
        ["predict", "{run}", "{d}/notes.png"],
        ("cannot read image", "notes.png"),
        _write("notes.png", "hi"),
    ),
    # The recipe's flags: presets, schedules, decay, averaging, augmentation, evaluation.
    "preset-unknown": flag_case("--preset", "99", names=("--preset", "invalid choice: '99'")),
    "schedule-unknown": flag_case("--schedule", "weekly", names=("--schedule", "'weekly'")),
    # (argv is str.format-ted: JSON braces are doubled)
    "schedule-bad-json": flag_case("--schedule", '{{"name":', names=("--schedule", "JSON")),
    "schedule-bad-key": flag_case("--schedule", '{{"name": "cosine", "peak": 1}}',
                                  names=("--schedule", "unknown key(s) ['peak']")),
    "schedule-and-lr-decay": flag_case("--schedule", "cosine", "--lr-decay", "0.5",
                                       names=("--lr-decay does not apply with --schedule",)),
    "warmup-without-schedule": flag_case("--warmup", "0.1", names=("--warmup needs --schedule",)),
    "warmup-2": flag_case("--schedule", "cosine", "--warmup", "2", names=("--warmup must be",)),
    "warmup-on-step": flag_case("--schedule", '{{"name": "step", "milestones": [1]}}',
                                "--warmup", "0.1", names=("--warmup does not apply", "'step'")),
    "momentum-with-adam": flag_case("--momentum", "0.9",
                                    names=("--momentum does not apply to update rule adam",)),
    "momentum-1": flag_case("--update-rule", "sgdw", "--momentum", "1",
                            names=("--momentum must be a number in [0, 1)",)),
    "weight-decay-negative": flag_case("--weight-decay", "-0.1", names=("--weight-decay must",)),
    "weight-decay-nan": flag_case("--weight-decay", "nan", names=("--weight-decay", "finite")),
    "bn-bias-lr-0": flag_case("--bn-bias-lr", "0", names=("--bn-bias-lr must be a number > 0",)),
    "label-smoothing-convnet": flag_case("--label-smoothing", "0.1",
                                         names=("--label-smoothing does not apply to model",)),
    "label-smoothing-1": Case([*T, *ARCH, "--label-smoothing", "1"],
                              ("--label-smoothing must be a number in [0, 1)",),
                              _write("arch.json", GOOD_ARCH), no_out=True),
    "ema-1": flag_case("--ema", "1", names=("--ema must be a number in [0, 1)",)),
    "ema-every-0": flag_case("--ema", "0.9", "--ema-every", "0", names=("--ema-every must be",)),
    "lookahead-without-ema": flag_case("--ema", "0", "--lookahead",
                                       names=("--lookahead needs --ema",)),
    "ema-power-without-ema": flag_case("--ema", "0", "--ema-power", "3",
                                       names=("--ema-power needs --ema",)),
    "crop-pad-32": flag_case("--crop-pad", "32", names=("--crop-pad must be an integer in",)),
    "crop-mode-unknown": flag_case("--crop-mode", "wrap", names=("--crop-mode", "'wrap'")),
    "flip-unknown": flag_case("--flip", "sideways", names=("--flip", "'sideways'")),
    "cutout-negative": flag_case("--cutout", "-2", names=("--cutout must be",)),
    "normalize-unknown": flag_case("--normalize", "zca", names=("--normalize", "'zca'")),
    "tta-unknown": flag_case("--tta", "rotate", names=("--tta", "'rotate'")),
    "test-at-end-no-test": flag_case("--test-at-end", "--num-test", "0",
                                     names=("--test-at-end needs test images",)),
    "evaluate-num-test-0": run_case([*EVALUATE, "--num-test", "0"],
                                    ("--num-test must be at least 1",)),
    "evaluate-num-test-too-many": run_case([*EVALUATE, "--num-test", "41"],
                                           ("num_test = 41", "40 test images")),
    "evaluate-tta-unknown": run_case([*EVALUATE, "--tta", "rotate"], ("--tta", "'rotate'")),
    "preprocess-bad-std": run_case(
        EVALUATE, ("preprocess.npz", "per-channel mean"),
        rewrite_npz("preprocess.npz", lambda a: a.update(mean=np.zeros(3, np.float32),
                                                         std=np.zeros(3, np.float32)))),
    "resume-bad-schedule": run_case(RESUME, ("settings.schedule must be a schedule spec",),
                                    edit_settings(schedule={"name": "weekly"})),
    "resume-changes-preset": run_case([*RESUME, "--preset", "80"], ("cannot change --preset",)),
}  # fmt: skip


@pytest.fixture(scope="module")
def battery(tmp_path_factory, data, straight) -> dict:
    """Run every case of CASES concurrently; results keyed by case id."""
    root = tmp_path_factory.mktemp("battery")
    fill = {k: str(v) for k, v in data.items()}
    fill.update(
        cifar_resolved=str(data["cifar"].resolve()), other_resolved=str(data["other"].resolve())
    )

    def run_case(item):
        cid, case = item
        d = root / cid
        d.mkdir()
        if case.needs_run:
            shutil.copytree(straight, d / "run")
            PIL_Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "img.png")
        if case.prepare is not None:
            case.prepare(d)
        fmt = {**fill, "d": str(d), "run": str(d / "run")}
        argv = [str(a).format(**fmt) for a in case.argv]
        names = tuple(n.format(**fmt) for n in case.names)
        before = snapshot(d)
        try:
            proc = nndl(*argv, cwd=d, limit_mb=case.limit_mb, timeout=60)
        except subprocess.TimeoutExpired as exc:  # recorded, so only this case fails
            proc = subprocess.CompletedProcess(exc.cmd, None, "", f"timed out after {exc.timeout}s")
        return cid, (proc, names, before, snapshot(d), d)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run_case, CASES.items()))


@pytest.mark.parametrize("cid", sorted(CASES))
def test_refused_cleanly(battery, data, cid):
    proc, names, before, after, d = battery[cid]
    assert_clean_refusal(proc, *names)
    if CASES[cid].started:
        after = {k: v for k, v in after.items() if k in before}
    assert_unchanged(before, after)
    if CASES[cid].no_out:
        assert not (d / "new").exists()
    assert not data["marker"].exists()  # the crafted pickle never ran


# --- one writer per run folder ------------------------------------------------------------


def test_a_held_lock_refuses_a_second_run_at_once(tmp_path, data, straight):
    fcntl = pytest.importorskip("fcntl")
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    before = snapshot(run)
    with open(run / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = nndl("train", "--out", run, "--resume", "--epochs", "4", timeout=30)
        fresh = nndl(*train_args(data, tmp_path / "fresh"), timeout=30)
    assert_clean_refusal(proc, str(run), "in use by another 'nndl train'")
    assert_unchanged(before, snapshot(run))
    assert fresh.returncode == 0  # another folder is not affected


def test_two_runs_into_one_folder_one_is_refused(tmp_path, data, straight):
    """A real race: run A pauses after its first step holding the folder; run B, the same
    command, is refused at once; A then finishes a complete run that resumes normally."""
    run = tmp_path / "run"
    paused, go = tmp_path / "paused", tmp_path / "go"
    env = environment(NNDL_TEST_PAUSED=str(paused), NNDL_TEST_RESUME=str(go))
    a = subprocess.Popen(
        [sys.executable, str(DRIVER), "pause:1", *map(str, train_args(data, run))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3000):
            if paused.exists() or a.poll() is not None:
                break
            time.sleep(0.01)
        assert paused.exists(), a.communicate()
        before = snapshot(run)
        b = nndl(*train_args(data, run), timeout=30)
        assert_clean_refusal(b, "in use by another 'nndl train'")
        assert_unchanged(before, snapshot(run))
    finally:
        go.touch()
        out, err = a.communicate(timeout=120)
    assert a.returncode == 0, err
    assert_same_run(run, straight)  # A's run is whole, untouched by B


# --- kill -9 ------------------------------------------------------------------------------


def test_killed_before_the_first_checkpoint_the_same_command_works(tmp_path, data, straight):
    run = tmp_path / "run"
    proc = driver("kill-update:2", *train_args(data, run))
    assert proc.returncode == -signal.SIGKILL
    assert (run / "config.json").exists() and not (run / "checkpoint.npz").exists()
    again = nndl(*train_args(data, run))
    assert again.returncode == 0, again.stderr
    assert_same_run(run, straight)


def test_killed_before_the_first_checkpoint_resume_works_too(tmp_path, data, straight):
    run = tmp_path / "run"
    assert driver("kill-update:3", *train_args(data, run)).returncode == -signal.SIGKILL
    proc = nndl("train", "--out", run, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "starting the run again" in proc.stderr
    assert_same_run(run, straight)


def test_killed_after_the_first_checkpoint_resume_is_exact(tmp_path, data, straight):
    run = tmp_path / "run"
    assert driver("kill-update:7", *train_args(data, run)).returncode == -signal.SIGKILL
    before = snapshot(run)
    again = nndl(*train_args(data, run))  # the same command must not overwrite progress
    assert_clean_refusal(again, "already holds a run", "--resume")
    assert_unchanged(before, snapshot(run))
    proc = nndl("train", "--out", run, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert_same_run(run, straight)


def test_killed_while_writing_a_checkpoint(tmp_path, data, straight):
    run = tmp_path / "run"
    assert driver("kill-save:2", *train_args(data, run)).returncode == -signal.SIGKILL
    assert list(run.glob(".checkpoint.npz.tmp-*"))  # the cut-off write left its temp file
    proc = nndl("train", "--out", run, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert not list(run.glob(".*.tmp-*"))  # swept once the lock was held
    assert_same_run(run, straight)


def test_a_nan_at_the_first_step_leaves_a_folder_the_next_run_can_use(tmp_path, data, straight):
    run = tmp_path / "run"
    proc = driver("nan-loss:1", *train_args(data, run))
    assert "non-finite loss" in proc.stdout + proc.stderr
    assert not (run / "checkpoint.npz").exists()
    again = nndl(*train_args(data, run))
    assert again.returncode == 0, again.stderr
    assert_same_run(run, straight)


# --- Ctrl-C -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        "sigint-eval:1",  # during the accuracy check before the first step
        "sigint-forward:3",  # mid-step, after batch norm moved its running statistics
        "sigint-update:7",  # between two parameter updates, epoch 2
        "sigint-save:1",  # while the first checkpoint is written
        "sigint-forward:10",  # in the last step of an epoch
    ],
)
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path, data, straight, fault):
    run = tmp_path / "run"
    proc = driver(fault, *train_args(data, run))
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"continue with: nndl train --out {run} --resume" in proc.stderr
    resumed = nndl("train", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, straight)


def test_a_real_sigint_from_outside(tmp_path, data):
    """SIGINT sent by another process at whatever point training has reached."""
    fast = ["--batch-size", "4"]  # 25 steps per epoch
    straight = tmp_path / "straight"
    assert nndl(*train_args(data, straight, *fast)).returncode == 0
    run = tmp_path / "run"
    code, err = signal_from_outside(train_args(data, run, *fast), environment(), signal.SIGINT)
    resume_after_signal(run, code, err, 130, nndl)
    assert_same_run(run, straight)


# --- a refused resume leaves config.json alone; resuming records the data --------------


def test_resume_records_itself_only_when_it_runs(tmp_path, data, straight):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["fingerprint"].startswith("sha256:")
    proc = nndl("train", "--out", run, "--resume", "--epochs", "4")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((run / "config.json").read_text())
    assert [e["epochs"] for e in config["resumed"]] == [4]
    assert config["resumed"][0]["data_dir"] == str(data["cifar"].resolve())


# --- paths ----------------------------------------------------------------------------


def test_out_expands_the_home_folder(tmp_path, data):
    proc = nndl(
        "train", "--data-dir", tmp_path / "no-data", "--out", "~/x", *SIZES,
        *QUIET, cwd=tmp_path, env=environment(HOME=str(tmp_path / "home")),
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (tmp_path / "home" / "x").is_dir()  # --out was taken before the data failed
    assert not (tmp_path / "~").exists()


# --- output without a terminal ----------------------------------------------------------


def test_no_progress_bar_without_a_terminal(tmp_path, data):
    args = ["train", "--data-dir", data["cifar"], "--out", tmp_path / "run", *SIZES, *NET]
    proc = nndl(*args, "--epochs", "2", "--no-plots")  # not --quiet
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\r" not in proc.stdout
    assert len(proc.stderr.splitlines()) <= 2
    assert sum(line.startswith("epoch ") for line in proc.stdout.splitlines()) == 2


# --- the modern recipe: Ctrl-C with augmentation, a schedule and an EMA on ---------------

RECIPE_ARCH = (
    '[{"type": "conv2d", "name": "whiten", "filters": 24, "kernel_size": 2, "pad": "valid", '
    '"init": "patch_whitening", "trainable": false}, "gelu", '
    '{"type": "conv_pool_bn_act", "filters": 4, "bias": false, "scale": false, '
    '"activation": "gelu", "floor": true, "momentum": 0.6, "init": "dirac_uniform"}, '
    '"global_maxpool", {"type": "linear", "units": 10, "bias": false, "scale": 0.5}]'
)
RECIPE = [
    "--update-rule", "sgdw", "--lr", "0.2", "--momentum", "0.85", "--weight-decay", "5e-4",
    "--coupled-decay", "--bias-decay", "--bn-bias-lr", "4", "--schedule", "triangular",
    "--label-smoothing", "0.2", "--ema", "0.8", "--ema-every", "2", "--ema-power", "1",
    "--lookahead", "--normalize", "channel", "--crop-pad", "2", "--flip", "alternating",
    "--cutout", "4", "--num-validation", "0", "--test-at-end", "--tta", "mirror_translate",
]  # fmt: skip


@pytest.fixture(scope="module")
def recipe_straight(tmp_path_factory, data) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("recipe")
    (root / "arch.json").write_text(RECIPE_ARCH)
    args = [*SIZES, "--batch-size", "20", *EPOCHS, *QUIET, "--arch", root / "arch.json", *RECIPE]
    run = root / "straight"
    proc = nndl("train", "--data-dir", data["cifar"], "--out", run, *args)
    assert proc.returncode == 0, proc.stderr
    return run, args


@pytest.mark.parametrize("fault", ["sigint-update:7", "sigint-forward:10", "kill-update:12"])
def test_the_recipe_interrupted_then_resumed_equals_an_uninterrupted_run(
    tmp_path, data, recipe_straight, fault
):
    straight, args = recipe_straight
    run = tmp_path / "run"
    proc = driver(fault, "train", "--data-dir", data["cifar"], "--out", run, *args)
    if fault.startswith("kill"):
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    resumed = nndl("train", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, straight)
    config = [json.loads((r / "config.json").read_text()) for r in (run, straight)]
    assert config[0]["test"]["accuracy"] == config[1]["test"]["accuracy"]
