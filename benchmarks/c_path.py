"""The C path against enzpy's numba path: ADBench's GMM, LSTM and BA gradients, same data, one run.

    python -m benchmarks.c_path [--quick] [--output DIR]

C path: examples/c/adbench/{gmm,lstm,ba}.c, written in ADBench's own C style
and differentiated with `__enzyme_autodiff`, built as a C user of Enzyme builds
them (`clang-19 -O2 -march=native -fno-vectorize -fno-slp-vectorize -fno-unroll-loops -S -emit-llvm`,
`enzpy opt`, `clang-19 -O2 -march=native`: for this machine, as numba's JIT compiles, with
clang-19's loop vectorizer given LLVM 22's remainder threshold, see MACHINE), here as a
shared library (-fPIC) whose gmm_gradient / lstm_gradient / ba_jacobian are
called through ctypes on the NumPy arrays of benchmarks/problems' instances.
numba path: the same instances' `enzpy_gradient` (what `python -m benchmarks`
times as "enzpy"). Both compute the same thing: the GMM and LSTM gradients,
BA's Jacobian non-zeros (per observation a 2 x 15 block, then the weight-error
diagonal), though by different algorithms for BA: the C path sweeps each
observation's two rows and its weight error separately (Enzyme's ADBench
port), the numba path sweeps all observations at once, with three lanes.

Before anything is timed, the C primal must equal the NumPy reference and the
C derivative must equal the numba path's (relative to its largest entry, 1e-8).
A program enzpy opt cannot differentiate gets an error cell (its primal is then
timed from a -DPRIMAL_ONLY build, so the primal columns still compare the compilers).
Columns are timed interleaved, as benchmarks/timing.py does for every benchmark.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .problems import ba, gmm, lstm
from .runner import AGREEMENT_TOLERANCE, OBJECTIVE_TOLERANCE, relative_difference, short_reason
from .timing import BATCH_SECONDS, FULL_PLAN, QUICK_PLAN, first_call, interleaved_medians

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "examples" / "c" / "adbench"
RESULTS_DIRECTORY = ROOT / "benchmarks" / "results"
LEVEL = "-O2"
MACHINE = ("-march=native", "-mllvm", "-epilogue-vectorization-minimum-VF=8")
"""Every C build targets this machine, as numba's JIT does (host CPU and its vector extensions):
without it clang emits baseline x86-64 (SSE2) code, and the paths would differ in the target.
numba's LLVM (22, through llvmlite) also vectorizes the remainder of a loop vectorized 8 wide
(AVX-512 doubles); clang-19 does so from 16 wide only, and GMM d=64's triangular loops (31
iterations on average) then ran mostly in their scalar remainders: 1.2x the numba path's time,
1.03x with the threshold at 8. The flag gives clang-19 the newer threshold, so the columns
compare the two paths rather than two LLVM versions."""
IR_FLAGS = (LEVEL, *MACHINE, "-fno-vectorize", "-fno-slp-vectorize", "-fno-unroll-loops")
"""The IR enzpy reads: what Enzyme's clang plugin sees, before LLVM's vectorizer and unroller (the
final -O2 compile vectorizes the derivative). Unrolled copies of a loop body each keep their values
on the tape; examples/c/README.md recommends these flags. Each program is also built from plain -O2
IR (VECTORIZED_IR), which pays off on BA's small straight-line code, and the better is the row's."""
VECTORIZED_IR = (LEVEL, *MACHINE)
TARGET_RATIO = 1.1
"""The C path's gradient at most 1.1x the numba path's, on every row."""

SIZES = {
    "quick": {"gmm": [(2, 5, 1000), (64, 10, 1000)], "lstm": [(2, 1024)], "ba": ["ba1"]},
    "full": {"gmm": [(2, 5, 1000), (10, 25, 1000), (64, 10, 1000)], "lstm": [(2, 1024), (4, 4096)],
             "ba": ["ba1", "ba3"]},
}
COLUMNS = ("C primal", "numba primal", "C gradient", "C gradient, -O2 IR", "numba gradient",
           "numba per-observation gradient")
"""The last: BA only, the C path's per-observation form through enzpy.autodiff inside njit code."""

double_p, int_p, c_int, c_double = (ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int),
                                    ctypes.c_int, ctypes.c_double)
SIGNATURES = {
    "gmm_primal": (c_double, [c_int, c_int, c_int] + [double_p] * 4 + [c_double, c_int]),
    "gmm_gradient": (None, [c_int, c_int, c_int] + [double_p] * 4 + [c_double, c_int, double_p, double_p]),
    "lstm_primal": (c_double, [c_int, c_int, c_int] + [double_p] * 4),
    "lstm_gradient": (None, [c_int, c_int, c_int] + [double_p] * 6),
    "ba_objective": (None, [c_int, c_int, c_int, double_p, double_p, double_p, int_p, double_p, double_p,
                            double_p]),
    "ba_jacobian": (None, [c_int, c_int, c_int, double_p, double_p, double_p, int_p, double_p, double_p,
                           double_p, double_p]),
}


class BuildFailed(Exception):
    pass


def run(command: list[str]) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        line = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[0]
        name = Path(command[0]).name
        # enzpy names itself in its messages already ("enzpy: error: ...").
        raise BuildFailed(line if line.startswith(f"{name}:") else f"{name}: {line}")


def build(program: str, directory: Path, primal_only: bool = False, ir_flags=IR_FLAGS) -> ctypes.CDLL:
    clang = shutil.which("clang-19")
    if clang is None:
        raise BuildFailed("clang-19 is not installed")
    stem = directory / (program + ("_primal" if primal_only else "") + ("" if ir_flags == IR_FLAGS else "_vectorized"))
    source = str(SOURCES / f"{program}.c")
    if primal_only:
        run([clang, LEVEL, *MACHINE, "-fPIC", "-shared", "-DPRIMAL_ONLY", source, "-o", f"{stem}.so", "-lm"])
    else:
        enzpy = str(Path(sys.executable).with_name("enzpy"))
        run([clang, *ir_flags, "-fPIC", "-S", "-emit-llvm", source, "-o", f"{stem}.ll"])
        run([enzpy, "opt", f"{stem}.ll", "-o", f"{stem}.d.ll"])
        run([clang, LEVEL, *MACHINE, "-fPIC", "-shared", f"{stem}.d.ll", "-o", f"{stem}.so", "-lm"])
    library = ctypes.CDLL(f"{stem}.so")
    for name, (result, arguments) in SIGNATURES.items():
        if name.startswith(program) and hasattr(library, name):
            function = getattr(library, name)
            function.restype, function.argtypes = result, arguments
    return library


def pointer(array: np.ndarray):
    """The array's data for ctypes, made once outside the timed calls (the pointer keeps `array` alive)."""
    assert array.flags.c_contiguous
    kind = double_p if array.dtype == np.float64 else int_p
    return array.ctypes.data_as(kind)


def gmm_calls(library, instance: gmm.GmmInstance):
    d, k, n = instance.d, instance.k, instance.n
    arrays = [np.ascontiguousarray(a) for a in (instance.alphas, instance.means, instance.icf, instance.x)]
    inputs = [pointer(a) for a in arrays]
    gamma, m = instance.wishart_gamma, instance.wishart_m
    err, J = np.zeros(1), np.zeros(k + k * d + k * d * (d + 1) // 2)
    err_p, J_p = pointer(err), pointer(J)

    def primal():
        return library.gmm_primal(d, k, n, *inputs, gamma, m)

    def gradient():
        library.gmm_gradient(d, k, n, *inputs, gamma, m, err_p, J_p)
        return J

    return primal, gradient


def lstm_calls(library, instance: lstm.LstmInstance):
    l, c, b = instance.layers, instance.chars, instance.bits
    arrays = [np.ascontiguousarray(a) for a in (instance.main_params, instance.extra_params, instance.state,
                                                instance.sequence)]
    inputs = [pointer(a) for a in arrays]
    loss, J = np.zeros(1), np.zeros(8 * l * b + 3 * b)
    loss_p, J_p = pointer(loss), pointer(J)

    def primal():
        return library.lstm_primal(l, c, b, *inputs)

    def gradient():
        library.lstm_gradient(l, c, b, *inputs, loss_p, J_p)
        return J

    return primal, gradient


def ba_calls(library, instance: ba.BaInstance):
    n, m, p = instance.cams.shape[0], instance.x.shape[0], instance.w.size
    arrays = [np.ascontiguousarray(instance.cams), np.ascontiguousarray(instance.x), np.ascontiguousarray(instance.w),
              np.ascontiguousarray(instance.obs, dtype=np.int32), np.ascontiguousarray(instance.feats)]
    inputs = [pointer(a) for a in arrays]
    reproj_err, w_err, J = np.zeros(2 * p), np.zeros(p), np.zeros(2 * p * 15 + p)
    outputs = [pointer(a) for a in (reproj_err, w_err)]
    J_p = pointer(J)

    def primal():
        library.ba_objective(n, m, p, *inputs, *outputs)
        return np.concatenate([reproj_err, w_err])

    def gradient():
        library.ba_jacobian(n, m, p, *inputs, *outputs, J_p)
        return J

    return primal, gradient


CALLS = {"gmm": gmm_calls, "lstm": lstm_calls, "ba": ba_calls}


def instances(scale: str) -> list[tuple[str, object]]:
    chosen = SIZES[scale]
    return ([("gmm", gmm.GmmInstance(*size)) for size in chosen["gmm"]]
            + [("lstm", lstm.LstmInstance(*size)) for size in chosen["lstm"]]
            + [("ba", ba.BaInstance(name, *ba.ADBENCH_SIZES[name])) for name in chosen["ba"]])


def measure(program: str, instance, libraries: dict, plan) -> dict:
    """{column: seconds or an error string} for one instance."""
    where = f"{instance.family} {instance.label}"
    result: dict[str, object] = {}
    library = libraries.get(program)
    if isinstance(library, BuildFailed):
        result["C gradient"] = str(library)
        library = libraries.get(program + " primal")
    if isinstance(library, BuildFailed):
        result["C primal"] = str(library)
        library = None
    calls: dict = {"numba primal": instance.primal(fresh=False)}
    if library is not None:
        primal, gradient = CALLS[program](library, instance)
        print(f"{where}: checking the C primal", file=sys.stderr, flush=True)
        difference = relative_difference(primal(), instance.numpy_objective())
        if difference <= OBJECTIVE_TOLERANCE:
            calls["C primal"] = primal
            if "C gradient" not in result:
                calls["C gradient"] = gradient
                vectorized = libraries.get(program + " vectorized")
                if vectorized is not None:
                    calls["C gradient, -O2 IR"] = CALLS[program](vectorized, instance)[1]
        else:
            result["C primal"] = result["C gradient"] = f"C objective differs from NumPy (relative {difference:.1e})"
    first_call(calls["numba primal"])
    numba_call, numba_gradient = numba_path_gradient(instance, where)
    if numba_gradient is None:
        result["numba gradient"] = numba_call
    else:
        calls["numba gradient"] = numba_call
    if program == "ba" and numba_gradient is not None:
        from .ba_per_observation import per_observation_contender

        per_observation = per_observation_contender(instance)
        print(f"{where}: numba path per observation, first call (compile)", file=sys.stderr, flush=True)
        _, blocks = first_call(per_observation.call)
        difference = relative_difference(per_observation.gradient_of(blocks), numba_gradient)
        if difference <= AGREEMENT_TOLERANCE:
            calls["numba per-observation gradient"] = per_observation.call
        else:
            result["numba per-observation gradient"] = f"differs from the sweeps' (relative {difference:.1e})"
    for column in ("C gradient", "C gradient, -O2 IR"):
        if column in calls and numba_gradient is not None:
            difference = relative_difference(calls[column](), numba_gradient)
            if not difference <= AGREEMENT_TOLERANCE:
                result[column] = f"differs from the numba path's (relative {difference:.1e})"
                del calls[column]
    if "C gradient" in calls and numba_gradient is None:
        # Without the numba path's gradient to compare with, the C path's own checks
        # (tests/test_c_adbench.py, against ADBench's references) are what vouch for it.
        result["unchecked"] = ("not compared with the numba path's (which failed); tests/test_c_adbench.py "
                               "checks the C path against ADBench's references")
    print(f"{where}: timing " + ", ".join(calls), file=sys.stderr, flush=True)
    for column, timing in interleaved_medians(calls, plan).items():
        result[column] = timing.median_seconds
    return result


def numba_path_gradient(instance, where: str):
    """(call, flat gradient) of enzpy's numba path after its first call, or (reason, None)."""
    print(f"{where}: enzpy's numba path, first call (compile)", file=sys.stderr, flush=True)
    try:
        contender = instance.enzpy_gradient(optimize=True)
        _, value = first_call(contender.call)
        return contender.call, contender.gradient_of(value)
    except Exception as error:           # one broken column, not the run's end
        return short_reason(error), None


def milliseconds(value) -> str:
    return f"{value * 1e3:.3g}" if isinstance(value, float) else ""


def footnote(reasons: list[str], reason: str) -> int:
    """The table's footnote number for `reason` (added to `reasons` on first use)."""
    if reason not in reasons:
        reasons.append(reason)
    return reasons.index(reason) + 1


def ratio(result: dict, top: str, bottom: str) -> float | None:
    a, b = result.get(top), result.get(bottom)
    return a / b if isinstance(a, float) and isinstance(b, float) else None


def gradient_ratio(result: dict) -> float | None:
    """The C path's better gradient (either IR) over the numba path's."""
    ratios = [r for c in ("C gradient", "C gradient, -O2 IR") if (r := ratio(result, c, "numba gradient"))]
    return min(ratios) if ratios else None


def table(rows: list[tuple[object, dict]]) -> tuple[str, list[str]]:
    lines = ["| problem | size | " + " | ".join(f"{c} ms" for c in COLUMNS)
             + " | C / numba primal | C / numba gradient | within 1.1x |", "|---|---|" + "---:|" * 8 + "---|"]
    reasons: list[str] = []
    for instance, result in rows:
        cells = []
        for column in COLUMNS:
            value = result.get(column)
            if isinstance(value, str):
                cells.append(f"error [{footnote(reasons, f'{column}: {value}')}]")
            elif column == "C gradient" and "unchecked" in result:
                cells.append(f"{milliseconds(value)} [{footnote(reasons, f'{column}: ' + result['unchecked'])}]")
            else:
                cells.append(milliseconds(value))
        primal, gradient = ratio(result, "C primal", "numba primal"), gradient_ratio(result)
        verdict = "" if gradient is None else ("yes" if gradient <= TARGET_RATIO else "no")
        cells += [f"{primal:.2f}" if primal else "", f"{gradient:.2f}" if gradient else "", verdict]
        lines.append(f"| {instance.family} | {instance.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), [f"[{i}] {reason}" for i, reason in enumerate(reasons, 1)]


def header(plan, scale: str) -> str:
    import llvmlite
    import llvmlite.binding as llvm
    import numba
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], check=False, capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "unknown"
    clang = shutil.which("clang-19")
    clang_version = (subprocess.run([clang, "--version"], check=False, capture_output=True,
                                    text=True).stdout.splitlines()[0]
                     if clang else "clang-19 not installed")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{scale} run: median of up to {plan.repetitions} samples per column (at least 3, within "
            f"{plan.budget_seconds:g} s per column), columns interleaved, calls under {BATCH_SECONDS * 1e3:g} ms "
            f"timed in batches, after {plan.warmup} warm-up; one thread each. enzpy {commit}; {clang_version}; "
            f"numba {numba.__version__}, llvmlite {llvmlite.__version__}, numpy {np.__version__}, "
            f"Python {platform.python_version()}; {platform.machine()} CPU {llvm.get_host_cpu_name()}, "
            f"{os.cpu_count()} cores, load average {load} at the start.")


def verdict(rows: list[tuple[object, dict]]) -> str:
    ratios = [(f"{i.family} {i.label}", gradient_ratio(r)) for i, r in rows]
    missing = [where for where, value in ratios if value is None]
    over = [f"{where} ({value:.2f}x)" for where, value in ratios if value is not None and value > TARGET_RATIO]
    met = not missing and not over
    text = (f"**Target.** The C path's gradient within {TARGET_RATIO:g}x of the numba path's on every row: "
            + ("met" if met else "NOT met") + ".")
    if over:
        text += f" Over: {', '.join(over)}."
    if missing:
        text += f" No C gradient time: {', '.join(missing)}."
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.c_path", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY, help="folder for the .md")
    arguments = parser.parse_args(argv)
    scale = "quick" if arguments.quick else "full"
    plan = QUICK_PLAN if arguments.quick else FULL_PLAN
    setting = header(plan, scale)
    rows = []
    with tempfile.TemporaryDirectory(prefix="enzpy-c-path-") as directory:
        libraries: dict[str, object] = {}
        for program in CALLS:
            print(f"building {program}.c ({LEVEL}, enzpy opt)", file=sys.stderr, flush=True)
            try:
                libraries[program] = build(program, Path(directory))
                libraries[program + " vectorized"] = build(program, Path(directory), ir_flags=VECTORIZED_IR)
            except BuildFailed as error:
                libraries[program] = error
                try:
                    libraries[program + " primal"] = build(program, Path(directory), primal_only=True)
                except BuildFailed as primal_error:
                    libraries[program + " primal"] = primal_error
        for program, instance in instances(scale):
            rows.append((instance, measure(program, instance, libraries, plan)))
    text, reasons = table(rows)
    body = (f"# The C path (clang -> enzpy opt -> clang) vs enzpy's numba path: ADBench's GMM, LSTM, BA\n\n"
            f"{setting}\n\n"
            f"C path: examples/c/adbench/*.c built with `clang-19 {' '.join(IR_FLAGS)} -fPIC -S -emit-llvm` "
            f"(C gradient; from plain `{' '.join(VECTORIZED_IR)}` IR in the next column), `enzpy opt`, "
            f"`clang-19 {LEVEL} {' '.join(MACHINE)} -shared`, called through ctypes; numba path: `differentiate(kernel)` on "
            f"tests/adbench/objectives.py's kernels, as `python -m benchmarks` times it. Same arrays for both. "
            f"Ratios are time ratios: below 1 the C path is faster; the gradient ratio takes the better of "
            f"the two C columns. BA's gradient columns compute the Jacobian's "
            f"non-zeros: the C path with 3 reverse calls per observation (Enzyme's ADBench port), the numba path "
            f"with one sweep of three lanes over all observations (vector reverse mode), and (numba per-observation) with the C path's algorithm: "
            f"3 calls of enzpy.autodiff per observation inside njit code, on scalars "
            f"(benchmarks/ba_per_observation.py).\n\n{text}\n\n" + "\n".join(reasons)
            + ("\n\n" if reasons else "") + verdict(rows) + "\n")
    write_results(body, arguments.output, "c_path", scale)
    return 0


def write_results(body: str, directory: Path, name: str, scale: str) -> None:
    """Print the report and write it to DIRECTORY/NAME.md (NAME-quick.md for a quick run)."""
    print(body)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (f"{name}.md" if scale == "full" else f"{name}-quick.md")
    path.write_text(body)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
