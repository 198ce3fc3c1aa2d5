"""Enzyme itself as a column: ADBench's GMM, LSTM and BA gradients by Enzyme and by enzpy, same data, one run.

    python -m benchmarks.enzyme_column [--quick] [--output DIR]

Enzyme is Enzyme-JAX's `enzyme_ad` (the optional extra `enzyme`: pip install -e '.[enzyme]'); without it
this module says so and exits 0. Its `cpp_call` compiles C++ source with its own clang and Enzyme when a
jax.jit function is lowered, and runs it as an XLA custom call. The C++ is examples/c/adbench/{gmm,lstm,ba}.c
themselves (the text before their reference values and main(), the #include lines dropped and what they
declared declared here: cpp_call's clang has no C standard headers), so Enzyme, enzpy's C path and (by
tests/test_c_adbench.py and the check below) enzpy's numba path compute the same problems with the same
arithmetic. Two Enzyme columns:

  Enzyme           a cpp_call whose C++ calls the sources' own gmm_gradient / lstm_gradient / ba_jacobian,
                   i.e. __enzyme_autodiff with the sources' activities (data enzyme_const), differentiated
                   by Enzyme in its combined reverse mode: what a C user of Enzyme, and ADBench's Enzyme
                   port, run. The denominator of the ratios.
  Enzyme jax.grad  jax.jit(jax.value_and_grad(objective)) of a cpp_call of the sources' gmm_primal /
                   lstm_primal: enzyme_ad's JAX rule, Enzyme's split mode (an augmented forward call that
                   leaves a tape, then a reverse call), every input active. GMM and LSTM only (see BA_NOTE).

enzpy numba is `instance.enzpy_gradient(optimize=True)` (what `python -m benchmarks` times as "enzpy");
enzpy C is benchmarks/c_path.py's build of the same .c files (clang-19, `enzpy opt`, clang-19 -O2) called
through ctypes. Every gradient must equal the numba path's to 1e-8 (relative to its largest entry) and
every Enzyme value the NumPy objective before anything is timed; columns are timed interleaved.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from .c_path import CALLS, IR_FLAGS, SOURCES, VECTORIZED_IR, BuildFailed, build, footnote, header, instances, \
    milliseconds, numba_path_gradient, ratio, write_results
from .frameworks import load_jax
from .problems import concatenate
from .runner import AGREEMENT_TOLERANCE, OBJECTIVE_TOLERANCE, relative_difference, short_reason
from .timing import FULL_PLAN, QUICK_PLAN, first_call, interleaved_medians

C_PATH_IR = {"gmm": IR_FLAGS, "lstm": IR_FLAGS, "ba": VECTORIZED_IR}
"""The IR each C program is built from here: the better of c_path.py's two builds on its rows
(benchmarks/results/c_path.md: Enzyme's recommended flags for GMM and LSTM, plain -O2 for BA)."""

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 1.0
"""enzpy's gradient (either path) at most Enzyme's time, on every row."""
COLUMNS = ("Enzyme", "Enzyme jax.grad", "enzpy numba", "enzpy C")
BA_NOTE = ("not run: BA's result is a Jacobian (3 p rows), and enzyme_ad's primitive has no vmap rule, so "
           "jax.grad could only give it by jax.jacrev, one reverse sweep over all p observations per row "
           "(O(p^2)); the Enzyme column's per-observation __enzyme_autodiff calls are Enzyme's ADBench form")

SPLIT_MODE_NOTE = (
    "Enzyme jax.grad's LSTM gradient is wrong (its value is right): the errors sit in the weight row's forget and "
    "outgate blocks, the entries multiplied by a layer's input, which lstm.c later overwrites in place (the "
    "scaled input x2 at the end of lstm_predict, the hidden state at the next step). Checked by hand at l=1 c=2 "
    "when this module was written: max error 9.6e-3, and 1.4e-17 once lstm_predict's scaled input had a buffer "
    "of its own (an experiment, not the benchmark's source). Enzyme's "
    "split mode, as enzyme_ad runs it (__enzyme_augmentfwd, then __enzyme_reverse), does not keep the overwritten "
    "heap values for the reverse call; its combined mode (the Enzyme column) does.")

DECLARATIONS = r"""
// What the sources' #include lines declared: cpp_call's clang has no C standard headers.
extern "C" {
double exp(double); double log(double); double lgamma(double); double tanh(double);
double sqrt(double); double sin(double); double cos(double);
void *malloc(unsigned long); void *calloc(unsigned long, unsigned long); void free(void *);
void *memset(void *, int, unsigned long); void *memcpy(void *, const void *, unsigned long);
void __enzyme_autodiff(void *, ...);  // ../enzyme.h's declaration; Enzyme recognizes the name
}
typedef unsigned long size_t;
#define M_PI 3.14159265358979323846
#define restrict __restrict__
#define IN(a) ((const double *)&(a))
#define OUT(a) ((double *)&(a))
"""
CPP_ONLY = {"double d_err[2] = {row == 0, row == 1};": "double d_err[2] = {(double)(row == 0), (double)(row == 1)};"}
"""Valid C, a narrowing error in C++, and cpp_call's clang ignores -Wno-c++11-narrowing in argv: the casts C implies."""

# cpp_call's convention: outputs by reference, then the inputs, each an enzyme::tensor<T, shape...> (a
# plain array, hence the casts). Sizes arrive in an array, so that Enzyme's code, like enzpy's, knows them
# at run time only. The *_autodiff entries take them as int32; jax.grad's rule accepts float32 and float64
# inputs only, so the *_value entries (and m) take them as float64 and convert.
ENTRIES = {
    "gmm": r"""
template <typename J, typename E, typename I, typename A, typename M, typename Q, typename X, typename G>
void gmm_autodiff(J &grad, E &err, const I &sizes, const A &alphas, const M &means, const Q &icf, const X &x,
                  const G &gamma) {
  const int *s = (const int *)&sizes;
  gmm_gradient(s[0], s[1], s[2], IN(alphas), IN(means), IN(icf), IN(x), gamma, s[3], OUT(err), OUT(grad));
}
template <typename E, typename S, typename A, typename M, typename Q, typename X>
void gmm_value(E &err, const S &sizes, const A &alphas, const M &means, const Q &icf, const X &x) {
  const double *s = IN(sizes);
  err = gmm_primal((int)s[0], (int)s[1], (int)s[2], IN(alphas), IN(means), IN(icf), IN(x), s[3], (int)s[4]);
}
""",
    "lstm": r"""
template <typename J, typename E, typename I, typename W, typename V, typename S, typename X>
void lstm_autodiff(J &grad, E &loss, const I &sizes, const W &main, const V &extra, const S &state,
                   const X &sequence) {
  const int *s = (const int *)&sizes;
  lstm_gradient(s[0], s[1], s[2], IN(main), IN(extra), IN(state), IN(sequence), OUT(loss), OUT(grad));
}
template <typename E, typename I, typename W, typename V, typename S, typename X>
void lstm_value(E &loss, const I &sizes, const W &main, const V &extra, const S &state, const X &sequence) {
  const double *s = IN(sizes);
  loss = lstm_primal((int)s[0], (int)s[1], (int)s[2], IN(main), IN(extra), IN(state), IN(sequence));
}
""",
    "ba": r"""
template <typename J, typename R, typename E, typename I, typename C, typename P, typename W, typename O,
          typename F>
void ba_autodiff(J &jacobian, R &reproj_err, E &w_err, const I &sizes, const C &cams, const P &X, const W &w,
                 const O &obs, const F &feats) {
  const int *s = (const int *)&sizes;
  ba_jacobian(s[0], s[1], s[2], IN(cams), IN(X), IN(w), (const int *)&obs, IN(feats), OUT(reproj_err),
              OUT(w_err), OUT(jacobian));
}
""",
}
EMPTY = r"""
template <typename O, typename I> void empty(O &out, const I &in) { out = (double)in; }
"""


def source(program: str) -> str:
    """The .c file up to its reference values (main() follows them), without #include lines, as C++."""
    text = (SOURCES / f"{program}.c").read_text()
    text = text[:text.index("static const double REFERENCE")]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#include"))
    for c, cpp in CPP_ONLY.items():
        body = body.replace(c, cpp)
    return DECLARATIONS + body + ENTRIES[program]


def enzyme_contenders(jax, cpp_call, program: str, instance) -> dict:
    """{column: (call, gradient_of, value_of)}: the call returns what it computed, still a JAX array."""
    jnp = jax.numpy
    text = source(program)

    def shaped(*shape):
        return jax.core.ShapedArray(shape, jnp.float64)

    def int32(*values):
        return jnp.asarray(values, dtype=jnp.int32)

    if program == "gmm":
        d, k, n = instance.d, instance.k, instance.n
        arrays = [jnp.asarray(a) for a in (instance.alphas, instance.means, instance.icf, instance.x)]
        gamma, m = float(instance.wishart_gamma), int(instance.wishart_m)
        inputs = [int32(d, k, n, m), *arrays, jnp.asarray(gamma)]
        outputs = [shaped(k + k * d + k * d * (d + 1) // 2), shaped()]
        value_sizes, wrt = np.array([d, k, n, gamma, m], dtype=float), (0, 1, 2)
    elif program == "lstm":
        l, c, b = instance.layers, instance.chars, instance.bits
        arrays = [jnp.asarray(a) for a in (instance.main_params, instance.extra_params, instance.state,
                                           instance.sequence)]
        inputs = [int32(l, c, b), *arrays]
        outputs = [shaped(8 * l * b + 3 * b), shaped()]
        value_sizes, wrt = np.array([l, c, b], dtype=float), (0, 1)
    else:
        n, m, p = instance.cams.shape[0], instance.x.shape[0], instance.w.size
        arrays = [jnp.asarray(a) for a in (instance.cams, instance.x, instance.w)]
        inputs = [int32(n, m, p), *arrays, jnp.asarray(instance.obs, dtype=jnp.int32), jnp.asarray(instance.feats)]
        outputs, value_sizes = [shaped(2 * p * 15 + p), shaped(2 * p), shaped(p)], None

    # enzpy's C path is built for this machine (c_path.MACHINE); cpp_call's clang takes cc1 options.
    from enzpy.passes import host_cpu
    argv = ("-target-cpu", host_cpu()[0])
    autodiff = jax.jit(lambda *a: cpp_call(*a, out_shapes=outputs, source=text, fn=f"{program}_autodiff",
                                           argv=argv))
    contenders = {"Enzyme": (lambda: jax.block_until_ready(autodiff(*inputs)), lambda r: np.asarray(r[0]),
                             lambda r: concatenate(r[1:]))}
    if value_sizes is not None:
        def objective(*a):
            return cpp_call(jnp.asarray(value_sizes), *a, out_shapes=[shaped()], source=text,
                            fn=f"{program}_value", argv=argv)[0]

        value_and_grad = jax.jit(jax.value_and_grad(objective, argnums=wrt))
        contenders["Enzyme jax.grad"] = (lambda: jax.block_until_ready(value_and_grad(*arrays)),
                                         lambda r: concatenate(r[1]), lambda r: float(r[0]))
    return contenders


def measure(program: str, instance, library, jax, cpp_call, plan) -> dict:
    """{column: seconds or a reason string, "first call": {column: seconds}} for one instance."""
    where = f"{instance.family} {instance.label}"
    result: dict = {"first call": {}}
    calls: dict = {}
    gradients: dict = {}
    numba_call, reference = numba_path_gradient(instance, where)
    if reference is None:               # nothing to check the others against: nothing timed
        result["enzpy numba"] = numba_call
        return result
    calls["enzpy numba"] = numba_call
    if isinstance(library, BuildFailed):
        result["enzpy C"] = str(library)
    else:
        calls["enzpy C"] = CALLS[program](library, instance)[1]
        gradients["enzpy C"] = calls["enzpy C"]().copy()
    if program == "ba":
        result["Enzyme jax.grad"] = BA_NOTE
    objective = np.asarray(instance.numpy_objective(), dtype=float)
    for column, (call, gradient_of, value_of) in enzyme_contenders(jax, cpp_call, program, instance).items():
        print(f"{where}: {column}, first call (clang, Enzyme, XLA)", file=sys.stderr, flush=True)
        try:
            seconds, value = first_call(call)
        except Exception as error:
            result[column] = short_reason(error)
            continue
        result["first call"][column] = seconds
        difference = relative_difference(np.ravel(value_of(value)), objective.ravel())
        if not difference <= OBJECTIVE_TOLERANCE:
            result[column] = f"value differs from NumPy's (relative {difference:.1e})"
            continue
        calls[column], gradients[column] = call, gradient_of(value)
    for column, gradient in gradients.items():
        difference = relative_difference(gradient, reference)
        if not difference <= AGREEMENT_TOLERANCE:
            result[column] = f"gradient differs from the numba path's (relative {difference:.1e})"
            del calls[column]
    print(f"{where}: timing " + ", ".join(calls), file=sys.stderr, flush=True)
    for column, timing in interleaved_medians(calls, plan).items():
        result[column] = timing.median_seconds
    return result


def overheads(jax, cpp_call, plan) -> dict[str, float]:
    """Per-call seconds of JAX's dispatch alone and of an empty cpp_call, plain and under jax.grad."""
    jnp = jax.numpy
    scalar = jax.core.ShapedArray((), jnp.float64)

    def empty(v):
        return cpp_call(v, out_shapes=[scalar], source=EMPTY, fn="empty")[0]

    functions = {"jit(x + 1.0), no cpp_call": jax.jit(lambda v: v + 1.0), "jit(empty cpp_call)": jax.jit(empty),
                 "jit(value_and_grad(empty cpp_call))": jax.jit(jax.value_and_grad(empty))}
    x = jnp.asarray(1.0)
    calls = {name: (lambda f=f: jax.block_until_ready(f(x))) for name, f in functions.items()}
    for call in calls.values():
        call()
    return {name: timing.median_seconds for name, timing in interleaved_medians(calls, plan).items()}


def table(rows: list[tuple[object, dict]]) -> tuple[str, list[str]]:
    lines = ["| problem | size | " + " | ".join(f"{c} ms" for c in COLUMNS) + " | numba / Enzyme | C / Enzyme "
             "| Enzyme jax.grad / Enzyme | Enzyme first call s (autodiff, jax.grad) |",
             "|---|---|" + "---:|" * 8]
    reasons: list[str] = []
    for instance, result in rows:
        cells = []
        for column in COLUMNS:
            value = result.get(column)
            if isinstance(value, str):
                cells.append(("n/a" if value.startswith("not run") else "error") + f" [{footnote(reasons, value)}]")
            else:
                cells.append(milliseconds(value))
        for top in ("enzpy numba", "enzpy C", "Enzyme jax.grad"):
            value = ratio(result, top, "Enzyme")
            cells.append(f"{value:.2f}" if value is not None else "")
        first = result["first call"]
        cells.append(", ".join(f"{first[c]:.2f}" for c in ("Enzyme", "Enzyme jax.grad") if c in first))
        lines.append(f"| {instance.family} | {instance.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), [f"[{i}] {reason}" for i, reason in enumerate(reasons, 1)]


def verdict(rows: list[tuple[object, dict]]) -> str:
    parts = []
    for column, name in (("enzpy numba", "numba path"), ("enzpy C", "C path")):
        ratios = [(f"{i.family} {i.label}", ratio(r, column, "Enzyme")) for i, r in rows]
        over = [f"{where} ({value:.2f}x)" for where, value in ratios if value is not None and value > TARGET_RATIO]
        missing = [where for where, value in ratios if value is None]
        text = f"enzpy's {name}: " + ("met" if not over and not missing else "NOT met")
        if over:
            text += f"; over on {', '.join(over)}"
        if missing:
            text += f"; no time on {', '.join(missing)}"
        parts.append(text)
    return (f"**Target.** enzpy's gradient at most {TARGET_RATIO:g}x Enzyme's (the Enzyme column) on every row. "
            + ". ".join(parts) + ".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.enzyme_column", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY, help="folder for the .md")
    arguments = parser.parse_args(argv)
    if importlib.util.find_spec("enzyme_ad") is None:
        print("benchmarks.enzyme_column: skipped, enzyme_ad (Enzyme-JAX) is not installed; it is the optional "
              "extra `enzyme`: pip install -e '.[enzyme]'", file=sys.stderr)
        return 0
    framework = load_jax()                 # float64, one XLA thread; before enzyme_ad imports jax
    if framework.module is None:
        print(f"benchmarks.enzyme_column: skipped, JAX cannot be used ({framework.version})", file=sys.stderr)
        return 0
    jax = framework.module
    from enzyme_ad.jax import cpp_call

    scale = "quick" if arguments.quick else "full"
    plan = QUICK_PLAN if arguments.quick else FULL_PLAN
    setting = (header(plan, scale) + f" {framework.version}, jaxlib {importlib.metadata.version('jaxlib')}, "
               f"enzyme-ad {importlib.metadata.version('enzyme-ad')}.")
    rows = []
    with tempfile.TemporaryDirectory(prefix="enzpy-enzyme-column-") as directory:
        libraries: dict[str, object] = {}
        for program in CALLS:
            print(f"building {program}.c for enzpy's C path", file=sys.stderr, flush=True)
            try:
                libraries[program] = build(program, Path(directory), ir_flags=C_PATH_IR[program])
            except BuildFailed as error:
                libraries[program] = error
        for program, instance in instances(scale):
            rows.append((instance, measure(program, instance, libraries[program], jax, cpp_call, plan)))
    print("timing empty calls", file=sys.stderr, flush=True)
    empty = overheads(jax, cpp_call, plan)
    text, reasons = table(rows)
    split_mode_wrong = any(instance.family == "LSTM" and str(result.get("Enzyme jax.grad")).startswith("gradient")
                           for instance, result in rows)
    overhead = "; ".join(f"{name} {seconds * 1e6:.1f} us" for name, seconds in empty.items())
    body = (f"# Enzyme (Enzyme-JAX's cpp_call) vs enzpy's numba and C paths: ADBench's GMM, LSTM, BA\n\n"
            f"{setting}\n\n"
            f"All four columns run examples/c/adbench/*.c's arithmetic on the same arrays (benchmarks/problems' "
            f"instances). **Enzyme**: a jax.jit'd `cpp_call` of the sources' own gmm_gradient / lstm_gradient / "
            f"ba_jacobian (`__enzyme_autodiff`, combined reverse mode, data enzyme_const), compiled by "
            f"enzyme_ad's clang and Enzyme for this CPU (cc1's `-target-cpu`, as enzpy C's -march=native). **Enzyme jax.grad**: `jax.jit(jax.value_and_grad(f))` of a "
            f"`cpp_call` of gmm_primal / lstm_primal: enzyme_ad's split mode (augmented forward leaving a "
            f"tape, then reverse), every input active. **enzpy numba**: `instance.enzpy_gradient(optimize=True)`. "
            f"**enzpy C**: benchmarks/c_path.py's build (clang-19 -march=native, `enzpy opt`, clang-19 -O2 -march=native) through ctypes. "
            f"GMM and LSTM compute value and gradient, BA the Jacobian's non-zeros (enzpy numba: one sweep of "
            f"three lanes over all observations; Enzyme and enzpy C: 3 reverse calls per observation). Ratios are time ratios: "
            f"below 1 enzpy is faster. Every timed gradient equals the numba path's to {AGREEMENT_TOLERANCE:g} "
            f"(relative to its largest entry).\n\n{text}\n\n" + "\n".join(reasons) + ("\n\n" if reasons else "")
            + verdict(rows) + ("\n\n" + SPLIT_MODE_NOTE if split_mode_wrong else "")
            + f"\n\nPer-call cost of the JAX side alone, on a scalar: {overhead}.\n")
    write_results(body, arguments.output, "enzyme_column", scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
