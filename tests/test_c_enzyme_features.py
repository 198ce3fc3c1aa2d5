"""Issue 24: C / C++ programs written for Enzyme that enzpy refused, or whose requests it ignored.

1. Globals of named struct type (`P params = {...}`, clang's `@__const.main.x`)
   and C++ files including <iostream> (its `std::ios_base::Init` object) read.
2. Named struct types whatever their spelling: quoted C++ names
   (`%"struct.std::pair"`), the `.N` suffixes clang gives a second type of the
   same name (`%"struct.std::pair.0"`, `%struct.anon.2`), printed before the
   types they hold (LLVM prints the outer struct first).
3. Each Enzyme feature enzpy does not implement is an error naming the feature
   and the function (exit 2): custom derivatives (`__enzyme_register_gradient_*`,
   `__enzyme_register_derivative_*`), `__enzyme_function_like`,
   `__enzyme_inactivefn`, the gradient logger (`enzymeLogGrad`), split mode
   (`__enzyme_virtualreverse`, `__enzyme_fwdsplit`); at -O1 and above also when
   clang may have inlined the registered function already. What enzpy does
   the way Enzyme does is accepted: `__enzyme_inactive_global` (enzpy gives no
   global a shadow), hints such as `__enzyme_nofree`.
4. Markers passed by address (`&enzyme_const`, C++ templates with `int *`
   parameters) and a `void` declaration of `__enzyme_autodiff` with
   `enzyme_out` arguments (the derivative is dropped, the shadows filled).

Each program is compiled by clang-19 at -O0 and -O2, differentiated by
`enzpy opt`, linked and run, and checks its derivatives against central
finite differences (`build_and_run` of tests/test_c_frontend.py). Without
clang-19 these skip; the reader's named-type order, markers by address with
a void declaration (run through MCJIT) and registrations spelled as C++ and
Enzyme's plugin spell them are also tested on hand-written text.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import llvmlite.binding as llvm
import pytest

from enzpy.cli import main
from enzpy.errors import UnsupportedIRError
from enzpy.ir.reader import parse_module
from tests.test_c_frontend import CLANG, CLANGXX, PRELUDE, build_and_run, needs_clang

needs_clangxx = pytest.mark.skipif(CLANGXX is None, reason="clang++-19 is not installed (comes with the clang-19 "
                                                           "package; .ci/run installs it)")
LEVELS = ["-O0", "-O2"]

# C++ programs check themselves the way PRELUDE's `check` does.
CPP_PRELUDE = r"""
#include <cmath>
#include <cstdio>
extern int enzyme_dup, enzyme_const, enzyme_out, enzyme_dupnoneed;
double __enzyme_autodiff(void *, ...);
double __enzyme_fwddiff(void *, ...);
static int failures = 0;
static void check(const char *what, double got, double expected, double tolerance) {
    double scale = std::fabs(expected) > 1.0 ? std::fabs(expected) : 1.0;
    bool ok = std::fabs(got - expected) <= tolerance * scale;
    std::printf("%s: %.12g vs %.12g %s\n", what, got, expected, ok ? "ok" : "MISMATCH");
    failures += !ok;
}
"""


def run_cpp(tmp_path: Path, source: str, level: str) -> subprocess.CompletedProcess:
    return build_and_run(tmp_path, CPP_PRELUDE + source, level, compiler=CLANGXX, suffix=".cpp")


def refusal(tmp_path: Path, capsys, source: str, level: str, cpp: bool = False) -> str:
    """The one-line error `enzpy opt` gives the program (asserting exit status 2 and no output)."""
    program = tmp_path / ("program.cpp" if cpp else "program.c")
    program.write_text(source)
    primal, output = tmp_path / "program.ll", tmp_path / "program.d.ll"
    subprocess.run([CLANGXX if cpp else CLANG, level, "-S", "-emit-llvm", str(program), "-o", str(primal)],
                   check=True, capture_output=True)
    assert main(["opt", str(primal), "-o", str(output)]) == 2
    assert not output.exists()
    message = capsys.readouterr().err
    assert message.startswith("enzpy: error: ") and message.count("\n") == 1, message
    return message


# ---------------------------------------------------------------- 1. struct-typed globals, <iostream>

STRUCT_GLOBALS = PRELUDE + r"""
typedef struct { double a, b; } P;
P params = {2.0, 3.0};
static const P table[2] = {{0.5, 1.0}, {1.5, -2.0}};
double f(double x) { return params.a * x * x + params.b * x + table[1].a * table[1].b; }
double g(const P *p, double x) { return p->a * sin(x) * p->b; }
int main(void) {
    P local = {1.25, -0.5}, dlocal = {0.0, 0.0};     /* a struct initializer: clang's @__const.main.local */
    double x = local.a, h = 1e-6;
    check("df/dx", __enzyme_autodiff((void *)f, x), 2 * params.a * x + params.b, 1e-12);
    check("forward df/dx", __enzyme_fwddiff((void *)f, x, 1.0), (f(x + h) - f(x - h)) / (2 * h), 1e-6);
    double dx = __enzyme_autodiff((void *)g, enzyme_dup, &local, &dlocal, enzyme_out, 0.3);
    check("dg/dx", dx, local.a * cos(0.3) * local.b, 1e-12);
    check("dg/dp.a", dlocal.a, sin(0.3) * local.b, 1e-12);
    check("dg/dp.b", dlocal.b, local.a * sin(0.3), 1e-12);
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", LEVELS)
def test_c_globals_of_named_struct_type_and_struct_initializers(tmp_path, level):
    finished = build_and_run(tmp_path, STRUCT_GLOBALS, level)
    assert finished.stdout.count(" ok") == 5
    text = (tmp_path / f"program_{level[1:]}.ll").read_text()
    assert "%struct.P = type { double, double }" in text and "@__const.main.local = " in text


IOSTREAM = r"""
#include <iostream>
double square(double x) { return x * x; }
int main() {
    double d = __enzyme_autodiff((void *)square, 3.0);
    std::cout << "d square / dx = " << d << std::endl;
    check("d x*x / dx", d, 6.0, 0.0);
    check("forward", __enzyme_fwddiff((void *)square, 3.0, 1.0), 6.0, 0.0);
    return failures;
}
"""


@needs_clangxx
@pytest.mark.parametrize("level", LEVELS)
def test_cpp_with_iostream(tmp_path, level):
    finished = run_cpp(tmp_path, IOSTREAM, level)
    assert finished.stdout.count(" ok") == 2
    assert "std::ios_base::Init" in (tmp_path / f"program_{level[1:]}.ll").read_text()


# ---------------------------------------------------------------- 2. renamed C++ struct types

RENAMED_TYPES = r"""
#include <iostream>
#include <utility>
namespace model { struct Inner { double a, b; }; struct Outer { Inner inner; double c; }; }
std::pair<std::pair<double, double>, double> config = {{2.0, 3.0}, 4.0};   /* %"struct.std::pair.0" */
model::Outer parameters = {{1.5, 0.5}, 2.0};                               /* %"struct.model::Outer" */
struct { double a; } first = {2.0};                                        /* %struct.anon */
struct { struct { double b; } in; double c; } second = {{3.0}, 4.0};       /* %struct.anon.N */
double f(double x) {
    // Through volatile pointers, so that -O2 keeps the struct-typed globals in the derivative's code.
    std::pair<std::pair<double, double>, double> *volatile p = &config;
    model::Outer *volatile q = &parameters;
    return p->first.first * x * x + p->first.second * x + p->second + q->inner.a * q->c * x
           + first.a * second.in.b * second.c * std::sin(x);
}
int main() {
    double x = 1.25, h = 1e-6;
    double expected = 2 * 2.0 * x + 3.0 + 1.5 * 2.0 + 2.0 * 3.0 * 4.0 * std::cos(x);
    check("df/dx", __enzyme_autodiff((void *)f, x), expected, 1e-12);
    check("forward", __enzyme_fwddiff((void *)f, x, 1.0), (f(x + h) - f(x - h)) / (2 * h), 1e-6);
    std::cout << "done" << std::endl;
    return failures;
}
"""


@needs_clangxx
@pytest.mark.parametrize("level", LEVELS)
def test_renamed_and_nested_cpp_struct_types(tmp_path, level):
    run_cpp(tmp_path, RENAMED_TYPES, level)
    text = (tmp_path / f"program_{level[1:]}.ll").read_text()
    assert '%"struct.std::pair.0" = type { %"struct.std::pair", double }' in text, "clang named it otherwise"
    assert '%"class.std::basic_ios" = type' in text


# LLVM prints a struct before the structs it holds; an opaque type nobody reads is no error.
OUTER_FIRST = r"""
%"class.std::basic_ostream" = type { ptr, %"class.std::basic_ios" }
%"class.std::basic_ios" = type { %"class.std::ios_base", ptr, i8, [2 x %struct.Foo.0] }
%"class.std::ios_base" = type { ptr, i64, %"struct.std::ios_base::_Words" }
%"struct.std::ios_base::_Words" = type { ptr, i64 }
%struct.Foo.0 = type { double, %"struct.a\22b" }
%"struct.a\22b" = type { i32 }
%struct.never_defined = type opaque
@stream = global %"class.std::basic_ostream" zeroinitializer
@"quoted name" = global %struct.Foo.0 { double 1.0, %"struct.a\22b" { i32 2 } }
define double @first(ptr %p) {
  %a = getelementptr %"class.std::basic_ios", ptr %p, i64 0, i32 3, i64 1, i32 0
  %v = load double, ptr %a
  ret double %v
}
"""


def test_named_types_are_read_after_the_types_they_hold():
    module = parse_module(OUTER_FIRST)
    ostream = module.named_structs["class.std::basic_ostream"]
    ios = ostream.elements[1]
    assert ios.name == "class.std::basic_ios" and ios.elements[0].name == "class.std::ios_base"
    assert ios.elements[3].element.name == "struct.Foo.0"
    assert module.named_structs["struct.Foo.0"].elements[1].name == 'struct.a"b'
    assert "struct.never_defined" not in module.named_structs
    # Round trip: the written module is what LLVM reads back.
    from enzpy.ir import write_module
    written = write_module(module)
    llvm.parse_assembly(written).verify()
    assert parse_module(written).named_structs.keys() == module.named_structs.keys()


def test_an_opaque_type_is_refused_where_it_is_used():
    text = "%struct.hidden = type opaque\n@h = external global %struct.hidden\n" \
           "define ptr @address() {\n  ret ptr @h\n}\n"
    with pytest.raises(UnsupportedIRError, match=r"opaque struct type %struct.hidden is not supported"):
        parse_module(text)


# ---------------------------------------------------------------- 3. Enzyme features: named errors

FEATURES = r"""
#include <stdio.h>
#include <math.h>
double __enzyme_autodiff(void *, ...);
double g(double x) { return x * x; }
void g_gradient(double x, double *dx, double seed) { *dx += 100 * seed; }
void *__enzyme_register_gradient_g[3] = {(void *)g, (void *)0, (void *)g_gradient};
double h(double x) { return 2 * x; }
double h_tangent(double x, double dx) { return 7 * dx; }
void *__enzyme_register_derivative_h[2] = {(void *)h, (void *)h_tangent};
double my_sin(double x) { return x - x * x * x / 6; }
void *__enzyme_function_like[2] = {(void *)my_sin, "sin"};
double logged(double x) { printf("%g\n", x); return 3 * x; }
void *__enzyme_inactivefn[1] = {(void *)logged};
double uses_g(double x) { return g(x) + 1; }
double uses_h(double x) { return h(x) * x; }
double uses_my_sin(double x) { return my_sin(x); }
double uses_logged(double x) { return logged(x) * x; }
double unrelated(double x) { return x * x * x; }
"""
PRINT_MAIN = 'int main(void) { printf("%g\\n", __enzyme_autodiff((void *)DIFFERENTIATED, 1.5)); return 0; }\n'
CHECK_MAIN = 'int main(void) { check("d x^3", __enzyme_autodiff((void *)unrelated, 1.5), 6.75, 1e-12); ' \
             'return failures; }\n'

# differentiated function -> (registered function, what the message says it is)
REGISTERED = {
    "uses_g": ("g", "has a custom derivative (@__enzyme_register_gradient_g)"),
    "uses_h": ("h", "has a custom forward derivative (@__enzyme_register_derivative_h)"),
    "uses_my_sin": ("my_sin", "is declared to behave like sin (@__enzyme_function_like)"),
    "uses_logged": ("logged", "is marked inactive (enzyme_inactive) (@__enzyme_inactivefn)"),
}


def _only(source: str, keep: str) -> str:
    """FEATURES with only the registration of `keep` (the others would be refused first at -O2)."""
    lines = [line for line in source.split("\n") if not line.startswith("void *__enzyme_")
             or f"(void *){keep}," in line or f"(void *){keep}}}" in line]
    return "\n".join(lines)


@needs_clang
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("differentiated", sorted(REGISTERED))
def test_each_registration_is_refused_naming_it_and_the_function(tmp_path, capsys, level, differentiated):
    registered, meaning = REGISTERED[differentiated]
    source = _only(FEATURES, registered) + PRINT_MAIN.replace("DIFFERENTIATED", differentiated)
    message = refusal(tmp_path, capsys, source, level)
    assert f"@{registered}" in message and meaning in message, message
    assert "which enzpy does not implement" in message
    assert f"[differentiating @{differentiated} in reverse mode]" in message
    if level == "-O0":                                   # no inlining: the call is there to see
        assert f"@{registered}, which @{differentiated} reaches, {meaning}" in message, message


@needs_clang
def test_registrations_the_derivative_cannot_reach_are_accepted_at_O0(tmp_path):
    """-O0: every function is noinline, so what the derivative reaches is exact."""
    finished = build_and_run(tmp_path, PRELUDE + FEATURES + CHECK_MAIN, "-O0")
    assert finished.stdout.count(" ok") == 1


@needs_clang
def test_a_registered_function_clang_may_have_inlined_is_refused(tmp_path, capsys):
    """-O2: clang inlines g into uses_g before enzpy reads the module, so no call to g is left to see;
    a registered function that is not noinline refuses every derivative."""
    source = _only(FEATURES, "g")
    message = refusal(tmp_path, capsys, source + PRINT_MAIN.replace("DIFFERENTIATED", "unrelated"), "-O2")
    assert "@g has a custom derivative (@__enzyme_register_gradient_g)" in message, message
    assert "clang may have inlined @g" in message and "__attribute__((noinline))" in message
    # noinline makes what the derivative reaches exact again.
    kept = source.replace("double g(double x)", "__attribute__((noinline)) double g(double x)")
    finished = build_and_run(tmp_path, PRELUDE + kept + CHECK_MAIN, "-O2")
    assert finished.stdout.count(" ok") == 1


LOGGER = PRELUDE + r"""
int logged = 0;
void enzymeLogGrad(double result, double gradient, const char *opcode, const char *callee, const char *module,
                   const char *function, unsigned block, unsigned instruction, unsigned count, double *operands) {
    logged++;
}
double square(double x) { return x * x; }
int main(void) { check("d x^2", __enzyme_autodiff((void *)square, 3.0), 6.0, 0.0); return logged == 0; }
"""


@needs_clang
@pytest.mark.parametrize("level", LEVELS)
def test_the_gradient_logger_is_refused(tmp_path, capsys, level):
    message = refusal(tmp_path, capsys, LOGGER, level)
    assert "@enzymeLogGrad, Enzyme's gradient logger" in message, message
    assert "[differentiating @square in reverse mode]" in message


SPLIT_MODE = PRELUDE + r"""
void *__enzyme_augmentfwd(void *, ...);
double __enzyme_reverse(void *, ...);
__attribute__((noinline)) double square(double x) { return x * x; }
__attribute__((noinline)) void *record(double x) { return __enzyme_augmentfwd((void *)square, x); }
__attribute__((noinline)) double replay(double x, void *tape) { return __enzyme_reverse((void *)square, x, 1.0, tape); }
int main(void) { void *tape = record(3.0); check("d x^2 / d x", replay(3.0, tape), 6.0, 1e-15); return failures; }
"""


@needs_clang
@pytest.mark.parametrize("level", LEVELS)
def test_split_mode_in_wrappers_the_program_calls(tmp_path, level):
    """Enzyme's own shape of split mode (frontend/split_mode.py; examples/c/split_mode.c has more):
    the tape returned by the augmented call, consumed by the reverse call in another function."""
    finished = build_and_run(tmp_path, SPLIT_MODE, level)
    assert finished.stdout.count(" ok") == 1, finished.stdout


INACTIVE_GLOBAL = PRELUDE + r"""
double scale = 2.0, work[4];
void *__enzyme_inactive_global = &scale;          /* what enzpy does to every global: no shadow */
void *__enzyme_nofree[1] = {(void *)sin};         /* a hint: changes no derivative */
double f(double x) { return scale * x * sin(x); }
double stores(double x, int n) {                  /* a derivative through an inactive global */
    for (int i = 0; i < n; i++) work[i] = x * (i + 1);
    double s = 0.0;
    for (int i = n - 1; i >= 0; i--) s += work[i] * work[i];
    return s;
}
int main(void) {
    scale = 3.0;
    double x = 0.7;
    check("d f / dx", __enzyme_autodiff((void *)f, x), scale * (sin(x) + x * cos(x)), 1e-12);
    check("forward", __enzyme_fwddiff((void *)f, x, 1.0), scale * (sin(x) + x * cos(x)), 1e-12);
    CALL_STORES
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", LEVELS)
def test_inactive_globals_and_hints_are_accepted(tmp_path, level):
    finished = build_and_run(tmp_path, INACTIVE_GLOBAL.replace("CALL_STORES", ""), level)
    assert finished.stdout.count(" ok") == 2


@needs_clang
@pytest.mark.parametrize("level", LEVELS)
def test_a_derivative_stored_into_an_inactive_global_is_refused_with_a_note(tmp_path, capsys, level):
    source = INACTIVE_GLOBAL.replace("= &scale", "= work").replace(
        "CALL_STORES", "check(\"stores\", __enzyme_autodiff((void *)stores, x, 4), 60 * x, 1e-12);")
    message = refusal(tmp_path, capsys, source, level)
    assert "stored into memory enzpy cannot track" in message, message
    assert "note: @work registered inactive (__enzyme_inactive_global)" in message


# ---------------------------------------------------------------- 4. markers by address, void + enzyme_out

MARKERS_BY_ADDRESS = r"""
template <typename R, typename... T> R __enzyme_autodiff(void *, T...);
template <typename R, typename... T> R __enzyme_fwddiff(void *, T...);
double f(const double *x, double s, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += s * x[i] * x[i] * std::sin(x[i]);
    return total;
}
int main() {
    double x[3] = {0.5, -1.0, 2.0}, dx[3] = {0, 0, 0}, h = 1e-6, s = 1.5;
    double ds = __enzyme_autodiff<double>((void *)f, &enzyme_dup, x, dx, &enzyme_out, s,
                                          (int *)&enzyme_const, 3);
    check("df/ds", ds, (f(x, s + h, 3) - f(x, s - h, 3)) / (2 * h), 1e-6);
    for (int i = 0; i < 3; i++)
        check("df/dx", dx[i], s * (2 * x[i] * std::sin(x[i]) + x[i] * x[i] * std::cos(x[i])), 1e-12);
    double v[3] = {1.0, 2.0, -1.0}, up[3], down[3];
    for (int i = 0; i < 3; i++) { up[i] = x[i] + h * v[i]; down[i] = x[i] - h * v[i]; }
    double tangent = __enzyme_fwddiff<double>((void *)f, &enzyme_dup, x, v, &enzyme_const, s, &enzyme_const, 3);
    check("forward", tangent, (f(up, s, 3) - f(down, s, 3)) / (2 * h), 1e-6);
    // Markers by value still work beside them.
    double ds2 = __enzyme_autodiff<double>((void *)f, enzyme_const, x, enzyme_out, s, enzyme_const, 3);
    check("df/ds by value", ds2, ds, 1e-15);
    return failures;
}
"""


@needs_clangxx
@pytest.mark.parametrize("level", LEVELS)
def test_markers_passed_by_address_as_cpp_templates_pass_them(tmp_path, level):
    finished = run_cpp(tmp_path, MARKERS_BY_ADDRESS, level)
    assert finished.stdout.count(" ok") == 6
    text = (tmp_path / f"program_{level[1:]}.ll").read_text()
    assert "ptr noundef @enzyme_dup" in text or "ptr noundef nonnull @enzyme_dup" in text, "not by address"


VOID_WITH_OUT = r"""
#include <math.h>
#include <stdio.h>
extern int enzyme_dup, enzyme_const, enzyme_out;
void __enzyme_autodiff(void *, ...);                 /* declared void: the enzyme_out derivative is dropped */
static int failures = 0;
static void check(const char *what, double got, double expected) {
    int ok = fabs(got - expected) <= 1e-12 * (fabs(expected) > 1 ? fabs(expected) : 1);
    printf("%s: %.12g vs %.12g %s\n", what, got, expected, ok ? "ok" : "MISMATCH");
    failures += !ok;
}
double f(double *x, double s, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += s * exp(x[i]);
    return total;
}
int main(void) {
    double x[2] = {0.25, -0.5}, dx[2] = {0.0, 0.0};
    __enzyme_autodiff((void *)f, enzyme_dup, x, dx, enzyme_out, 2.0, enzyme_const, 2);
    check("df/dx0", dx[0], 2.0 * exp(0.25));
    check("df/dx1", dx[1], 2.0 * exp(-0.5));
    double y[2] = {0.25, -0.5}, dy[2] = {0.0, 0.0};
    __enzyme_autodiff((void *)f, y, dy, 3.0, 2);     /* the defaults: s is out, its derivative dropped */
    check("defaults df/dy0", dy[0], 3.0 * exp(0.25));
    return failures;
}
"""


@needs_clang
@pytest.mark.parametrize("level", LEVELS)
def test_a_void_declaration_with_enzyme_out_fills_the_shadows(tmp_path, level):
    finished = build_and_run(tmp_path, VOID_WITH_OUT, level)
    assert finished.stdout.count(" ok") == 3


# Without clang: what clang++ -O0 emits for `__enzyme_autodiff<void>((void *)f, &enzyme_dup, x, dx,
# &enzyme_out, s)` declared void (trimmed), with f(x, s) = s * x[0]^2, run through MCJIT.
BY_ADDRESS_TEXT = r"""
@enzyme_dup = external global i32, align 4
@enzyme_out = external global i32, align 4

define double @f(ptr noundef %x, double noundef %s) {
  %v = load double, ptr %x, align 8
  %a = fmul double %s, %v
  %b = fmul double %a, %v
  ret double %b
}

define void @driver(ptr noundef %x, ptr noundef %dx, double noundef %s) {
  call void @_Z17__enzyme_autodiffIvJPiPdS1_S0_dEET_PvDpT0_(ptr noundef @f, ptr noundef @enzyme_dup, ptr noundef %x, ptr noundef %dx, ptr noundef @enzyme_out, double noundef %s)
  ret void
}

declare void @_Z17__enzyme_autodiffIvJPiPdS1_S0_dEET_PvDpT0_(ptr noundef, ptr noundef, ptr noundef, ptr noundef, ptr noundef, double noundef)
"""


def test_markers_by_address_and_a_void_declaration_without_clang():
    import ctypes

    from enzpy.frontend.clang import differentiate_enzyme_calls
    from enzpy.passes import target_machine

    text = differentiate_enzyme_calls(BY_ADDRESS_TEXT)
    module = llvm.parse_assembly(text)
    module.verify()
    engine = llvm.create_mcjit_compiler(module, target_machine(shared=False))
    engine.finalize_object()
    pointer = ctypes.POINTER(ctypes.c_double)
    driver = ctypes.CFUNCTYPE(None, pointer, pointer, ctypes.c_double)(engine.get_function_address("driver"))
    x, dx = (ctypes.c_double * 1)(3.0), (ctypes.c_double * 1)(0.5)
    driver(x, dx, 0.25)
    assert dx[0] == pytest.approx(0.5 + 2 * 0.25 * 3.0, rel=1e-15)


REGISTRATION_TEXT = r"""
@.str = private unnamed_addr constant [4 x i8] c"sin\00", align 1
@_ZL20__enzyme_inactivefn = internal global [1 x ptr] [ptr @logged], align 8
@__enzyme_function_like = global [2 x ptr] [ptr @my_sin, ptr @.str], align 16
@__enzyme_nofree_autoreg_my_sin = global ptr @my_sin, align 8

define double @logged(double %x) #0 {
  %y = fmul double %x, 3.0
  ret double %y
}
define double @my_sin(double %x) #0 {
  ret double %x
}
define double @f(double %x) #0 {
  %y = call double @ROOT(double %x)
  ret double %y
}
define double @driver(double %x) #0 {
  %d = call double (ptr, ...) @__enzyme_autodiff(ptr @f, double %x)
  ret double %d
}
declare double @__enzyme_autodiff(ptr, ...)
attributes #0 = { noinline nounwind optnone }
"""


@pytest.mark.parametrize("root, expected", [
    ("logged", "@logged, which @f reaches, is marked inactive (enzyme_inactive) (@_ZL20__enzyme_inactivefn)"),
    ("my_sin", "@my_sin, which @f reaches, is declared to behave like sin (@__enzyme_function_like)"),
])
def test_registrations_are_read_from_text_whatever_their_spelling(root, expected):
    from enzpy.frontend.clang import ForeignCodeError, differentiate_enzyme_calls

    with pytest.raises(ForeignCodeError) as raised:
        differentiate_enzyme_calls(REGISTRATION_TEXT.replace("ROOT", root))
    assert expected in str(raised.value) and "[differentiating @f in reverse mode]" in str(raised.value)
    # Without noinline (clang -O1 and above) a registered function may have been inlined anywhere:
    # @logged, which @f does not reach, then refuses @f too; the nofree hint on @my_sin does not.
    optimized = REGISTRATION_TEXT.replace("ROOT", "my_sin").replace("@__enzyme_function_like", "@table") \
        .replace("define double @logged(double %x) #0", "define double @logged(double %x)")
    with pytest.raises(ForeignCodeError, match=r"@logged is marked inactive .* clang may have inlined @logged"):
        differentiate_enzyme_calls(optimized)
    # With its registration gone, @f differentiates (my_sin(x) = x).
    assert "__enzyme_autodiff(ptr @f" not in differentiate_enzyme_calls(
        optimized.replace("@_ZL20__enzyme_inactivefn", "@other_table"))
