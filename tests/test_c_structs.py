"""C structs passed by value to a differentiated function (frontend/struct_arguments.py).

examples/c/structs.c runs at every level in tests/test_c_examples.py; here,
the case Enzyme's reading of LLVM parameters gets silently wrong.
"""

from __future__ import annotations

import pytest

from tests.test_c_frontend import build_and_run, needs_clang


SPLIT_CONST = r"""
typedef struct { double scale, shift; } affine;
double f(affine a, double x) { return a.scale * x + a.shift * a.shift * x * x; }
int main(void) {
    affine a = {2.0, 3.0};
    double x = 0.5;
    /* Read as LLVM parameters, `shift` would take the default activity (active, its derivative
       returned in place of x's): the marker covers the whole struct. */
    check("d f / d x, struct const", __enzyme_autodiff((void *)f, enzyme_const, a, x), 2.0 + 2 * 9.0 * x, 1e-14);
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_one_marker_covers_every_register_of_a_split_struct(tmp_path, level):
    from tests.test_c_frontend import PRELUDE
    finished = build_and_run(tmp_path, PRELUDE + SPLIT_CONST, level)
    assert finished.stdout.count(" ok") == 1, finished.stdout
