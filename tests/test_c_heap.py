"""Heap memory inside a differentiated C++ function (rules/heap.py): new, new[], delete, delete[].

examples/c/heap.c (malloc, calloc, free) runs in tests/test_c_examples.py.
"""

from __future__ import annotations

import pytest

from tests.test_c_frontend import CLANGXX, PRELUDE, build_and_run

NEW_DELETE = PRELUDE.replace("double __enzyme_autodiff(void *, ...);", 'extern "C" double __enzyme_autodiff(void *, ...);')\
    .replace("double __enzyme_fwddiff(void *, ...);", 'extern "C" double __enzyme_fwddiff(void *, ...);') + r"""
#include <new>
struct Polynomial {
    int degree;
    double *coefficients;
    explicit Polynomial(int d) : degree(d), coefficients(new double[d + 1]()) {}
    ~Polynomial() { delete[] coefficients; }
    double at(double x) const { double v = 0; for (int i = degree; i >= 0; i--) v = v * x + coefficients[i]; return v; }
};
double fit_error(const double *c, const double *xs, int n) {
    Polynomial *p = new Polynomial(3);
    for (int i = 0; i <= 3; i++) p->coefficients[i] = c[i];
    double error = 0;
    for (int i = 0; i < n; i++) { double r = p->at(xs[i]) - sin(xs[i]); error += r * r; }
    delete p;
    return error;
}
int main() {
    double c[4] = {0.1, 0.9, -0.05, -0.15}, dc[4] = {0}, xs[5] = {-1, -0.5, 0, 0.5, 1}, h = 1e-6;
    double v[4] = {1, -1, 0.5, 2}, along = 0;
    __enzyme_autodiff((void *)fit_error, enzyme_dup, c, dc, enzyme_const, xs, enzyme_const, 5);
    for (int i = 0; i < 4; i++) {
        double saved = c[i];
        c[i] = saved + h; double plus = fit_error(c, xs, 5);
        c[i] = saved - h; double minus = fit_error(c, xs, 5);
        c[i] = saved;
        check("d fit_error / d c[i] (new, new[], delete, delete[])", dc[i], (plus - minus) / (2 * h), 1e-6);
        along += dc[i] * v[i];
    }
    check("forward along v", __enzyme_fwddiff((void *)fit_error, enzyme_dup, c, v, enzyme_const, xs,
                                              enzyme_const, 5), along, 1e-12);
    return failures;
}
"""


@pytest.mark.skipif(CLANGXX is None, reason="clang++-19 is not installed (apt-get install clang-19)")
@pytest.mark.parametrize("level", ["-O0 -fno-exceptions", "-O2 -fno-exceptions"])
def test_cpp_new_and_delete(tmp_path, level):
    # With exceptions, a constructor that allocates is an invoke with a cleanup landing pad, which
    # enzpy does not differentiate through.
    finished = build_and_run(tmp_path, NEW_DELETE, level, compiler=CLANGXX, suffix=".cpp")
    assert finished.stdout.count(" ok") == 5, finished.stdout
