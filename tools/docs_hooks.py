"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks``).

The tutorial notebooks are executed while the site builds, as the tests run them: with
``NNDL_NOTEBOOK_SMALL=1`` (a few hundred images) and, without CIFAR-10 in
``NNDL_DATA_DIR``, the cache or ``../shared/cifar10``, on their synthetic stand-in
images. ``mkdocs build`` executes them every time (their outputs follow the code, not
just the notebook); ``mkdocs serve`` keeps mkdocs-jupyter's cache (``.cache/``) so that
editing a page does not run them again. ``NNDL_DOCS_EXECUTE=0`` renders them without
outputs instead (a quick build).

The architecture page's table of dependency tiers is generated here too (from
``tests/test_layout.py``), and Sphinx roles (and the ``::`` of literal blocks) are
dropped from rendered docstrings.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT / "tools"))

from docs_reference import TIERS_MARKER, tier_table  # noqa: E402

# Sphinx roles in docstrings (``:func:`name```), rendered by mkdocstrings as the role's
# text before the code span: keep the code, drop the role (and a leading ``~``).
_ROLE = re.compile(r":(?:py:)?(?:func|meth|mod|class|data|attr|exc|obj|const):(<code>)~?")
# reStructuredText's "text::" before a literal block reads as "text:" on the page.
_LITERAL = re.compile(r"::(\s*</p>)")

_command = "build"


def on_startup(command, dirty):
    global _command
    _command = command


def on_config(config):
    os.environ.setdefault("NNDL_NOTEBOOK_SMALL", "1")
    os.environ.pop("MPLBACKEND", None)  # the notebooks show plots inline, as in Jupyter
    jupyter = config.plugins["mkdocs-jupyter"].config
    jupyter["cache"] = _command == "serve"
    if os.environ.get("NNDL_DOCS_EXECUTE", "1") == "0":
        jupyter["execute"] = False
    return config


def on_page_markdown(markdown, page, config, files):
    """The architecture page's tier table, from tests/test_layout.py and src/nndl."""
    if TIERS_MARKER in markdown:
        table = tier_table(_ROOT / "src", _ROOT / "tests" / "test_layout.py")
        markdown = markdown.replace(TIERS_MARKER, table)
    return markdown


def on_page_content(html, page, config, files):
    return _LITERAL.sub(r":\1", _ROLE.sub(r"\1", html))
