"""What C says about aliasing, used (frontend/clang.py `_distinct_objects`, restrict parameters).

Pointers a call passes into distinct objects of the caller (stack arrays,
globals, heap blocks) make the function's pointer parameters `noalias` for
that derivative; pointers into one object do not, and then the derivative
must still be right when the function writes through one and reads through
the other.
"""

from __future__ import annotations

import subprocess

import pytest

from enzpy.frontend import clang, llvm_text
from enzpy.frontend.module_text import ModuleText
from tests.test_c_frontend import CLANG, PRELUDE, build_and_run, needs_clang

SHIFTED = PRELUDE + r"""
/* y[i] = x[i] * x[i] + y[i - 1]: in place when y is x shifted by one. */
void running(const double *x, double *y, int n) {
    for (int i = 1; i < n; i++)
        y[i] = x[i] * x[i] + y[i - 1];
}
double total(const double *v, int n) { double s = 0; for (int i = 0; i < n; i++) s += v[i] * v[i]; return s; }
double overlapping(double *buffer, int n) {          /* writes through one pointer what it reads through the other */
    running(buffer, buffer + 1, n);
    return total(buffer, n + 1);
}
double two_views(const double *x, double *y, int n) {  /* the call passes y = x + 1 */
    running(x, y, n);
    return total(x, n + 1);
}
int main(void) {
    double a[8] = {0.5, 0.25, -0.5, 1.0, 0.75, -0.25, 0.1, 0.2}, da[8] = {0}, h = 1e-6;
    double x[6] = {0.3, -0.1, 0.7, 0.2, 0.4, 0.6}, dx[6] = {0}, y[6] = {0}, dy[6] = {1, 1, 1, 1, 1, 1};
    __enzyme_autodiff((void *)overlapping, enzyme_dup, a, da, enzyme_const, 7);
    for (int i = 0; i < 8; i++) {
        double b[8], c[8];
        for (int j = 0; j < 8; j++) { b[j] = a[j]; c[j] = a[j]; }
        b[i] += h; c[i] -= h;
        check("overlapping arrays", da[i], (overlapping(b, 7) - overlapping(c, 7)) / (2 * h), 1e-6);
    }
    double e[8] = {0.5, 0.25, -0.5, 1.0, 0.75, -0.25, 0.1, 0.2}, de[8] = {0};
    __enzyme_autodiff((void *)two_views, enzyme_dup, e, de, enzyme_dup, e + 1, de + 1, enzyme_const, 7);
    for (int i = 0; i < 8; i++) {
        double b[8], c[8];
        for (int j = 0; j < 8; j++) { b[j] = a[j]; c[j] = a[j]; }
        b[i] += h; c[i] -= h;
        check("one array passed as two overlapping pointers", de[i],
              (two_views(b, b + 1, 7) - two_views(c, c + 1, 7)) / (2 * h), 1e-6);
    }
    __enzyme_autodiff((void *)running, enzyme_dup, x, dx, enzyme_dup, y, dy, enzyme_const, 6);
    for (int i = 1; i < 6; i++)
        check("distinct arrays", dx[i], 2 * x[i] * (6 - i), 1e-12);
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_distinct_objects_of_the_caller_and_overlapping_ones(tmp_path, level):
    finished = build_and_run(tmp_path, SHIFTED, level)
    assert finished.stdout.count(" ok") == 21, finished.stdout
    source, primal = tmp_path / "a.c", tmp_path / "a.ll"
    source.write_text(SHIFTED)
    subprocess.run([CLANG, level, "-S", "-emit-llvm", str(source), "-o", str(primal)], check=True)
    text = primal.read_text()
    with clang.parsed(text) as module_ref:
        calls = clang._decode_calls(module_ref, ModuleText(text), llvm_text.enzyme_call_lines(text))
    distinct = {request.function: request.distinct_pointers for _, (request, _, _) in calls}
    # `overlapping`: one array and its shadow; `running`: four stack arrays; `two_views`: two
    # pointers into one array (so its parameters are not noalias, and the derivative is still right).
    assert distinct == {"overlapping": True, "running": True, "two_views": False}
