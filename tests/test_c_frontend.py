"""C (and C++) through clang-19 and `enzpy opt` / `enzpy grad`, as a user of Enzyme would build it.

Each program below is new to enzpy (the examples in examples/c are built by
CMake): it is compiled to LLVM IR by clang-19, differentiated by the `enzpy`
command, linked by clang-19 and run; the program itself checks its
derivatives against central finite differences and exits non-zero on a
mismatch. Without clang-19 these tests skip (CI installs it); the text
surgery and one hand-written module are tested without it.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import llvmlite.binding as llvm
import pytest

from enzpy.cli import main
from enzpy.frontend import llvm_text
from enzpy.frontend.clang import differentiate_enzyme_calls
from enzpy.passes import target_machine

CLANG = shutil.which("clang-19")
CLANGXX = shutil.which("clang++-19")
needs_clang = pytest.mark.skipif(CLANG is None, reason="clang-19 is not installed (apt-get install clang-19; "
                                                       ".ci/run installs it)")

PRELUDE = r"""
#include <math.h>
#include <stdio.h>
extern int enzyme_dup, enzyme_const, enzyme_out, enzyme_dupnoneed;
double __enzyme_autodiff(void *, ...);
double __enzyme_fwddiff(void *, ...);
static int failures = 0;
static void check(const char *what, double got, double expected, double tolerance) {
    double scale = fabs(expected) > 1.0 ? fabs(expected) : 1.0;
    int ok = fabs(got - expected) <= tolerance * scale;
    printf("%s: %.12g vs %.12g %s\n", what, got, expected, ok ? "ok" : "MISMATCH");
    failures += !ok;
}
"""


def build_and_run(tmp_path: Path, source: str, level: str, compiler: str | None = None,
                  suffix: str = ".c") -> subprocess.CompletedProcess:
    """clang -> enzpy opt -> clang -> run; returns the finished program (asserting it passed)."""
    compiler = compiler or CLANG
    tag = level.replace(" ", "").replace("-", "_")
    program = tmp_path / f"program{suffix}"
    program.write_text(source)
    primal, differentiated, executable = (tmp_path / f"program{tag}{ext}" for ext in (".ll", ".d.ll", ".exe"))
    subprocess.run([compiler, *level.split(), "-S", "-emit-llvm", str(program), "-o", str(primal)], check=True)
    assert main(["opt", str(primal), "-o", str(differentiated)]) == 0
    subprocess.run([compiler, *level.split(), str(differentiated), "-o", str(executable), "-lm"], check=True)
    finished = subprocess.run([str(executable)], capture_output=True, text=True)
    assert finished.returncode == 0 and "MISMATCH" not in finished.stdout, finished.stdout + finished.stderr
    return finished


ROSENBROCK = PRELUDE + r"""
double rosenbrock(const double *x, int n) {
    double total = 0.0;
    for (int i = 0; i + 1 < n; i++) {
        double a = x[i + 1] - x[i] * x[i], b = 1.0 - x[i];
        total += 100.0 * a * a + b * b;
    }
    return total;
}
int main(void) {
    enum { N = 7 };
    double x[N], dx[N] = {0}, v[N], up[N], down[N], h = 1e-6;
    for (int i = 0; i < N; i++) { x[i] = 0.2 * i - 0.5; v[i] = 1.0 - 0.3 * i; }
    __enzyme_autodiff((void *)rosenbrock, x, dx, N);
    for (int i = 0; i < N; i++) {
        double saved = x[i];
        x[i] = saved + h; double plus = rosenbrock(x, N);
        x[i] = saved - h; double minus = rosenbrock(x, N);
        x[i] = saved;
        check("reverse", dx[i], (plus - minus) / (2 * h), 1e-6);
    }
    for (int i = 0; i < N; i++) { up[i] = x[i] + h * v[i]; down[i] = x[i] - h * v[i]; }
    double tangent = __enzyme_fwddiff((void *)rosenbrock, enzyme_dup, x, v, enzyme_const, N);
    check("forward", tangent, (rosenbrock(up, N) - rosenbrock(down, N)) / (2 * h), 1e-6);
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2", "-O3"])
def test_loop_over_array_in_both_modes_at_every_level(tmp_path, level):
    finished = build_and_run(tmp_path, ROSENBROCK, level)
    assert finished.stdout.count(" ok") == 8


VECTORIZED = PRELUDE + r"""
typedef struct { double da, db; } pair;
pair __enzyme_autodiff_pair(void *, ...);
void update(double *restrict y, const double *restrict x, int n, double a, double b) {
    for (int i = 0; i < n; i++) y[i] = a * x[i] * x[i] + b * sqrt(y[i] + 2.0);
}
static double weighted(const double *x, const double *y0, const double *w, int n, double a, double b) {
    double y[64], total = 0.0;
    for (int i = 0; i < n; i++) y[i] = y0[i];
    update(y, x, n, a, b);
    for (int i = 0; i < n; i++) total += w[i] * y[i];
    return total;
}
int main(void) {
    enum { N = 37 };
    double x[N], y[N], y0[N], dx[N] = {0}, dy[N], w[N], h = 1e-6, a = 0.7, b = -1.3;
    for (int i = 0; i < N; i++) { x[i] = 0.1 * i - 1.0; y0[i] = y[i] = 0.05 * i; w[i] = dy[i] = 1.0 / (1 + i); }
    pair d = __enzyme_autodiff_pair((void *)update, enzyme_dup, y, dy, enzyme_dup, x, dx, enzyme_const, N,
                                    a, b);
    check("d/da", d.da, (weighted(x, y0, w, N, a + h, b) - weighted(x, y0, w, N, a - h, b)) / (2 * h), 1e-6);
    check("d/db", d.db, (weighted(x, y0, w, N, a, b + h) - weighted(x, y0, w, N, a, b - h)) / (2 * h), 1e-6);
    for (int i = 0; i < N; i += 9) {
        double saved = x[i];
        x[i] = saved + h; double plus = weighted(x, y0, w, N, a, b);
        x[i] = saved - h; double minus = weighted(x, y0, w, N, a, b);
        x[i] = saved;
        check("d/dx", dx[i], (plus - minus) / (2 * h), 1e-6);
        check("d/dy0", dy[i], 0.5 * b * w[i] / sqrt(y0[i] + 2.0), 1e-9);
    }
    double tangent_y[N] = {0};
    for (int i = 0; i < N; i++) y[i] = y0[i];
    __enzyme_fwddiff((void *)update, enzyme_dup, y, tangent_y, enzyme_const, x, enzyme_const, N,
                     a, 1.0, enzyme_const, b);
    check("forward d y[5] / d a", tangent_y[5], x[5] * x[5], 1e-12);
    return failures;
}
"""


@needs_clang
def test_loops_clang_vectorized_are_scalarized(tmp_path):
    build_and_run(tmp_path, VECTORIZED, "-O3")
    assert "x double>" in (tmp_path / "program_O3.ll").read_text(), "clang did not vectorize: test is moot"


STRUCTS_AND_GLOBALS = PRELUDE + r"""
typedef struct { double a, b, c; } three;                /* returned through a hidden sret pointer */
typedef struct { float a, b; } two_floats;               /* returned as <2 x float> */
three __enzyme_autodiff_three(void *, ...);
two_floats __enzyme_autodiff_floats(void *, ...);
float __enzyme_autodiff_float(void *, ...);
double scale = 2.0;                                      /* read by the derivative as the program set it */
static double offset = 0.0;                              /* so is a static */
static const double coefficients[4] = {1.0, -0.5, 0.25, 3.0};
static long limit(long n) { return n <= 0 ? 0 : 1 + limit(n - 1); }   /* recursive: stays a call */
static double polynomial(double v) {
    double r = 0.0;
    for (int k = 3; k >= 0; k--) r = r * v + coefficients[k];
    return r;
}
double g(double x, double y, double z) { return scale * polynomial(x) * y + sin(z + offset) * x; }
float h(float x, float y) { return x * expf(y); }
double branchy(const double *x, long n) {
    double largest = -1e300, total = 0.0;
    long i = 0;
    while (i < limit(n)) {
        double v = x[i];
        if (v > 0) total += v * v; else total -= cbrt(v - 1.0);
        largest = fmax(largest, v);
        i++;
    }
    return total + largest;
}
int main(void) {
    double e = 1e-6;
    scale = 3.0;
    offset = 0.5;
    three t = __enzyme_autodiff_three((void *)g, 0.5, 2.0, 1.0);
    check("dg/dx", t.a, (g(0.5 + e, 2, 1) - g(0.5 - e, 2, 1)) / (2 * e), 1e-6);
    check("dg/dy", t.b, (g(0.5, 2 + e, 1) - g(0.5, 2 - e, 1)) / (2 * e), 1e-6);
    check("dg/dz", t.c, (g(0.5, 2, 1 + e) - g(0.5, 2, 1 - e)) / (2 * e), 1e-6);
    two_floats p = __enzyme_autodiff_floats((void *)h, 1.5f, 0.5f);  /* floats reach varargs as doubles */
    check("dh/dx", p.a, expf(0.5f), 1e-6);
    check("dh/dy", p.b, 1.5f * expf(0.5f), 1e-6);
    check("dh/dy alone", __enzyme_autodiff_float((void *)h, enzyme_const, 1.5f, enzyme_out, 0.5f),
          1.5f * expf(0.5f), 1e-6);
    double x[5] = {1, -2, 3, -0.5, 0.25}, dx[5] = {0}, ones[5] = {1, 1, 1, 1, 1};
    __enzyme_autodiff((void *)branchy, enzyme_dup, x, dx, enzyme_const, 5L);
    check("dbranchy/dx0", dx[0], 2.0, 1e-12);
    check("dbranchy/dx1", dx[1], -1.0 / (3.0 * cbrt(9.0)), 1e-12);
    check("dbranchy/dx2", dx[2], 7.0, 1e-12);
    double sum = dx[0] + dx[1] + dx[2] + dx[3] + dx[4];
    check("forward branchy", __enzyme_fwddiff((void *)branchy, enzyme_dup, x, ones, enzyme_const, 5L), sum, 1e-12);
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0 -g", "-O2 -g"])
def test_struct_results_float_promotion_globals_and_branches(tmp_path, level):
    build_and_run(tmp_path, STRUCTS_AND_GLOBALS, level)


MEMORY = PRELUDE + r"""
#include <string.h>
typedef struct { double mass; double position[3]; int id; } body;
enum { N = 4 };
double matrix_norm(const double (*a)[N], const double *x, int n) {      /* |A x|^2 over a 2-D array */
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double row = 0.0;
        for (int j = 0; j < n; j++) row += a[i][j] * x[j];
        total += row * row;
    }
    return total;
}
double potential(const body *bodies, int n) {                  /* an array of structs with an int field */
    double energy = 0.0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double squared = 0.0;
            for (int k = 0; k < 3; k++) {
                double d = bodies[i].position[k] - bodies[j].position[k];
                squared += d * d;
            }
            energy -= bodies[i].mass * bodies[j].mass / sqrt(squared);
        }
    return energy;
}
double cubes(const double *x, int n) {                          /* memcpy into a stack array */
    double copy[16];
    memcpy(copy, x, n * sizeof(double));
    double total = 0.0;
    for (int i = 0; i < n; i++) total += copy[i] * copy[i] * copy[i];
    return total;
}
int main(void) {
    double a[N][N], da[N][N], x[N] = {1, 2, 3, -1}, dx[N] = {0}, h = 1e-6;
    memset(da, 0, sizeof da);
    for (int i = 0; i < N; i++) for (int j = 0; j < N; j++) a[i][j] = 1.0 / (1 + i + j);
    __enzyme_autodiff((void *)matrix_norm, a, da, x, dx, N);
    double row1 = 0.0;
    for (int j = 0; j < N; j++) row1 += a[1][j] * x[j];
    check("d |Ax|^2 / d a[1][2]", da[1][2], 2 * row1 * x[2], 1e-12);
    double saved = x[3];
    x[3] = saved + h; double plus = matrix_norm(a, x, N);
    x[3] = saved - h; double minus = matrix_norm(a, x, N);
    x[3] = saved;
    check("d |Ax|^2 / d x[3]", dx[3], (plus - minus) / (2 * h), 1e-6);
    body bodies[3] = {{1.0, {0, 0, 0}, 1}, {2.0, {1, 0, 0}, 2}, {3.0, {0, 2, 0}, 3}}, dbodies[3];
    memset(dbodies, 0, sizeof dbodies);
    __enzyme_autodiff((void *)potential, bodies, dbodies, 3);
    check("d potential / d mass[0]", dbodies[0].mass, -(2.0 / 1.0 + 3.0 / 2.0), 1e-12);
    check("d potential / d y[2]", dbodies[2].position[1], 1.0 * 3.0 * 2.0 / 8.0 + 2.0 * 3.0 * 2.0 / pow(5.0, 1.5),
          1e-12);
    double dcubes[N] = {0};
    __enzyme_autodiff((void *)cubes, x, dcubes, N);
    check("d cubes / d x[1]", dcubes[1], 3 * x[1] * x[1], 1e-12);
    double tangent[N] = {0, 0, 1, 0};
    check("forward cubes", __enzyme_fwddiff((void *)cubes, x, tangent, N), 3 * x[2] * x[2], 1e-12);
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_two_dimensional_arrays_structs_and_memcpy(tmp_path, level):
    build_and_run(tmp_path, MEMORY, level)


CPP = r"""
#include <cmath>
#include <cstdio>
#include <vector>
extern int enzyme_dup, enzyme_const;
double __enzyme_autodiff(void *, ...);
template <typename T> T square(T v) { return v * v; }
double f(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += square(std::sin(x[i]));
    return s;
}
int main() {
    std::vector<double> x = {1, 2, 3}, dx(3, 0.0);
    __enzyme_autodiff((void *)f, enzyme_dup, x.data(), dx.data(), enzyme_const, 3);
    double expected = 2 * std::sin(2.0) * std::cos(2.0);
    std::printf("%.17g %.17g\n", dx[1], expected);
    return std::fabs(dx[1] - expected) > 1e-14;
}
"""


@pytest.mark.skipif(CLANGXX is None, reason="clang++-19 is not installed (comes with the clang-19 package)")
def test_cpp_call_inside_exception_scope_is_an_invoke(tmp_path):
    build_and_run(tmp_path, CPP, "-O2", compiler=CLANGXX, suffix=".cpp")
    assert "invoke" in (tmp_path / "program_O2.ll").read_text()


LIBRARY = r"""
#include <math.h>
double f(double *x, int n, double s) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += s * exp(sin(x[i]));
    x[0] = total;
    return total * s;
}
"""

CALLER = PRELUDE + r"""
double f(double *x, int n, double s);
void f_reverse(double *x, double *dx, int n, double s, double *ds, double seed);
double f_tangent(double *x, double *dx, int n, double s, double ds);
int main(void) {
    double x[3] = {0.1, 0.2, 0.3}, dx[3] = {0}, ds = 0.25, h = 1e-6, s = 1.5;
    double copy[3] = {0.1, 0.2, 0.3}, tangents[3] = {1, 0, 0};
    f_reverse(x, dx, 3, s, &ds, 2.0);                       /* ds += 2 * df/ds */
    double y[3] = {0.1, 0.2, 0.3}, z[3] = {0.1, 0.2, 0.3};
    check("d/ds", ds - 0.25, 2.0 * (f(y, 3, s + h) - f(z, 3, s - h)) / (2 * h), 1e-6);
    double up[3] = {0.1, 0.2 + h, 0.3}, down[3] = {0.1, 0.2 - h, 0.3};
    check("d/dx1", dx[1], 2.0 * (f(up, 3, s) - f(down, 3, s)) / (2 * h), 1e-6);
    double a[3] = {0.1 + h, 0.2, 0.3}, b[3] = {0.1 - h, 0.2, 0.3};
    check("tangent", f_tangent(copy, tangents, 3, s, 0.0), (f(a, 3, s) - f(b, 3, s)) / (2 * h), 1e-6);
    return failures;
}
"""


@needs_clang
def test_grad_command_generates_the_documented_signatures(tmp_path):
    (tmp_path / "library.c").write_text(LIBRARY)
    (tmp_path / "caller.c").write_text(CALLER)
    subprocess.run([CLANG, "-O1", "-S", "-emit-llvm", str(tmp_path / "library.c"), "-o",
                    str(tmp_path / "library.ll")], check=True)
    assert main(["grad", str(tmp_path / "library.ll"), "--function", "f", "--activity", "dup,const,out",
                 "-o", str(tmp_path / "reverse.ll")]) == 0
    assert main(["grad", str(tmp_path / "reverse.ll"), "--function", "f", "--mode", "forward",
                 "--name", "f_tangent", "-o", str(tmp_path / "both.ll")]) == 0
    text = (tmp_path / "both.ll").read_text()
    assert "define void @f_reverse(ptr" in text and "define double @f_tangent(ptr" in text
    executable = tmp_path / "caller.exe"
    subprocess.run([CLANG, "-O1", str(tmp_path / "caller.c"), str(tmp_path / "both.ll"), "-o", str(executable),
                    "-lm"], check=True)
    finished = subprocess.run([str(executable)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout


ERRORS = {
    "no rule": ("double mystery(double);\n"
                "double f(double *x, int n) { double s = 0; for (int i = 0; i < n; i++) s += mystery(x[i]);"
                " return s; }",
                "__enzyme_autodiff((void *)f, x, dx, 2)", ["'mystery'", "'f'"]),
    "unknown marker": ("extern int enzyme_width;\ndouble f(double *x, int n) { return x[0] * n; }",
                       "__enzyme_autodiff((void *)f, enzyme_width, 2, x, dx, 2)",
                       ["enzyme_width", "@main"]),
    "too few arguments": ("double f(double *x, int n) { return x[0] * n; }",
                          "__enzyme_autodiff((void *)f, x, dx)", ["too few arguments for @f", "parameter 1"]),
    "out on a pointer": ("double f(double *x, int n) { return x[0] * n; }",
                         "__enzyme_autodiff((void *)f, enzyme_out, x, 2)", ["parameter 0 of @f", "enzyme_out"]),
    "no body": ("double f(double *x);", "__enzyme_autodiff((void *)f, x, dx)", ["@f is only declared"]),
    "extra arguments": ("double f(double *x, int n) { return x[0] * n; }",
                        "__enzyme_autodiff((void *)f, x, dx, 2, 3)", ["more than @f takes"]),
    "realloc": ("#include <stdlib.h>\n"
                "double f(double *x, int n) { double *t = malloc(sizeof(double)); double s = 0;"
                " for (int i = 0; i < n; i++) { t = realloc(t, (i + 1) * sizeof(double)); t[i] = x[i] * x[i]; }"
                " for (int i = 0; i < n; i++) s += t[i]; free(t); return s; }",
                "__enzyme_autodiff((void *)f, x, dx, 2)", ["@f", "'realloc'", "no differentiation rule"]),
    "struct by value without a marker": ("typedef struct { double a[4]; } big;\ndouble f(big b) { return b.a[0]; }",
                                         "__enzyme_autodiff((void *)f, (big){{1, 2, 3, 4}})",
                                         ["parameter 0 of @f", "%struct.big passed by value needs a marker"]),
    "struct shadow by value": ("typedef struct { double a[4]; } big;\ndouble f(big b) { return b.a[0]; }",
                               "__enzyme_autodiff((void *)f, enzyme_dup, (big){{1, 2, 3, 4}}, (big){{0}})",
                               ["parameter 0 of @f", "passed by value too", "pass its address"]),
    "struct out": ("typedef struct { double a[4]; } big;\ndouble f(big b) { return b.a[0]; }",
                   "__enzyme_autodiff((void *)f, enzyme_out, (big){{1, 2, 3, 4}})",
                   ["enzyme_out on a %struct.big passed by value is not supported"]),
    "split struct shadow by value": ("typedef struct { double a, b; } two;\ndouble f(two t) { return t.a * t.b; }",
                                     "__enzyme_autodiff((void *)f, enzyme_dup, (two){1, 2}, (two){0, 0})",
                                     ["enzyme_dup on a struct passed by value", "pass its address"]),
}


@needs_clang
@pytest.mark.parametrize("case", sorted(ERRORS))
def test_unsupported_requests_fail_with_a_clear_message(tmp_path, capsys, case):
    definitions, call, expected = ERRORS[case]
    source = PRELUDE + definitions + "\nint main(void) { double x[2] = {1, 2}, dx[2] = {0}; return (int)" \
        + call + "; }\n"
    (tmp_path / "program.c").write_text(source)
    subprocess.run([CLANG, "-O1", "-S", "-emit-llvm", str(tmp_path / "program.c"), "-o",
                    str(tmp_path / "program.ll")], check=True)
    assert main(["opt", str(tmp_path / "program.ll"), "-o", str(tmp_path / "out.ll")]) == 2
    message = capsys.readouterr().err
    for fragment in expected:
        assert fragment in message, message


# ---------------------------------------------------------------- without clang

# What clang -O0 emits for `__enzyme_autodiff((void*)f, enzyme_dup, x, dx, enzyme_out, s)` (trimmed),
# with f(x, s) = s * x[0]^2 + sin(s).
HAND_WRITTEN = r"""
target triple = "x86_64-pc-linux-gnu"
@enzyme_dup = external global i32, align 4
@enzyme_out = external global i32, align 4

define dso_local double @f(ptr noundef %0, double noundef %1) #0 {
  %3 = alloca ptr, align 8
  %4 = alloca double, align 8
  store ptr %0, ptr %3, align 8
  store double %1, ptr %4, align 8
  %5 = load ptr, ptr %3, align 8
  %6 = load double, ptr %5, align 8
  %7 = load double, ptr %4, align 8
  %8 = fmul double %7, %6
  %9 = fmul double %8, %6
  %10 = call double @sin(double noundef %7)
  %11 = fadd double %9, %10
  ret double %11
}

define dso_local double @driver(ptr noundef %0, ptr noundef %1, double noundef %2) #0 {
  %4 = load i32, ptr @enzyme_dup, align 4
  %5 = load i32, ptr @enzyme_out, align 4
  %6 = call double (ptr, ...) @__enzyme_autodiff(ptr noundef @f, i32 noundef %4, ptr noundef %0, ptr noundef %1, i32 noundef %5, double noundef %2)
  ret double %6
}

declare double @sin(double noundef) #1
declare double @__enzyme_autodiff(ptr noundef, ...) #1

attributes #0 = { noinline nounwind optnone uwtable "target-cpu"="x86-64" }
attributes #1 = { nounwind }
"""


def test_hand_written_clang_module_runs_without_clang():
    text = differentiate_enzyme_calls(HAND_WRITTEN)
    assert "__enzyme_autodiff(" not in text.split("declare double @__enzyme_autodiff")[0]
    module = llvm.parse_assembly(text)
    module.verify()
    engine = llvm.create_mcjit_compiler(module, target_machine(shared=False))
    engine.finalize_object()
    driver = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                              ctypes.c_double)(engine.get_function_address("driver"))
    x, dx = (ctypes.c_double * 1)(3.0), (ctypes.c_double * 1)(0.5)
    ds = driver(x, dx, 0.25)
    import math
    assert dx[0] == pytest.approx(0.5 + 2 * 0.25 * 3.0, rel=1e-15)
    assert ds == pytest.approx(9.0 + math.cos(0.25), rel=1e-15)


def test_text_surgery_helpers():
    assert llvm_text.split_top_level("ptr @f, { double, double } %x, <2 x i32> <i32 0, i32 1>") == \
        ["ptr @f", "{ double, double } %x", "<2 x i32> <i32 0, i32 1>"]
    assert llvm_text.argument_value("ptr noundef nonnull align 16 dereferenceable(24) %1", "ptr") == "%1"
    assert llvm_text.argument_value("ptr dead_on_unwind writable sret(%struct.t) align 8 %5", "ptr") == "%5"
    assert llvm_text.argument_value("ptr noundef null", "ptr") == "null"
    newer = ("declare void @g(ptr captures(none) initializes((0, 8)) %0, ptr captures(address) %1) #3\n"
             "  %c = icmp samesign ult i32 %a, %b, !dbg !7\n"
             "  call void @llvm.lifetime.start.p0(ptr %x)\n"
             "attributes #3 = { nounwind }\n!7 = !{}\n")
    older = llvm_text.for_older_llvm(newer)
    assert older == "declare void @g(ptr nocapture %0, ptr %1)\n  %c = icmp ult i32 %a, %b\n"
    marked = llvm_text.define_marker_globals("@enzyme_dup = external local_unnamed_addr global i32, align 4\n",
                                             {"enzyme_dup"})
    assert marked == "@enzyme_dup = linkonce local_unnamed_addr global i32 0, align 4\n"


def test_shufflevector_is_spelled_out_in_lanes():
    text = """
define <2 x double> @splat(double %v, <2 x double> %w) {
  %a = insertelement <2 x double> poison, double %v, i64 0
  %b = shufflevector <2 x double> %a, <2 x double> poison, <2 x i32> zeroinitializer
  %c = shufflevector <2 x double> %b, <2 x double> %w, <2 x i32> <i32 3, i32 poison>
  %d = fadd <2 x double> %b, %c
  ret <2 x double> %d
}
"""
    expanded = llvm_text.expand_shufflevectors(text)
    assert "shufflevector" not in expanded
    module = llvm.parse_assembly(expanded)
    module.verify()


# ---------------------------------------------------------------- choices, named structs, nested AD

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "c"


@needs_clang
@pytest.mark.parametrize("level", ["-O0 -ffast-math", "-O1 -ffast-math", "-O2 -ffast-math", "-O3"])
def test_fmax_floor_and_ties_under_fast_math(tmp_path, level):
    """examples/c/choices.c (a ctest at -O0 and -O2) at the levels where clang itself writes maxnum:
    fmax(|v|, 1e-12) at v = 0 has derivative 1e12, and a tie credits the element returned."""
    source = (EXAMPLES / "choices.c").read_text().replace('#include "enzyme.h"',
                                                          (EXAMPLES / "enzyme.h").read_text())
    finished = build_and_run(tmp_path, source, level)
    assert finished.stdout.count(" ok") == 25, finished.stdout


NAMED_STRUCT_GLOBAL = PRELUDE + r"""
typedef struct { double gamma, pressure; } EulerEos;
EulerEos eos = {1.4, 2.0};
double sound_speed_squared(double density) { return eos.gamma * eos.pressure / density; }
int main(void) {
    EulerEos local = {1.4, 2.0};                  /* clang: a struct-typed constant @__const.main.local */
    double rho = 0.8, h = 1e-6;
    double d = __enzyme_autodiff((void *)sound_speed_squared, rho);
    check("d c^2 / d rho", d, -local.gamma * local.pressure / (rho * rho), 1e-12);
    check("forward", __enzyme_fwddiff((void *)sound_speed_squared, rho, 1.0),
          (sound_speed_squared(rho + h) - sound_speed_squared(rho - h)) / (2 * h), 1e-6);
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_globals_of_named_struct_type_are_read(tmp_path, level):
    build_and_run(tmp_path, NAMED_STRUCT_GLOBAL, level)


NESTED = PRELUDE + r"""
double f(double x) { return x * x * x * sin(x); }
double df_forward(double x) { return __enzyme_fwddiff((void *)f, x, 1.0); }
double df_reverse(double x) { return __enzyme_autodiff((void *)f, x); }
double energy(const double *x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i] * x[i] * exp(x[i]);
    return s;
}
void gradient(const double *x, double *g, int n) {
    for (int i = 0; i < n; i++) g[i] = 0.0;
    __enzyme_autodiff((void *)energy, enzyme_dup, x, g, enzyme_const, n);
}
int main(void) {
    double x = 0.7, second = 6 * x * sin(x) + 6 * x * x * cos(x) - x * x * x * sin(x);
    check("reverse over forward", __enzyme_autodiff((void *)df_forward, x), second, 1e-13);
    check("forward over forward", __enzyme_fwddiff((void *)df_forward, x, 1.0), second, 1e-13);
    check("forward over reverse", __enzyme_fwddiff((void *)df_reverse, x, 1.0), second, 1e-13);
    check("reverse over reverse", __enzyme_autodiff((void *)df_reverse, x), second, 1e-13);
    double xs[3] = {0.1, -0.5, 0.9}, g[3], v[3] = {1.0, 2.0, 3.0}, hv[3];
    __enzyme_fwddiff((void *)gradient, enzyme_dup, xs, v, enzyme_dup, g, hv, enzyme_const, 3);
    for (int i = 0; i < 3; i++) {
        double t = xs[i];
        check("Hessian-vector product", hv[i], exp(t) * (2 + 4 * t + t * t) * v[i], 1e-13);
    }
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_nested_enzyme_calls_give_second_derivatives(tmp_path, level):
    finished = build_and_run(tmp_path, NESTED, level)
    assert finished.stdout.count(" ok") == 7


def test_enzyme_calls_in_a_cycle_are_refused():
    text = """
declare double @__enzyme_autodiff(ptr, ...)
define double @a(double %x) {
  %d = call double (ptr, ...) @__enzyme_autodiff(ptr @b, double %x)
  ret double %d
}
define double @b(double %x) {
  %d = call double (ptr, ...) @__enzyme_autodiff(ptr @a, double %x)
  ret double %d
}
"""
    from enzpy.frontend.clang import ForeignCodeError
    with pytest.raises(ForeignCodeError, match="recursive nested AD is not supported"):
        differentiate_enzyme_calls(text)
