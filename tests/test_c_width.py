"""`enzyme_width`: vector forward mode through Enzyme's C interface (ForwardSpec.width).

examples/c/width.c is a ctest at -O0 and -O2; here it runs at every level.
Each lane is checked against a width-1 call or central finite differences.
"""

from __future__ import annotations

import subprocess

import pytest

from enzpy.cli import main
from tests.test_c_frontend import CLANG, EXAMPLES, PRELUDE, build_and_run, needs_clang

WIDTH = (EXAMPLES / "width.c").read_text().replace('#include "enzyme.h"', (EXAMPLES / "enzyme.h").read_text())


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2", "-O3"])
def test_three_directions_in_one_call(tmp_path, level):
    finished = build_and_run(tmp_path, WIDTH, level)
    assert finished.stdout.count(" ok\n") == 18, finished.stdout


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
