"""The API reference (docs/api): it builds with warnings as errors, its examples run, every
public name is in it with an example, and its table of non-differentiable points is what
enzpy returns today."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import enzpy

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "api"

sphinx = pytest.importorskip("sphinx", reason='the docs build needs Sphinx (pip install -e ".[docs]")')

_DIRECTIVE = re.compile(r"^\.\. (?:autofunction|autoclass|autoexception|automethod):: (\S+)", re.M)
_OPTIONAL = re.compile(r"^\.\. optional-module:: (\S+)\n\s+:functions: (.+)$", re.M)


def _sphinx(builder: str, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
                           str(DOCS), str(output)], capture_output=True, text=True, cwd=ROOT)


def test_reference_builds_without_warnings(tmp_path):
    built = _sphinx("html", tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    for page in ("index", "reference", "annotations", "conventions", "unsupported", "cli"):
        assert (tmp_path / f"{page}.html").exists(), page
    reference = (tmp_path / "reference.html").read_text()
    assert "enzpy.differentiate" in reference and "value_and_grad" in reference


def test_examples_on_the_pages_and_in_the_docstrings_run(tmp_path):
    """Sphinx's doctest builder runs every `>>>` example of the pages, autodoc's docstrings included."""
    for framework in ("torch", "jax"):       # enzpy.torch's and enzpy.jax's examples are among them
        pytest.importorskip(framework, reason=f'the examples include {framework} ones (pip install -e ".[{framework}]")')
    ran = _sphinx("doctest", tmp_path)
    report = (tmp_path / "output.txt").read_text() if (tmp_path / "output.txt").exists() else ""
    assert ran.returncode == 0, ran.stdout + ran.stderr + report
    tests = re.search(r"^\s*(\d+) tests$", report, re.M)
    assert tests is not None and int(tests.group(1)) >= 100, report[-2000:]
    assert re.search(r"^\s*0 failures in tests$", report, re.M), report[-2000:]


def _documented_names() -> list[str]:
    """Every name the reference pages document (directives and their :members: lists)."""
    names = []
    for page in DOCS.glob("*.rst"):
        text = page.read_text()
        for match in _DIRECTIVE.finditer(text):
            names.append(match.group(1))
            members = re.match(r"(?:\n   :[a-z-]+:.*(?:\n {13}.*)*)*", text[match.end():])
            for option in re.finditer(r":members: (.+(?:\n {13}.+)*)", members.group(0)):
                names += [f"{match.group(1)}.{m.strip()}" for m in option.group(1).split(",") if m.strip()]
        for module, functions in _OPTIONAL.findall(text):
            names += [f"{module}.{f}" for f in functions.split()]
    return names


def _resolve(dotted: str):
    """`enzpy.api.Differentiable.grad` -> the object, importing submodules on the way (an ImportError
    from a module of an optional extra propagates; an AttributeError names a missing attribute)."""
    parts = dotted.split(".")
    value = importlib.import_module(parts[0])
    for position, part in enumerate(parts[1:], 1):
        if inspect.ismodule(value) and not hasattr(value, part):
            value = importlib.import_module(".".join(parts[:position + 1]))
        else:
            value = getattr(value, part)
    return value


def _has_example(docstring: str | None) -> bool:
    return bool(docstring) and (">>>" in docstring or ".. code-block::" in docstring or "::\n" in docstring)


def test_every_public_name_is_in_the_reference():
    documented = set(_documented_names())
    missing = sorted(f"enzpy.{name}" for name in enzpy.__all__
                     if f"enzpy.{name}" not in documented)
    assert not missing, f"public names the API reference does not document: {missing}"


def test_every_documented_name_has_a_docstring_with_an_example():
    without = []
    for name in _documented_names():
        try:
            value = _resolve(name)
        except ImportError as error:
            if any(framework in str(error) for framework in ("torch", "jax")):
                continue            # an optional extra not installed here: CI installs it
            raise
        except AttributeError:
            owner, field = _resolve(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]
            assert field in getattr(owner, "__dataclass_fields__", {}), name
            continue                # a dataclass field: its docstring sits under it, no example needed
        if not callable(value):
            continue
        if not _has_example(inspect.getdoc(value)):
            without.append(name)
    assert not without, f"documented names whose docstring has no example: {without}"


def test_the_conventions_table_is_what_enzpy_returns():
    """conventions.csv against enzpy (and JAX where installed) at every non-differentiable point."""
    checked = subprocess.run([sys.executable, str(DOCS / "conventions_cases.py"), "--check"],
                             capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "columns checked: enzpy grad, enzpy jvp" in checked.stdout
