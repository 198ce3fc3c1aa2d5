"""`enzyme_width` mistakes are errors naming them (examples/c/width.c runs in tests/test_c_examples.py)."""

from __future__ import annotations

import subprocess

import pytest

from enzpy.cli import main
from tests.test_c_frontend import CLANG, PRELUDE, needs_clang

@needs_clang
@pytest.mark.parametrize("call, expected", [
    ("__enzyme_autodiff((void *)f, enzyme_width, 2, x, dx)", "enzyme_width in reverse mode"),
    ("__enzyme_fwddiff((void *)f, enzyme_width, n, x, dx, dx)", "needs a positive width known at compile time"),
])
def test_width_mistakes_are_named(tmp_path, capsys, call, expected):
    source = PRELUDE + "extern int enzyme_width;\ndouble f(double *x) { return x[0] * x[0]; }\n" \
        + "int main(int n, char **argv) { double x[2] = {1, 2}, dx[2] = {0}; return (int)" + call + "; }\n"
    (tmp_path / "p.c").write_text(source)
    subprocess.run([CLANG, "-O1", "-S", "-emit-llvm", str(tmp_path / "p.c"), "-o", str(tmp_path / "p.ll")],
                   check=True)
    assert main(["opt", str(tmp_path / "p.ll"), "-o", str(tmp_path / "out.ll")]) == 2
    assert expected in capsys.readouterr().err
