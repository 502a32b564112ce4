"""Writes the site's generated pages while MkDocs builds it (the mkdocs-gen-files plugin
runs this file; see mkdocs.yml): the API reference, the command-line reference and the
tutorials (every ``examples/*.ipynb``, rendered by mkdocs-jupyter). Nothing is written
into the repository."""

from __future__ import annotations

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

# Tutorials: the notebooks as they are in examples/ (executed at build time, see
# tools/docs_hooks.py), listed in file-name order.
nav = []
for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
    with mkdocs_gen_files.open(f"tutorials/{notebook.name}", "wb") as f:
        f.write(notebook.read_bytes())
    title = notebook.stem.split("_", 1)[-1].replace("_", " ").capitalize()
    nav.append(f"* [{title}]({notebook.name})")
_write("tutorials/SUMMARY.md", "\n".join(nav) + "\n")
