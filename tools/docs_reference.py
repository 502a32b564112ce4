"""The generated parts of the documentation site: one API page per public module and the
command-line reference, both read from the code so they follow it without editing.

- ``public_modules(src)``: every module under ``src/nndl`` that defines ``__all__``, no
  private (``_x``) module or package, no ``__main__``; ``public_names(path)`` reads its
  ``__all__`` from the source (nothing is imported).
- ``api_pages(src)``: ``{page path: markdown}``, one mkdocstrings page per public module
  (``reference/api/nndl/layers.md``, or ``.../nndl/nn/index.md`` for a package, holds
  ``::: nndl.layers`` with its ``__all__`` as the members), and the literate-nav
  ``SUMMARY.md`` listing them, nested by package.
- ``tier_table(src, layout_test)``: the dependency tiers of ``tests/test_layout.py`` with
  the modules in each, for the architecture page (``<!-- nndl:tiers -->`` there).
- ``cli_markdown()``: the ``nndl`` command from its own parsers
  (:func:`nndl.cli.entry.build_parser`, and :func:`nndl.tune.build_parser` for ``nndl
  tune``, which parses its own command line): every subcommand, every flag with its
  default and help.

``tools/gen_docs_pages.py`` writes these pages when MkDocs builds the site;
``tests/test_docs.py`` checks them.
"""

from __future__ import annotations

import argparse
import ast
import copy
from pathlib import Path

__all__ = [
    "API_DIR",
    "public_modules",
    "public_names",
    "api_pages",
    "command_parsers",
    "cli_markdown",
    "TIERS_MARKER",
    "layout_tiers",
    "tier_table",
]

API_DIR = "reference/api"
TIERS_MARKER = "<!-- nndl:tiers -->"
USAGE_WIDTH = 72  # characters of a usage line: about a code block's width on the site


# --- the API reference ------------------------------------------------------------------


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def public_names(path: Path) -> list[str] | None:
    """The names in the module's ``__all__`` (read from its source), or None without one.

    ``__all__`` must be a literal list or tuple of strings, as the project writes it.
    """
    tree = ast.parse(Path(path).read_text(), str(path))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                names = ast.literal_eval(node.value)
            except ValueError as exc:
                raise ValueError(f"{path}: __all__ is not a literal list of names") from exc
            return list(names)
    return None


def public_modules(src: Path) -> dict[str, Path]:
    """``{module name: source file}`` of every public module under ``src`` (the folder
    holding the ``nndl`` package), sorted by name."""
    src = Path(src)
    found = {}
    for path in sorted((src / "nndl").rglob("*.py")):
        name = _module_name(path, src)
        if any(part.startswith("_") for part in name.split(".")):
            continue  # private modules and __main__ (packages keep their __init__ name)
        if public_names(path) is not None:
            found[name] = path
    return dict(sorted(found.items()))


def _page_path(module: str, path: Path) -> str:
    """``nndl/layers.md`` for a module, ``nndl/nn/index.md`` for a package (the page of
    its section in the navigation)."""
    stem = "/".join(module.split("."))
    return f"{API_DIR}/{stem}/index.md" if path.name == "__init__.py" else f"{API_DIR}/{stem}.md"


def _api_page(module: str, names: list[str]) -> str:
    members = "".join(f"\n        - {n}" for n in names)
    return (
        f"# `{module}`\n\n"
        f"::: {module}\n"
        "    options:\n"
        "      show_root_heading: false\n"
        "      show_root_toc_entry: false\n"
        f"      members:{members if names else ' []'}\n"
    )


def api_pages(src: Path) -> dict[str, str]:
    """Every API page (``reference/api/...md`` -> markdown) and the ``SUMMARY.md`` that
    lists them for the navigation, one line per module in name order."""
    pages = {}
    nav = []
    modules = public_modules(src)
    for module, path in sorted(modules.items(), key=lambda item: item[0].split(".")):
        page = _page_path(module, path)
        pages[page] = _api_page(module, public_names(path) or [])
        # Nested under each listed package above it: a package is its section's page.
        parts = module.split(".")
        depth = sum(".".join(parts[:i]) in modules for i in range(1, len(parts)))
        nav.append(f"{'    ' * depth}* [{module}]({page[len(API_DIR) + 1 :]})")
    pages[f"{API_DIR}/SUMMARY.md"] = "\n".join(nav) + "\n"
    return pages


# --- the command-line reference ---------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """``{"nndl": parser, "nndl train": parser, ...}``: the command and each subcommand,
    ``nndl tune`` with its own parser (``nndl`` hands it the command line unparsed)."""
    from nndl.cli.entry import build_parser

    root = build_parser()
    out = {"nndl": root}
    for name, sub in _subparsers(root).items():
        if name == "tune":
            from nndl.tune import build_parser as tune_parser

            sub = tune_parser()
        out[f"nndl {name}"] = sub
    return out


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    text = " ".join(str(text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreConstAction | argparse._CountAction):
        return "off" if action.default in (None, False, 0) else f"`{action.default!r}`"
    if action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    value = action.default
    if isinstance(value, list | tuple):
        value = " ".join(map(str, value))
    return f"`{_cell(value)}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if action.help in (None, argparse.SUPPRESS):
        text = ""
    else:
        text = parser._get_formatter()._expand_help(action)
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        listed = ", ".join(f"`{c}`" for c in action.choices)
        text = f"{_cell(text)} (one of {listed})" if text else f"one of {listed}"
        return text
    return _cell(text)


def _invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """``--lr LR``; a flag with choices shows its name (``--model MODEL``), the choices
    are listed beside its help."""
    words = parser._get_formatter()._format_action_invocation(_named(action))
    return "<br>".join(f"`{w.strip()}`" for w in words.split(", "))


def _named(action: argparse.Action) -> argparse.Action:
    """The action with its name in place of a list of choices (``MODEL``, not
    ``{convnet,fc_net,...}``)."""
    if action.choices is None or action.metavar is not None or not action.option_strings:
        return action
    action = copy.copy(action)
    action.metavar = action.dest.upper()
    return action


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage lines at a fixed width (not the terminal's), so the page is the same
    wherever it is built; choices are listed in the tables, not here."""
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    actions = [_named(a) for a in parser._actions]
    formatter.add_usage(parser.usage, actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `{name}`", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    lines += ["```text", _usage(parser), "```", ""]
    for group in parser._action_groups:
        actions = [
            a
            for a in group._group_actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
            and a.help != argparse.SUPPRESS
        ]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| flag | default | what it does |", "|---|---|---|"]
        for action in actions:
            row = [_invocation(parser, action), _default(action), _help(parser, action)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in commands:
        lines += ["**commands**", "", "| command | what it does |", "|---|---|"]
        for choice in action._choices_actions:
            anchor = f"nndl-{choice.dest}"
            lines.append(f"| [`{choice.dest}`](#{anchor}) | {_cell(choice.help or '')} |")
        lines.append("")
    if parser.epilog:
        lines += ["```text", parser.epilog.strip(), "```", ""]
    return lines


def cli_markdown() -> str:
    """The command-line reference page: ``nndl`` and each subcommand's flags."""
    lines = [
        "# Command line",
        "",
        "Generated from the `nndl` command's own parsers when the site is built, so every",
        "subcommand and flag is here with its default. `nndl COMMAND --help` prints the same.",
        "",
    ]
    for name, parser in command_parsers().items():
        lines += _section(name, parser)
    return "\n".join(lines)


# --- the dependency tiers ---------------------------------------------------------------


def layout_tiers(layout_test: Path) -> dict[str, list[str]]:
    """``TIERS`` of ``tests/test_layout.py`` (tier -> module patterns, bottom first), read
    from its source."""
    tree = ast.parse(Path(layout_test).read_text(), str(layout_test))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TIERS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError(f"{layout_test}: no TIERS table")


def _in(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return module.startswith(pattern[:-1])
    return module == pattern


def tier_table(src: Path, layout_test: Path) -> str:
    """A Markdown table: each tier, bottom first, with every module of ``src`` in it
    (private ones included) and the tiers it may import."""
    modules = sorted(
        _module_name(path, Path(src)) for path in sorted((Path(src) / "nndl").rglob("*.py"))
    )
    tiers = layout_tiers(layout_test)
    lines = ["| tier | modules | may import |", "|---|---|---|"]
    for i, (tier, patterns) in enumerate(tiers.items()):
        found = [m for m in modules if any(_in(m, p) for p in patterns)]
        below = ", ".join(list(tiers)[:i]) or "NumPy and the standard library"
        names = ", ".join(f"`{m}`" for m in found)
        lines.append(f"| {tier} | {names} | its own tier, {below} |")
    return "\n".join(lines) + "\n"
