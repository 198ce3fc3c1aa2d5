"""Heap memory inside a differentiated C / C++ function (rules/heap.py).

examples/c/heap.c is a ctest at -O0 and -O2; here it runs at every level, and
once more linked with AddressSanitizer, which fails the program on a leak, a
double free or a read of freed memory: the shadow blocks must be freed
exactly once, and the reverse sweep must not read a block the program freed.
"""

from __future__ import annotations

import subprocess

import pytest

from enzpy.cli import main
from tests.test_c_frontend import CLANG, CLANGXX, EXAMPLES, PRELUDE, build_and_run, needs_clang

HEAP = (EXAMPLES / "heap.c").read_text().replace('#include "enzyme.h"', (EXAMPLES / "enzyme.h").read_text())
CHECKS = 21


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2", "-O3"])
def test_malloc_calloc_and_free_in_both_modes(tmp_path, level):
    finished = build_and_run(tmp_path, HEAP, level)
    assert finished.stdout.count(" ok\n") == CHECKS, finished.stdout


def sanitizer_links() -> bool:
    if CLANG is None:
        return False
    probe = subprocess.run([CLANG, "-fsanitize=address", "-x", "c", "-", "-o", "/dev/null"],
                           input="int main(void) { return 0; }", capture_output=True, text=True)
    return probe.returncode == 0


@needs_clang
@pytest.mark.skipif(not sanitizer_links(), reason="clang cannot link AddressSanitizer's runtime here")
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_no_leak_double_free_or_use_after_free(tmp_path, level):
    finished = run_under_sanitizer(tmp_path, HEAP, level)
    assert finished.stdout.count(" ok\n") == CHECKS, finished.stdout


def run_under_sanitizer(tmp_path, text: str, level: str) -> subprocess.CompletedProcess:
    """clang `level` -> enzpy opt -> clang with AddressSanitizer -> run; asserts it exits 0."""
    source, primal, derivative, executable = (tmp_path / name for name in ("p.c", "p.ll", "p.d.ll", "p"))
    source.write_text(text)
    subprocess.run([CLANG, level, "-S", "-emit-llvm", str(source), "-o", str(primal)], check=True)
    assert main(["opt", str(primal), "-o", str(derivative)]) == 0
    subprocess.run([CLANG, "-O1", "-fsanitize=address", str(derivative), "-o", str(executable), "-lm"], check=True)
    finished = subprocess.run([str(executable)], capture_output=True, text=True,
                              env={"ASAN_OPTIONS": "detect_leaks=1"})
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished


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
