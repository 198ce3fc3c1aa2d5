"""Compile time: enzpy's first derivative call against numba's compile of the primal.

    python -m benchmarks.compile_time

For each npbench-style stencil kernel of tests/kernels/stencils.py, three fresh
subprocesses (nothing one measurement compiled helps the next): `numba` times the
first call of a fresh `numba.njit(**options)(py_func)` dispatcher (compile + one
run); `reverse` and `forward` do the same numba call, then time the first and the
second `differentiate(dispatcher).autodiff(...)` call, float arrays Duplicated with
zero shadows and every other argument Const. The enzpy number is thus enzpy's own
cost beyond numba's compile. Every subprocess first compiles a trivial unrelated
njit function (numba's one-time initialisation), and the enzpy ones differentiate a
trivial kernel too (enzpy's one-time costs: pipelines parsed, target machine made),
timed and reported separately. The first call's stages are timed by wrapping what
`Differentiable` calls (enzpy.api's names, each pass manager's `run`), so the
breakdown comes from the real call path, not a copy of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = ROOT / "benchmarks" / "results" / "compile_time.md"
MODES = ("reverse", "forward")
KINDS = ("numba", *MODES)
STAGES = ("capture", "read to IR", "pre-AD LLVM passes", "pre-AD rest", "AD", "write IR text",
          "post-AD LLVM passes", "JIT")
TARGET_SECONDS, TARGET_RATIO = 10.0, 2.0
WORKER_TIMEOUT_S = 900


def scaled_sum(x, a):
    """The trivial kernel that pays enzpy's one-time costs before the measured one."""
    total = 0.0
    for i in range(x.size):
        total += a * x[i]
    return total


def copies(args) -> tuple:
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def annotated(args) -> list:
    from enzpy import Const, Duplicated
    return [Duplicated(a, np.zeros_like(a)) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else Const(a)
            for a in copies(args)]


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def install_stage_timers(stages: dict) -> None:
    """Wrap what `Differentiable._compile` / `_compile_forward` call; times add up in `stages`."""
    import enzpy.api as api
    import enzpy.driver as driver
    import enzpy.jit as jit

    def timed(stage, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - start
        return wrapper

    for name, stage in [("capture", "capture"), ("optimized_ir", "pre-AD total"),
                        ("build_reverse", "AD"), ("build_forward", "AD"), ("write_module", "write IR text")]:
        setattr(api, name, timed(stage, getattr(api, name)))
    # Every read of an LLVM module into enzpy's IR before the AD (numba's module, when `to_ir`'s
    # rewrites need it, and the pre-AD pipeline's result) is `driver.read_module`.
    driver.read_module = timed("read to IR", driver.read_module)
    api.Differentiable._entry_point = timed("post-AD total", api.Differentiable._entry_point)
    # `_entry_point` runs the post-AD passes and MCJIT. Timing each pass manager's `run` (loaded from
    # the module's own namespace) separates the LLVM passes from the rest.
    for module, stage in [(driver, "pre-AD LLVM passes"), (jit, "post-AD LLVM passes")]:
        def timed_load_pipeline(name, *args, _load=module.load_pipeline, _stage=stage, **kwargs):
            manager = _load(name, *args, **kwargs)
            manager.run = timed(_stage, manager.run)
            return manager
        module.load_pipeline = timed_load_pipeline


def worker(kind: str, case_name: str) -> dict:
    """One measurement in this (fresh) process; returns what it timed, in seconds."""
    if kind != "numba":
        import enzpy  # before any kernel compiles: its capture hook must see numba's raw modules
    import numba
    from tests.kernels.stencils import BENCHMARK_ONLY, CASES
    CASES = CASES + BENCHMARK_ONLY

    case = next(c for c in CASES if c.name == case_name)
    numba.njit(lambda x: x + 1.0)(1.0)                  # numba's one-time initialisation
    args = case.make_args(np.random.default_rng(0))
    # As enzpy's `_fresh_copy`: the case's options (fastmath), less the `nopython` njit warns about.
    options = {k: v for k, v in case.func.targetoptions.items() if k != "nopython"}
    kernel = numba.njit(**options)(case.python_function)
    result = {"numba": seconds(lambda: kernel(*copies(args)))}
    if kind == "numba":
        return result
    trivial = numba.njit(scaled_sum)
    trivial(np.ones(4), 2.0)
    result["enzpy one-time"] = seconds(lambda: enzpy.differentiate(trivial).autodiff(
        *annotated((np.ones(4), 2.0)), mode=kind))
    stages: dict[str, float] = {}
    install_stage_timers(stages)
    differentiable = enzpy.differentiate(kernel)
    result["first"] = seconds(lambda: differentiable.autodiff(*annotated(args), mode=kind))
    # The wrapped totals less the LLVM passes inside them, so that no two stages overlap.
    stages["pre-AD rest"] = (stages.pop("pre-AD total", 0.0) - stages.get("pre-AD LLVM passes", 0.0)
                             - stages.get("read to IR", 0.0))
    stages["JIT"] = stages.pop("post-AD total", 0.0) - stages.get("post-AD LLVM passes", 0.0)
    result["stages"] = dict(stages)
    stages.clear()
    result["second"] = seconds(lambda: differentiable.autodiff(*annotated(args), mode=kind))
    result["second stages"] = sum(stages.values())      # 0 when the second call compiled nothing
    return result


def run_worker(kind: str, case_name: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.compile_time", "--worker", kind, case_name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {WORKER_TIMEOUT_S} s"}
    if done.returncode != 0:
        lines = (done.stderr.strip() or "no output").splitlines()
        return {"error": f"exit {done.returncode}: {lines[-1][:200]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure() -> dict:
    from tests.kernels.stencils import BENCHMARK_ONLY, CASES
    CASES = CASES + BENCHMARK_ONLY
    measured = {}
    for case in CASES:
        for kind in KINDS:
            measured[case.name, kind] = run_worker(kind, case.name)
            print(f"{case.name} {kind}: {measured[case.name, kind]}", file=sys.stderr, flush=True)
    return measured


def cell(result: dict, key: str, scale: float = 1.0, digits: int = 2) -> str:
    return "failed" if "error" in result else f"{result[key] * scale:.{digits}f}"


def main_table(measured: dict, names: list[str]) -> str:
    lines = ["| kernel | numba first call s | reverse first call s | reverse 2nd call ms | reverse / numba "
             "| forward first call s | forward 2nd call ms | forward / numba |", "|---|" + "---:|" * 7]
    for name in names:
        primal, row = measured[name, "numba"], [name.removeprefix("stencil_"), cell(measured[name, "numba"], "numba")]
        for mode in MODES:
            result = measured[name, mode]
            ratio = "—" if "error" in result or "error" in primal else f"{result['first'] / primal['numba']:.2f}x"
            row += [cell(result, "first"), cell(result, "second", 1e3, 3), ratio]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def stage_table(measured: dict, names: list[str]) -> str:
    lines = ["| kernel | mode | numba (enzpy imported) s | " + " | ".join(f"{s} s" for s in STAGES)
             + " | other s | first call s | largest stage |", "|---|---|" + "---:|" * (len(STAGES) + 3) + "---|"]
    for name in names:
        for mode in MODES:
            result = measured[name, mode]
            if "error" in result:
                lines.append(f"| {name.removeprefix('stencil_')} | {mode} | {result['error']} |")
                continue
            stages = result["stages"]
            other = result["first"] - sum(stages.values())
            largest = max(STAGES, key=lambda s: stages.get(s, 0.0))
            lines.append(f"| {name.removeprefix('stencil_')} | {mode} | {result['numba']:.2f} | "
                         + " | ".join(f"{stages.get(s, 0.0):.2f}" for s in STAGES)
                         + f" | {other:.2f} | {result['first']:.2f} | {largest} "
                           f"({100 * stages.get(largest, 0.0) / result['first']:.0f}%) |")
    return "\n".join(lines)


def stage_summary(measured: dict, names: list[str]) -> str:
    """Each stage's share of all first calls together: which one to work on."""
    totals = dict.fromkeys(STAGES, 0.0)
    for result in (measured[n, m] for n in names for m in MODES):
        if "error" not in result:
            for stage in STAGES:
                totals[stage] += result["stages"].get(stage, 0.0)
    everything = sum(totals.values()) or 1.0
    ranked = sorted(totals, key=totals.get, reverse=True)
    return "Over all first calls together: " + ", ".join(
        f"{stage} {100 * totals[stage] / everything:.0f}%" for stage in ranked) + " of the staged time."


def verdict(measured: dict, names: list[str]) -> str:
    rows = [(f"{n.removeprefix('stencil_')} {m}", measured[n, m], measured[n, "numba"]) for n in names for m in MODES]
    failed = [what for what, r, p in rows if "error" in r or "error" in p]
    ok = [(what, r, r["first"] / p["numba"]) for what, r, p in rows if what not in failed]
    slow = [f"{what} ({r['first']:.1f} s)" for what, r, _ in ok if r["first"] >= TARGET_SECONDS]
    over = [f"{what} ({ratio:.2f}x)" for what, _, ratio in ok if ratio > TARGET_RATIO]
    slow_numba = [f"{n.removeprefix('stencil_')} ({measured[n, 'numba']['numba']:.1f} s)" for n in names
                  if measured[n, "numba"].get("numba", 0.0) >= TARGET_SECONDS]

    def target(what: str, missed: list[str]) -> str:
        return f"{what}: " + ("met" if not missed and not failed else "NOT met") + \
            (f" ({', '.join(missed)})" if missed else "") + ". "
    text = ("**Targets.** " + target(f"Every kernel differentiated (enzpy's first call, beyond numba's compile) "
                                     f"in under {TARGET_SECONDS:.0f} s on this machine", slow)
            + target(f"enzpy's first call at most {TARGET_RATIO:.0f}x numba's compile of the primal", over)
            + (f"Failed: {', '.join(failed)}. " if failed else ""))
    if ok:
        ratios, one_time = [ratio for _, _, ratio in ok], [r["enzpy one-time"] for _, r, _ in ok]
        text += (f"Ratios range from {min(ratios):.2f}x to {max(ratios):.2f}x. "
                 + (f"numba's own compile of the primal already takes over {TARGET_SECONDS:.0f} s for "
                    f"{', '.join(slow_numba)}, and a user waits numba's time plus enzpy's. " if slow_numba else "")
                 + f"Not in these numbers: enzpy's one-time cost, paid by the first kernel a process "
                 f"differentiates ({min(one_time):.2f} to {max(one_time):.2f} s here, on a trivial kernel). "
                 + ("The second call compiled nothing (served from the cache): it is marshalling and the "
                    "derivative's run." if all(r["second stages"] == 0.0 for _, r, _ in ok) else
                    "A second call spent time in compile stages: the cache missed."))
    return text


def header() -> str:
    import llvmlite
    import llvmlite.binding as llvm
    import numba
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "unknown"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())      # other jobs share the machine: say how busy
    return (f"enzpy {commit}; numba {numba.__version__}, llvmlite {llvmlite.__version__}, numpy {np.__version__}, "
            f"Python {platform.python_version()}; {platform.machine()} CPU {llvm.get_host_cpu_name()}, "
            f"{os.cpu_count()} cores, load average {load} at the start; one fresh process per number.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_time", description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "CASE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker:
        print(json.dumps(worker(*arguments.worker)))
        return 0
    setting = header()
    measured = measure()
    names = list(dict.fromkeys(name for name, _ in measured))
    body = (f"# Compile time: enzpy's first derivative call vs numba's compile\n\n{setting}\n\n"
            f"numba first call: a fresh `numba.njit` dispatcher's compile plus one run, in a process of its own. "
            f"enzpy first call: `differentiate(d).autodiff(...)` after numba compiled `d` in the same process "
            f"(float arrays Duplicated, the rest Const), so it is enzpy's cost beyond numba's compile.\n\n"
            f"{main_table(measured, names)}\n\n{verdict(measured, names)}\n\n"
            f"**Where the first call goes** (seconds). capture: linking numba's raw modules (the kernel "
            f"compiled already); read to IR: reading LLVM into enzpy's IR (Python; once, after the pre-AD "
            f"passes, unless one of enzpy's rewrites needs numba's module read first); pre-AD LLVM passes: "
            f"pre_read and pre_ad; pre-AD rest: around them (the rewrites, LLVM text written and parsed); AD: building the derivative; write IR text: "
            f"the derivative's module as LLVM text; post-AD LLVM passes: the pipeline on it; JIT: parsing, "
            f"verifying and MCJIT's machine code; other: the first call "
            f"minus the stages (annotations, marshalling, the derivative's run). numba's compile in the same "
            f"process, with enzpy's capture hook keeping each raw module's text, for comparison.\n\n"
            f"{stage_table(measured, names)}\n\n{stage_summary(measured, names)}\n")
    print(body)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
