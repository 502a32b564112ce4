"""The tutorial notebooks in examples/ run from top to bottom (with NNDL_NOTEBOOK_SMALL=1:
a few hundred images), are stored without outputs, and write nothing into the repository.

Each runs in a Jupyter kernel of this interpreter (a kernel spec in a temporary
JUPYTER_PATH, so the nndl under test is the one imported), in a temporary working
folder, on the real CIFAR-10 when the tests find it and on the notebooks' synthetic
stand-in images otherwise."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from _cifar import REPO_ROOT, real_cifar_dir

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = REPO_ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL = "nndl-notebook-test"


def test_the_four_notebooks_are_there_without_outputs():
    assert [p.name for p in NOTEBOOKS] == [
        "01_layers_and_gradients.ipynb",
        "02_training_a_cnn.ipynb",
        "03_modern_recipe_and_export.ipynb",
        "04_looking_inside_a_cnn.ipynb",
    ]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
            # The notebook does what a notebook normally does about plots (inline).
            assert "matplotlib.use" not in cell.source and "%matplotlib" not in cell.source


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernel spec for this interpreter; Jupyter's and IPython's files in tmp_path."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "nndl tests", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("NNDL_NOTEBOOK_SMALL", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    try:
        monkeypatch.setenv("NNDL_DATA_DIR", str(real_cifar_dir()))
    except pytest.skip.Exception:  # an empty folder: the notebooks fall back to synthetic data
        monkeypatch.setenv("NNDL_DATA_DIR", str(tmp_path / "no-cifar10"))
    work = tmp_path / "work"
    work.mkdir()
    return work


def run_notebook(path: Path, work: Path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(work)}}
    )
    before = _tree(EXAMPLES)
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    assert _tree(EXAMPLES) == before, "the notebook wrote into examples/"
    assert list(work.iterdir()) == [], "the notebook left files in its working folder"
    print(f"{path.name}: {elapsed:.1f} s")
    return nb


def outputs(nb, kind: str) -> list:
    """Every output of one kind: 'stream' texts or 'image/png' payloads."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.output_type == "stream":
                found.append(out.text)
            elif kind in out.get("data", {}):
                found.append(out.data[kind])
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env):
    nb = run_notebook(path, kernel_env)
    text = "".join(outputs(nb, "stream"))
    if path.name.startswith("01"):
        assert "conv forward, fast vs naive" in text
    if path.name.startswith("02"):
        assert len(outputs(nb, "image/png")) >= 5  # images, loss, accuracy, filters, confusion
        assert "test accuracy" in text
    if path.name.startswith("03"):
        assert "max |p_onnx - p_nndl|" in text
        assert len(outputs(nb, "image/png")) >= 2
    if path.name.startswith("04"):
        assert "analytic" in text and "numerical" in text and " steps; largest pixel" in text
        assert len(outputs(nb, "image/png")) >= 7  # saliency, 2 Grad-CAM, fool, classvis, 2 maps
