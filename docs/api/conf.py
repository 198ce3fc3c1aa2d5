"""Sphinx configuration of enzpy's API reference.

Build (warnings are errors, as tests/test_docs.py builds it):

    .venv/bin/python -m sphinx -W --keep-going -b html docs/api build/docs/api
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

project = "enzpy"
author = "the enzpy authors"
copyright = "the enzpy authors"
import enzpy  # noqa: E402  (after the path: the checkout, not an installed copy)

release = version = enzpy.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest"]
# The docstrings are plain reStructuredText with `name` for code (no Google or NumPy sections).
default_role = "literal"
html_theme = "alabaster"
html_theme_options = {"description": "Automatic differentiation of numba kernels on LLVM IR",
                      "page_width": "1100px", "body_max_width": "none"}
exclude_patterns = ["_build"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# enzpy.torch and enzpy.jax import their frameworks; where one is not installed, autodoc imports
# the module against a stand-in so that its reference still builds.
autodoc_mock_imports = [name for name in ("torch", "jax", "jaxlib") if importlib.util.find_spec(name) is None]

# `sphinx-build -b doctest docs/api OUT` runs the pages' examples with this setup.
doctest_global_setup = """
import math
import numpy as np
import numba
import enzpy
from enzpy import Active, Const, Duplicated, DuplicatedNoNeed, differentiate
"""


class OptionalModule(SphinxDirective):
    """`.. optional-module:: enzpy.torch` with `:functions: function`: the module's reference, or a note
    where the checkout has no such module (modules that are being written)."""

    required_arguments = 1
    option_spec = {"functions": directives.unchanged}

    def run(self):
        name = self.arguments[0]
        try:
            present = importlib.util.find_spec(name) is not None
        except ImportError:
            present = False
        if not present:
            note = nodes.note()
            note += nodes.paragraph(text=f"{name} is not part of this checkout.")
            return [note]
        lines = [f".. automodule:: {name}", ""]
        for function in self.options.get("functions", "").split():
            lines += [f".. autofunction:: {name}.{function}", ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"<optional-module {name}>"), self.content_offset,
                                container)
        return container.children


class CommandHelp(SphinxDirective):
    """`.. enzpy-help::` (the command) or `.. enzpy-help:: emit` (a subcommand): argparse's help, 80 wide."""

    optional_arguments = 1

    def run(self):
        from enzpy.cli import build_parser

        parser = build_parser()
        if self.arguments:
            commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = commands.choices[self.arguments[0]]
        parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=80)
        text = parser.format_help().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("optional-module", OptionalModule)
    app.add_directive("enzpy-help", CommandHelp)
    return {"parallel_read_safe": True}
