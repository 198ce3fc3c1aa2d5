"""`enzpy opt` on large C++ modules, on Enzyme entry points it does not implement, and `--verbose`.

Issue 26: on Enzyme's `blas.cpp` / `cublas.cpp` integration tests `enzpy opt`
ran for minutes inlining the whole program before any AD, and calls to
`__enzyme_batch`, `__enzyme_fwdsplit`, ... went through to the linker.

- A generated C++ program of thousands of functions (chains of small
  functions, template instances, a table of test functions and a checking
  library its `main` calls) with one function differentiated in both modes:
  the time it takes is not asserted; what is asserted is the structure that
  bounds it. The module text is indexed once (`ModuleText`), the pre-AD
  slice holds only what the differentiated function reaches (checked with
  `ModuleText` and in the `--verbose` report), and the program linked from
  the output passes its own finite-difference checks.
- Each `__enzyme_*` entry point enzpy does not implement is refused with exit
  status 2 and a message naming the entry point and the calling function
  (C spellings and C++ template instances); so is a custom derivative
  registered for a function the derivative reaches
  (`__enzyme_register_gradient_*`), which enzpy would otherwise ignore.
- `--verbose` prints each stage with its time on stderr.

Without clang-19 the clang tests skip; the text-level tests run anyway.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from enzpy.cli import main
from enzpy.frontend import llvm_text
from enzpy.frontend.clang import ForeignCodeError, differentiate_enzyme_calls
from enzpy.frontend.module_text import ModuleText

CLANG = shutil.which("clang-19")
CLANGXX = shutil.which("clang++-19")
needs_clang = pytest.mark.skipif(CLANG is None or CLANGXX is None,
                                 reason="clang-19 / clang++-19 are not installed (apt-get install clang-19; "
                                        ".ci/run installs it)")

GROUPS, DEPTH, TARGET = 220, 10, 137
"""Groups of DEPTH chained functions; `model` (the differentiated function) uses group TARGET."""


@pytest.fixture(autouse=True)
def no_dump_environment(monkeypatch):
    monkeypatch.delenv("ENZPY_DUMP_AFTER", raising=False)
    monkeypatch.delenv("ENZPY_DUMP_DIR", raising=False)


def large_program() -> str:
    """C++: GROUPS x (DEPTH chained functions, two template instances, a test) and a checking main."""
    parts = [r"""
#include <cmath>
#include <cstdio>
#include <string>
extern int enzyme_dup, enzyme_const;
template <typename... T> double __enzyme_autodiff(void *, T...);
template <typename... T> double __enzyme_fwddiff(void *, T...);
static int failures = 0;
static std::string report;
void check(const char *what, double got, double expected, double tolerance) {
    double scale = std::fabs(expected) > 1.0 ? std::fabs(expected) : 1.0;
    bool ok = std::fabs(got - expected) <= tolerance * scale;
    report += std::string(what) + (ok ? ": ok\n" : ": MISMATCH\n");
    std::printf("%s: %.12g vs %.12g %s\n", what, got, expected, ok ? "ok" : "MISMATCH");
    failures += !ok;
}
template <int K> struct Poly {
    static double eval(double x) { return Poly<K - 1>::eval(x) * x + 1.0 / (K + 1); }
};
template <> struct Poly<0> { static double eval(double) { return 1.0; } };
"""]
    for g in range(GROUPS):
        for d in range(DEPTH):
            inner = f"chain_{g}_{d - 1}(x * 0.5 + {d}e-3)" if d else "x"
            parts.append(f"double chain_{g}_{d}(double x) {{ return std::sin({inner}) * {1 + (g * 7 + d) % 5}"
                         f" + x * x * 0.01; }}")
        parts.append(f"template <typename T> T group_{g}(T x) {{ return T(chain_{g}_{DEPTH - 1}(double(x)))"
                     f" + Poly<{g % 7 + 1}>::eval(x); }}")
        parts.append(f"template double group_{g}<double>(double);")
        parts.append(f"template float group_{g}<float>(float);")
        parts.append(f"void test_{g}() {{ char name[32]; std::snprintf(name, sizeof name, \"group %d\", {g});"
                     f" check(name, group_{g}(0.25), group_{g}(0.25), 0.0); }}")
    parts.append("typedef void (*test_function)();")
    parts.append("test_function tests[] = {" + ", ".join(f"test_{g}" for g in range(GROUPS)) + "};")
    parts.append(rf"""
double model(const double *x, int n) {{
    double total = 0.0;
    for (int i = 0; i < n; i++) total += chain_{TARGET}_{DEPTH - 1}(x[i]) * Poly<5>::eval(x[i]);
    return total;
}}
int main() {{
    for (unsigned i = 0; i < sizeof tests / sizeof tests[0]; i++) tests[i]();
    enum {{ N = 5 }};
    double x[N], dx[N] = {{0}}, v[N], up[N], down[N], h = 1e-6;
    for (int i = 0; i < N; i++) {{ x[i] = 0.3 * i - 0.4; v[i] = 1.0 - 0.2 * i; }}
    __enzyme_autodiff((void *)model, enzyme_dup, x, dx, enzyme_const, (int)N);
    for (int i = 0; i < N; i++) {{
        double saved = x[i];
        x[i] = saved + h; double plus = model(x, N);
        x[i] = saved - h; double minus = model(x, N);
        x[i] = saved;
        check("reverse", dx[i], (plus - minus) / (2 * h), 1e-6);
    }}
    for (int i = 0; i < N; i++) {{ up[i] = x[i] + h * v[i]; down[i] = x[i] - h * v[i]; }}
    double tangent = __enzyme_fwddiff((void *)model, enzyme_dup, x, v, enzyme_const, (int)N);
    check("forward", tangent, (model(up, N) - model(down, N)) / (2 * h), 1e-6);
    return failures;
}}
""")
    return "\n".join(parts)


MODEL = "_Z5modelPKdi"


def _is_model_part(name: str) -> bool:
    """What `model` may reach: itself, its chain (`chain_TARGET_d`) and Poly<k>::eval instances."""
    return name == MODEL or re.fullmatch(rf"_Z\d+chain_{TARGET}_\d+d", name) is not None \
        or name.startswith("_ZN4PolyILi")


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_large_cpp_module_slices_only_what_the_derivative_reaches(tmp_path, capsys, level):
    source, primal, differentiated, executable = (tmp_path / name for name in
                                                  ("large.cpp", "large.ll", "large.d.ll", "large.exe"))
    source.write_text(large_program())
    subprocess.run([CLANGXX, level, "-S", "-emit-llvm", str(source), "-o", str(primal)], check=True)
    text = primal.read_text()

    index = ModuleText(text)
    assert len(index.functions) >= 2000, "the module is not large: test is moot"
    reached = index.reach([MODEL]) & index.functions.keys()
    assert MODEL in reached and all(_is_model_part(name) for name in reached), sorted(reached)
    assert len(reached) <= DEPTH + 8
    # What the pre-AD pipeline gets: exactly those definitions; `main`, the test table and the other
    # groups are not in it.
    piece = ModuleText(index.slice([MODEL]))
    assert set(piece.functions) == reached
    assert "main" not in piece.functions and "tests" not in piece.globals
    assert len(piece.lines) < len(index.lines) // 10
    # Nothing reaches `main`; `main` reaches `model` (through the Enzyme calls), not the other way round.
    assert index.reaching({"main"}) == {"main"} and "main" in index.reaching({MODEL})

    assert main(["opt", str(primal), "-o", str(differentiated), "--verbose"]) == 0
    report = capsys.readouterr().err
    slices = re.findall(r"^enzpy:   slice: (\d+) of (\d+) functions, (\d+) lines: \d+\.\d\d s$", report, re.M)
    assert [(int(k), int(n)) for k, n, _ in slices] == [(len(reached), len(index.functions))] * 2, report
    assert all(int(lines) == len(piece.lines) - 1 for _, _, lines in slices), report
    assert re.search(r"^enzpy: \[1/2\] reverse @_Z5modelPKdi \(called in @main\)$", report, re.M), report
    assert re.search(r"^enzpy: \[2/2\] forward @_Z5modelPKdi \(called in @main\)$", report, re.M), report
    assert len(re.findall(r"^enzpy: index module: ", report, re.M)) == 1, report   # one round, indexed once
    assert len(re.findall(r"pre-AD always_inliner: ", report, re.M)) == 2, report  # once per derivative

    assert not llvm_text.enzyme_call_lines(differentiated.read_text())      # both calls were rewritten
    subprocess.run([CLANGXX, level, str(differentiated), "-o", str(executable), "-lm"], check=True)
    finished = subprocess.run([str(executable)], capture_output=True, text=True)
    assert finished.returncode == 0 and "MISMATCH" not in finished.stdout, finished.stdout[-2000:]
    assert finished.stdout.count("reverse: ") == 5 and finished.stdout.count("forward: ") == 1
    assert finished.stdout.count(" ok") == GROUPS + 6


# ---------------------------------------------------------------- entry points enzpy does not implement

SQUARE = "double square(double x) { return x * x; }\n" \
         "double sum_of_squares(double *x, int n) { double s = 0; for (int i = 0; i < n; i++) s += x[i] * x[i];" \
         " return s; }\n"
NOINLINE = "__attribute__((noinline)) "

# entry point -> (declarations, the calling function's definition, its name, how main calls it)
UNKNOWN_IN_C = {
    "__enzyme_batch": (
        "extern int enzyme_width, enzyme_vector;\ntypedef struct { double a, b; } pair;\n"
        "pair __enzyme_batch(void *, ...);",
        "pair batched(double x, double y) {"
        " return __enzyme_batch((void *)square, enzyme_width, 2, enzyme_vector, x, y); }",
        "batched", "batched(1.0, 2.0).a"),
    "__enzyme_error_estimate": (
        "double __enzyme_error_estimate(void *, ...);",
        "double estimate(double x) { return __enzyme_error_estimate((void *)square, x, 0.0); }",
        "estimate", "estimate(3.0)"),
    "__enzyme_truncate_mem_func": (
        "typedef double (*unary)(double);\nunary __enzyme_truncate_mem_func(void *, int, int);",
        "double truncated(double x) { return __enzyme_truncate_mem_func((void *)square, 64, 32)(x); }",
        "truncated", "truncated(3.0)"),
    "__enzyme_truncate_op_func": (
        "typedef double (*unary)(double);\nunary __enzyme_truncate_op_func(void *, int, int);",
        "double truncated_ops(double x) { return __enzyme_truncate_op_func((void *)square, 64, 32)(x); }",
        "truncated_ops", "truncated_ops(3.0)"),
    "__enzyme_truncate_mem_value": (
        "double __enzyme_truncate_mem_value(double, int, int);",
        "double narrowed(double x) { return __enzyme_truncate_mem_value(x, 64, 32); }",
        "narrowed", "narrowed(3.0)"),
    "__enzyme_virtualreverse": (
        "void __enzyme_virtualreverse(void *, ...);",
        "void reverse_pass(double *x, double *dx) { __enzyme_virtualreverse((void *)sum_of_squares, x, dx, 2); }",
        "reverse_pass", "(reverse_pass(x, dx), 0)"),
    "__enzyme_fwdsplit": (
        "double __enzyme_fwdsplit(void *, ...);",
        "double tangent_pass(double x) { return __enzyme_fwdsplit((void *)square, x, 1.0, (void *)0); }",
        "tangent_pass", "tangent_pass(2.0)"),
}


def _compile(tmp_path: Path, source: str, level: str, cpp: bool = False) -> Path:
    program, primal = tmp_path / ("program.cpp" if cpp else "program.c"), tmp_path / "program.ll"
    program.write_text(source)
    subprocess.run([CLANGXX if cpp else CLANG, level, "-S", "-emit-llvm", str(program), "-o", str(primal)],
                   check=True)
    return primal


def _refused(capsys, primal: Path) -> str:
    output = primal.with_suffix(".d.ll")
    assert main(["opt", str(primal), "-o", str(output)]) == 2
    assert not output.exists(), "a refused module must not be written"
    message = capsys.readouterr().err
    assert message.startswith("enzpy: error: ") and message.count("\n") == 1, message
    return message


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
@pytest.mark.parametrize("entry_point", sorted(UNKNOWN_IN_C))
def test_unknown_entry_point_is_refused_naming_it_and_its_caller(tmp_path, capsys, entry_point, level):
    declarations, caller, caller_name, use = UNKNOWN_IN_C[entry_point]
    source = (f"#include <stdio.h>\n{declarations}\n{SQUARE}{NOINLINE}{caller}\n"
              f"int main(void) {{ double x[2] = {{1, 2}}, dx[2] = {{0}}; printf(\"%g\\n\", (double){use});"
              f" return 0; }}\n")
    message = _refused(capsys, _compile(tmp_path, source, level))
    assert f"@{caller_name} calls {entry_point}," in message, message
    assert "which enzpy does not implement" in message and "__enzyme_autodiff, __enzyme_fwddiff" in message


CPP_TEMPLATE = r"""
#include <cstdio>
extern int enzyme_width, enzyme_vector;
struct Pair { double a, b; };
template <typename... T> Pair __enzyme_batch(void *, T...);
template <typename... T> double __enzyme_fwdsplit(void *, T...);
double square(double x) { return x * x; }
namespace physics {
__attribute__((noinline)) Pair vecsquare(double x, double y) {
    return __enzyme_batch<int, int, int, double, double>((void *)square, enzyme_width, 2, enzyme_vector, x, y);
}
}
__attribute__((noinline)) double record(double *x, double *dx) {
    return __enzyme_fwdsplit<double, double, void *>((void *)square, *x, *dx, (void *)0);
}
int main() {
    double x = 1, dx = 0;
    std::printf("%g %g\n", physics::vecsquare(1.0, 2.0).a, record(&x, &dx));
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_cpp_template_instances_of_unknown_entry_points_are_refused(tmp_path, capsys, level):
    primal = _compile(tmp_path, CPP_TEMPLATE, level, cpp=True)
    batch_symbol = next(m for m in re.findall(r"@(_Z\w+)\(", primal.read_text()) if "__enzyme_batch" in m)
    message = _refused(capsys, primal)
    # The first call (module order) is named with its mangled symbol and caller; the other is listed.
    assert f"@_ZN7physics9vecsquareEdd calls __enzyme_batch (@{batch_symbol})," in message, message
    assert "(batched (vector) derivatives)" in message
    assert "also __enzyme_fwdsplit in @_Z6recordPdS_" in message, message


@needs_clang
def test_an_unknown_entry_point_beside_autodiff_still_refuses_the_module(tmp_path, capsys):
    source = (f"{SQUARE}extern int enzyme_dup;\ndouble __enzyme_autodiff(void *, ...);\n"
              "double __enzyme_error_estimate(void *, ...);\n"
              "int main(void) { double e = __enzyme_error_estimate((void *)square, 3.0, 0.0);"
              " return (int)(__enzyme_autodiff((void *)square, 2.0) + e); }\n")
    message = _refused(capsys, _compile(tmp_path, source, "-O0"))
    assert "@main calls __enzyme_error_estimate," in message and "(floating-point error estimation)" in message


CUSTOM_DERIVATIVE = r"""
#include <stdio.h>
double __enzyme_autodiff(void *, ...);
__attribute__((noinline)) void square_(const double *src, double *dest) { *dest = *src * *src; }
void gradient_square_(const double *src, double *d_src, const double *dest, const double *d_dest) {
    *d_src += 100.0 * *d_dest;                  /* deliberately not 2 x: the program asks for this rule */
}
void *__enzyme_register_gradient_square[] = {(void *)square_, (void *)0, (void *)gradient_square_};
double square(double x) { double y; square_(&x, &y); return y; }
double cube(double x) { return x * x * x; }
int main(void) {
    printf("%g %g\n", __enzyme_autodiff((void *)square, 3.0), __enzyme_autodiff((void *)cube, 2.0));
    return 0;
}
"""


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_a_registered_custom_derivative_is_refused_not_ignored(tmp_path, capsys, level):
    message = _refused(capsys, _compile(tmp_path, CUSTOM_DERIVATIVE, level))
    assert "@square_, which @square reaches, has a custom derivative (@__enzyme_register_gradient_square)" \
        in message, message
    assert "[differentiating @square in reverse mode]" in message
    # Without the call that reaches it, the registration is only a global the program defines.
    source = CUSTOM_DERIVATIVE.replace("__enzyme_autodiff((void *)square, 3.0)", "square(3.0)")
    primal = _compile(tmp_path, source, level)
    assert main(["opt", str(primal), "-o", str(tmp_path / "out.ll")]) == 0
    subprocess.run([CLANG, level, str(tmp_path / "out.ll"), "-o", str(tmp_path / "out.exe")], check=True)
    finished = subprocess.run([str(tmp_path / "out.exe")], capture_output=True, text=True, check=True)
    assert finished.stdout.split() == ["9", "12"]


# Without clang: the same refusal on hand-written text, and the names C++ gives the entry points.
UNKNOWN_TEXT = """
declare ptr @_Z17__enzyme_fwdsplitIJPdS0_EEPvS1_DpT_(ptr, ...)
declare void @__enzyme_virtualreverse(ptr, ...)
declare double @__enzyme_autodiff(ptr, ...)
define double @f(double %x) {
  %y = fmul double %x, %x
  ret double %y
}
define ptr @"record tape"(ptr %x, ptr %dx) {
  %t = call ptr (ptr, ...) @_Z17__enzyme_fwdsplitIJPdS0_EEPvS1_DpT_(ptr @f, ptr %x, ptr %dx)
  ret ptr %t
}
define void @replay(ptr %x, ptr %dx, ptr %t) {
  call void (ptr, ...) @__enzyme_virtualreverse(ptr @f, ptr %x, ptr %dx, ptr %t)
  call void (ptr, ...) @__enzyme_virtualreverse(ptr @f, ptr %x, ptr %dx, ptr %t)
  ret void
}
define double @gradient(double %x) {
  %d = call double (ptr, ...) @__enzyme_autodiff(ptr @f, double %x)
  ret double %d
}
"""


def test_unknown_entry_points_in_text_are_found_with_their_callers():
    calls = llvm_text.unknown_enzyme_calls(UNKNOWN_TEXT)
    assert [(c.entry_point, c.caller) for c in calls] == [
        ("__enzyme_fwdsplit", "record tape"), ("__enzyme_virtualreverse", "replay"),
        ("__enzyme_virtualreverse", "replay")]
    assert calls[0].symbol == "_Z17__enzyme_fwdsplitIJPdS0_EEPvS1_DpT_"
    with pytest.raises(ForeignCodeError) as raised:
        differentiate_enzyme_calls(UNKNOWN_TEXT)
    message = str(raised.value)
    assert message.startswith("@record tape calls __enzyme_fwdsplit (@_Z17__enzyme_fwdsplit"), message
    assert "(split forward mode)" in message and message.endswith("; also __enzyme_virtualreverse in @replay"), message


def test_entry_point_names_from_mangled_symbols():
    assert llvm_text.entry_point_name("_Z14__enzyme_batchIJPdS0_EEdPvDpT_") == "__enzyme_batch"
    assert llvm_text.entry_point_name("_Z27__enzyme_truncate_mem_valuez") == "__enzyme_truncate_mem_value"
    assert llvm_text.entry_point_name("_ZN2ns17__enzyme_fwdsplitEPvz") == "__enzyme_fwdsplit"
    assert llvm_text.entry_point_name("__enzyme_error_estimate") == "__enzyme_error_estimate"
    # Implemented entry points, in C and as template instances, are not unknown.
    assert not llvm_text.unknown_enzyme_calls(
        "define void @g() {\n  call void (ptr, ...) @_Z17__enzyme_autodiffIdJdEET_PvDpT0_(ptr @g)\n"
        "  call double (ptr, ...) @__enzyme_fwddiff_pair(ptr @g)\n  ret void\n}\n")


# ---------------------------------------------------------------- --verbose

HAND_WRITTEN = r"""
target triple = "x86_64-pc-linux-gnu"
@enzyme_dup = external global i32, align 4

define double @f(ptr noundef %0, double noundef %1) {
  %3 = load double, ptr %0, align 8
  %4 = fmul double %1, %3
  %5 = fmul double %4, %3
  ret double %5
}

define double @unrelated(double %x) {
  %y = fadd double %x, 1.0
  ret double %y
}

define double @driver(ptr noundef %0, ptr noundef %1, double noundef %2) {
  %4 = load i32, ptr @enzyme_dup, align 4
  %5 = call double (ptr, ...) @__enzyme_autodiff(ptr noundef @f, i32 noundef %4, ptr noundef %0, ptr noundef %1, double noundef %2)
  %6 = call double @unrelated(double %5)
  ret double %6
}

declare double @__enzyme_autodiff(ptr noundef, ...)
"""

STAGE = r"\d+\.\d\d s$"


def test_verbose_prints_each_stage_with_its_time_on_stderr(tmp_path, capsys):
    primal, differentiated = tmp_path / "program.ll", tmp_path / "program.d.ll"
    primal.write_text(HAND_WRITTEN)
    assert main(["opt", str(primal), "-o", str(differentiated)]) == 0
    assert capsys.readouterr().err == ""                         # silent without --verbose
    assert main(["opt", str(primal), "-o", str(differentiated), "--verbose"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert all(line.startswith("enzpy: ") for line in lines), captured.err
    expected = [rf"index module: \d+ lines, 3 functions: {STAGE}", rf"read Enzyme calls: 1 calls: {STAGE}",
                r"\[1/1\] reverse @f \(called in @driver\)$", rf"  slice: 1 of 3 functions, \d+ lines: {STAGE}",
                rf"  pre-AD always_inliner: {STAGE}", rf"  read: \d+ functions: {STAGE}",
                rf"  reverse mode: {STAGE}", rf"  post-AD \w+: {STAGE}",
                rf"rewrite calls and append derivatives: {STAGE}", rf"verify the output: {STAGE}",
                rf"enzpy opt: {STAGE}"]
    position = 0
    for pattern in expected:              # in this order, other lines (more pipeline stages) between
        while position < len(lines) and not re.match("enzpy: " + pattern, lines[position]):
            position += 1
        assert position < len(lines), f"no line matching {pattern!r} in order:\n{captured.err}"
    assert lines[-1].startswith("enzpy: enzpy opt: ")
    assert "@unrelated" not in "\n".join(line for line in lines if "slice" in line)


def test_grad_verbose_prints_its_stages(tmp_path, capsys):
    primal, differentiated = tmp_path / "program.ll", tmp_path / "program.d.ll"
    primal.write_text(HAND_WRITTEN)
    assert main(["grad", str(primal), "--function", "f", "-o", str(differentiated), "--verbose"]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"^enzpy: slice: 1 of 3 functions, \d+ lines: {STAGE}", err, re.M), err
    assert re.search(rf"^enzpy: append and verify: {STAGE}", err, re.M), err
    assert re.search(rf"^enzpy: enzpy grad: {STAGE}", err.splitlines()[-1]), err
