"""Writes the site's generated pages while MkDocs builds it (the mkdocs-gen-files plugin
runs this file; see mkdocs.yml): the API reference, the command-line reference and the
tutorials (every ``examples/*.ipynb``, rendered by mkdocs-jupyter). Nothing is written
into the repository."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from docs_reference import api_pages, cli_markdown  # noqa: E402


def _write(page: str, text: str) -> None:
    with mkdocs_gen_files.open(page, "w") as f:
        f.write(text)


for page, text in api_pages(ROOT / "src").items():
    _write(page, text)

_write("reference/cli.md", cli_markdown())

# Tutorials: the notebooks of examples/ (executed at build time, see tools/docs_hooks.py),
# listed in file-name order, each with a note under its title on where its outputs come from.
EXECUTED = (
    "> **The outputs on this page** come from running the notebook when the site was built, "
    "with `NNDL_NOTEBOOK_SMALL=1`: a few hundred images (synthetic ones where CIFAR-10 was "
    "not at hand) and one or two epochs, so its accuracies are far below a real run's. Run "
    "it in Jupyter from the repository's `examples/` folder for the real thing; the Results "
    "page has the measured figures."
)
NOT_EXECUTED = (
    "> **This page shows the notebook without outputs** (the site was built without "
    "running it). Run it in Jupyter from the repository's `examples/` folder."
)


def _title(nb: dict) -> str | None:
    """The notebook's first level-1 heading, as the page shows it."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return None


note = NOT_EXECUTED if os.environ.get("NNDL_DOCS_EXECUTE", "1") == "0" else EXECUTED
nav = []
for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
    nb = json.loads(notebook.read_text())
    cell = {"cell_type": "markdown", "id": "docs-note", "metadata": {}, "source": [note]}
    nb["cells"].insert(1, cell)  # after the title cell, which names the page
    with mkdocs_gen_files.open(f"tutorials/{notebook.name}", "w") as f:
        json.dump(nb, f, indent=1)
    title = _title(nb) or notebook.stem.split("_", 1)[-1].replace("_", " ").capitalize()
    nav.append(f"* [{title}]({notebook.name})")
_write("tutorials/SUMMARY.md", "\n".join(nav) + "\n")
