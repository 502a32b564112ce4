"""The documentation site's generated reference follows the code: every public module
(``__all__``) has an API page listing every public name, every ``nndl`` subcommand and
flag is in the command-line page with its default, and the rendered site holds them all.

The generator (tools/docs_reference.py) is tested directly; one build of the site (the
notebooks not executed) checks what mkdocstrings renders. Skipped without the ``docs``
extra."""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys

import pytest
from _cifar import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
docs_reference = pytest.importorskip("docs_reference")

SRC = REPO_ROOT / "src"


def _all_of(path) -> list[str] | None:
    for node in ast.parse(path.read_text()).body:
        targets = getattr(node, "targets", [getattr(node, "target", None)])
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(node.value))  # __all__ = [...] or __all__: T = [...]
    return None


def _expected_modules() -> dict[str, list[str]]:
    """Every public module and its ``__all__``, found independently of the generator."""
    out = {}
    for path in (SRC / "nndl").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(p.startswith("_") for p in parts):
            continue
        names = _all_of(path)
        if names is not None:
            out[".".join(parts)] = names
    return out


def _members(page: str) -> list[str]:
    return re.findall(r"^        - (\S+)$", page, flags=re.M)


def test_every_public_module_has_a_page_listing_its_whole_all():
    expected = _expected_modules()
    assert {"nndl", "nndl.layers", "nndl.cli.entry", "nndl.nn", "nndl.tune"} <= set(expected)
    pages = docs_reference.api_pages(SRC)
    by_module = {}
    for path, text in pages.items():
        m = re.search(r"^::: (\S+)$", text, flags=re.M)
        if m:
            by_module[m.group(1)] = (path, text)
    assert set(by_module) == set(expected)
    summary = pages[f"{docs_reference.API_DIR}/SUMMARY.md"]
    for module, names in expected.items():
        path, text = by_module[module]
        assert _members(text) == names, module
        assert f"[{module}]({path[len(docs_reference.API_DIR) + 1 :]})" in summary, module


def test_private_modules_have_no_page():
    pages = docs_reference.api_pages(SRC)
    assert not [p for p in pages if "/_" in p]
    assert "nndl._im2col" not in docs_reference.public_modules(SRC)
    assert "nndl.__main__" not in docs_reference.public_modules(SRC)


def test_a_new_module_gets_a_page_without_editing_the_docs(tmp_path):
    pkg = tmp_path / "nndl"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('__all__ = ["a"]\n')
    (pkg / "sub" / "__init__.py").write_text("__all__ = []\n")
    (pkg / "sub" / "newthing.py").write_text('__all__ = ["make", "Thing"]\n')
    (pkg / "_hidden.py").write_text('__all__ = ["x"]\n')
    (pkg / "noapi.py").write_text("x = 1\n")
    pages = docs_reference.api_pages(tmp_path)
    page = pages["reference/api/nndl/sub/newthing.md"]
    assert "::: nndl.sub.newthing" in page and _members(page) == ["make", "Thing"]
    assert set(pages) == {
        "reference/api/nndl/index.md",
        "reference/api/nndl/sub/index.md",
        "reference/api/nndl/sub/newthing.md",
        "reference/api/SUMMARY.md",
    }
    assert pages["reference/api/SUMMARY.md"].splitlines() == [
        "* [nndl](nndl/index.md)",
        "    * [nndl.sub](nndl/sub/index.md)",
        "        * [nndl.sub.newthing](nndl/sub/newthing.md)",
    ]


def test_a_computed_all_is_a_clear_error(tmp_path):
    (tmp_path / "nndl").mkdir()
    (tmp_path / "nndl" / "__init__.py").write_text("__all__ = sorted(globals())\n")
    with pytest.raises(ValueError, match=r"__init__.py: __all__ is not a literal list"):
        docs_reference.api_pages(tmp_path)


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """nndl and its subcommands, from the parsers themselves (tune has its own)."""
    from nndl.cli.entry import build_parser
    from nndl.tune import build_parser as tune_parser

    root = build_parser()
    (sub,) = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)]
    out = {"nndl": root}
    for name, parser in sub.choices.items():
        out[f"nndl {name}"] = tune_parser() if name == "tune" else parser
    return out


def test_every_subcommand_and_flag_is_in_the_cli_reference():
    text = docs_reference.cli_markdown()
    parsers = _parsers()
    assert {"nndl train", "nndl evaluate", "nndl tune"} <= set(parsers)
    sections = re.split(r"^## ", text, flags=re.M)
    by_name = {s.split("`")[1]: s for s in sections[1:]}
    assert set(by_name) == set(parsers)
    for name, parser in parsers.items():
        section = by_name[name]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            for flag in action.option_strings:
                assert re.search(rf"`{re.escape(flag)}[` ]", section), f"{name} {flag}"
            default = action.default
            if isinstance(default, str | int | float) and not isinstance(default, bool):
                if action.option_strings and default is not argparse.SUPPRESS:
                    assert f"`{default}`" in section, f"{name} {action.option_strings}"


def test_cli_table_cells_survive_pipes_in_help():
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--mode", default="a|b", help="either a|b (default: %(default)s)")
    row = docs_reference._section("x", parser)
    line = next(li for li in row if li.startswith("| `--mode"))
    assert line.count(" | ") == 2 and r"a\|b (default: a\|b)" in line


def test_the_tier_table_puts_every_module_in_its_tier():
    table = docs_reference.tier_table(SRC, REPO_ROOT / "tests" / "test_layout.py")
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines()[2:]}
    tiers = docs_reference.layout_tiers(REPO_ROOT / "tests" / "test_layout.py")
    assert list(rows) == list(tiers)
    assert "`nndl.layers`" in rows["layers"] and "`nndl.io.atomic`" in rows["io"]
    assert "`nndl.cli.entry`" in rows["cli"] and "`nndl.layers`" not in rows["cli"]
    count = sum(row.count("`nndl") for row in rows.values())
    assert count == len(list((SRC / "nndl").rglob("*.py")))  # each module once
    text = (REPO_ROOT / "docs" / "explanation" / "architecture.md").read_text()
    assert docs_reference.TIERS_MARKER in text


def test_the_run_folder_page_names_every_file_nndl_writes_there():
    from nndl.cli.run_folder import OWN_FILES

    text = (REPO_ROOT / "docs" / "reference" / "run-folder.md").read_text()
    assert OWN_FILES and not [name for name in OWN_FILES if f"`{name}`" not in text]


# --- the rendered site -------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("mkdocs_gen_files")
    pytest.importorskip("mkdocs_jupyter")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NNDL_DOCS_EXECUTE": "0", "NO_MKDOCS_2_WARNING": "1",
           "DISABLE_MKDOCS_2_WARNING": "true", "PYTHONPATH": str(SRC)}  # fmt: skip
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_built_site_renders_every_public_name(site):
    missing = []
    for module, names in _expected_modules().items():
        stem = site / "reference" / "api" / module.replace(".", "/")
        html = (stem / "index.html").read_text()
        missing += [f"{module}.{n}" for n in names if f'id="{module}.{n}"' not in html]
    assert not missing, missing


def test_the_built_site_has_the_cli_every_tutorial_and_the_pages(site):
    html = (site / "reference" / "cli" / "index.html").read_text()
    for name, parser in _parsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert f"<code>{flag}" in html, f"{name} {flag}"
    notebooks = [f"tutorials/{p.stem}" for p in (REPO_ROOT / "examples").glob("*.ipynb")]
    assert notebooks
    for page in [*notebooks, "how-to/add-a-layer", "reference/run-folder", "results"]:
        assert (site / page / "index.html").is_file(), page
