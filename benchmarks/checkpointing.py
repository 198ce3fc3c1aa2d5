"""Checkpointed time loops: gradient time and memory against the whole loop in one kernel.

    python -m benchmarks.checkpointing [--quick] [--no-plot]

A viscous Burgers stepper (upwind advection, central diffusion, periodic, explicit Euler, in
place through a scratch array), 512 points and 10^4 steps (--quick: 128 and 2000); cost: the sum
of squares of the final state; gradient w.r.t. the initial state and the viscosity nu (Active).
Baseline: the time loop inside one numba kernel, `differentiate(burgers_loop).autodiff`, whose
tape grows with the steps. Checkpointed in the kernel: the same kernel with its loop written
`for _ in enzpy.checkpoint_range(steps, schedule)`. Checkpointed in Python:
`checkpointed(burgers_step, steps, schedule=...)`, a Python loop over the step kernel; the seed 2 u_final needs the final state, so its timed gradient
first runs the primal kernel (the in-kernel gradient's own forward sweep is in its time too).
Every gradient is checked against the in-kernel one (1e-10 relative) before timing; memory is
measured in a fresh subprocess per configuration (`peak_rss_growth`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm
import numba
import numpy as np

import enzpy
from benchmarks.timing import FULL_PLAN, QUICK_PLAN, interleaved_medians
from enzpy import Active, Const, Duplicated, Online, Periodic, Revolve
from enzpy.checkpointing import binomial_recomputations
from enzpy.checkpointing.plan import cached_plan
from enzpy.explain import explain

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
IN_KERNEL = "no checkpointing (one kernel)"
MARKED = {f"checkpoint_range, {name}": schedule for name, schedule in
          {"Revolve(5)": Revolve(5), "Revolve(20)": Revolve(20), "Revolve(100)": Revolve(100),
           "Periodic(100)": Periodic(100)}.items()}
"""In-kernel checkpointed loops: the baseline kernel with its loop marked."""
SCHEDULES = {"Revolve(5)": Revolve(5), "Revolve(20)": Revolve(20), "Revolve(100)": Revolve(100),
             "Periodic(100)": Periodic(100), "Online(20, period=1000)": Online(20, period=1000)}
TOLERANCE = 1e-10


@numba.njit
def burgers_step(u, scratch, nu, dt):
    n = u.size
    dx = 2.0 * np.pi / n
    for i in range(n):
        left, centre, right = u[i - 1], u[i], u[(i + 1) % n]       # u[-1]: periodic
        upwind = centre - left if centre > 0.0 else right - centre
        scratch[i] = centre - dt * centre * upwind / dx + nu * dt * (right - 2.0 * centre + left) / (dx * dx)
    for i in range(n):
        u[i] = scratch[i]


@numba.njit
def burgers_loop(u, scratch, nu, dt, steps):
    # The same step (LLVM inlines it), so both gradients do the same arithmetic.
    for _ in range(steps):
        burgers_step(u, scratch, nu, dt)
    energy = 0.0
    for i in range(u.size):
        energy += u[i] * u[i]
    return energy


def marked_loop(schedule):
    """`burgers_loop` with its time loop checkpointed by `schedule`."""
    @numba.njit
    def burgers_checkpointed(u, scratch, nu, dt, steps):
        for _ in enzpy.checkpoint_range(steps, schedule):
            burgers_step(u, scratch, nu, dt)
        energy = 0.0
        for i in range(u.size):
            energy += u[i] * u[i]
        return energy
    return burgers_checkpointed


class MarkedLoop:
    """An in-kernel checkpointed configuration: the differentiated kernel and, once `explain`ed,
    its loop's report (the same fields as a Python-level loop's)."""

    def __init__(self, schedule):
        self.differentiable = enzpy.differentiate(marked_loop(schedule))
        self.report = None
        self.tape_bytes = None

    def explain(self, problem):
        explained = explain(self.differentiable, *gradient_annotations(problem))
        self.report, self.tape_bytes = explained.checkpoint_runs[0], explained.cache_bytes


def gradient_annotations(problem):
    return (Duplicated(problem.initial_state(), np.zeros(problem.points)),
            Duplicated(np.zeros(problem.points), np.zeros(problem.points)), Active(problem.nu),
            Const(problem.dt), Const(problem.steps))


@dataclasses.dataclass(frozen=True)
class Problem:
    points: int
    steps: int
    nu: float = 0.01
    dt: float = 0.002          # CFL ~0.25 and diffusion number ~0.13 at 512 points: stable

    def initial_state(self) -> np.ndarray:
        return 1.0 + 0.5 * np.sin(np.linspace(0.0, 2 * np.pi, self.points, endpoint=False))


FULL_PROBLEM, QUICK_PROBLEM = Problem(512, 10_000), Problem(128, 2000)


def in_kernel_gradient(differentiable, problem: Problem):
    """(energy, d energy / d u0, d energy / d nu) with the whole loop in one kernel."""
    u, scratch, du = problem.initial_state(), np.zeros(problem.points), np.zeros(problem.points)
    # scratch carries the derivative from one loop to the next: it needs a shadow, not Const.
    annotated = (Duplicated(u, du), Duplicated(scratch, np.zeros(problem.points)), Active(problem.nu),
                 Const(problem.dt), Const(problem.steps))
    (dnu,) = differentiable.autodiff(*annotated)
    return float(u @ u), du, dnu          # autodiff leaves u as the primal does: the final state


def checkpointed_gradient(loop, problem: Problem):
    """The same through a checkpointed loop: primal kernel for the seed, then `loop.autodiff`."""
    final = problem.initial_state()
    energy = burgers_loop(final, np.zeros(problem.points), problem.nu, problem.dt, problem.steps)
    u, du = problem.initial_state(), 2.0 * final
    (dnu,) = loop.autodiff(Duplicated(u, du), np.zeros(problem.points), Active(problem.nu), Const(problem.dt))
    return energy, du, dnu


def gradient_call(name: str, problem: Problem):
    """A no-argument callable computing `name`'s gradient (and the object holding its report)."""
    if name == IN_KERNEL:
        differentiable = enzpy.differentiate(burgers_loop)
        return (lambda: in_kernel_gradient(differentiable, problem)), differentiable
    if name in MARKED:
        marked = MarkedLoop(MARKED[name])
        return (lambda: in_kernel_gradient(marked.differentiable, problem)), marked
    loop = enzpy.checkpointed(burgers_step, problem.steps, schedule=SCHEDULES[name])
    return (lambda: checkpointed_gradient(loop, problem)), loop


def check(name: str, result, reference) -> None:
    energy, du, dnu = result
    errors = {"energy": abs(energy - reference[0]) / abs(reference[0]),
              "du0": np.abs(du - reference[1]).max() / np.abs(reference[1]).max(),
              "dnu": abs(dnu - reference[2]) / abs(reference[2])}
    if not all(np.isfinite(e) and e <= TOLERANCE for e in errors.values()):
        sys.exit(f"{name}: gradient differs from the in-kernel one beyond {TOLERANCE:g} relative: {errors}")


def peak_rss_growth(name: str, quick: bool) -> int | None:
    """Bytes: peak RSS during one gradient minus RSS just before, in this (fresh) process.

    A short warm-up run first compiles everything with the same types (its
    tape is tiny, so enzpy's reused spare tape buffer does not pre-pay the
    full one). Then Linux's peak-RSS counter (VmHWM) is reset through
    /proc/self/clear_refs, one gradient runs, and VmHWM is read back. None if
    the counter cannot be reset (not Linux, or no permission)."""
    problem = QUICK_PROBLEM if quick else FULL_PROBLEM
    call, holder = gradient_call(name, dataclasses.replace(problem, steps=3))
    call()
    if name in MARKED:     # the plan is built once per loop length (Python memory): not the gradient's
        cached_plan(MARKED[name], problem.steps)
        call = lambda: in_kernel_gradient(holder.differentiable, problem)     # compiled already
    else:
        call, _ = gradient_call(name, problem)
    try:
        before = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return None
    call()
    return (_status_kib("VmHWM") - before) * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def measure_memory_in_subprocesses(names, quick: bool) -> dict[str, int | None]:
    growth = {}
    for name in names:
        command = [sys.executable, "-m", "benchmarks.checkpointing", "--rss-of", name] + (["--quick"] * quick)
        output = subprocess.run(command, check=True, capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1]).stdout
        growth[name] = json.loads(output.strip().splitlines()[-1])
        print(f"peak RSS growth of {name}: {growth[name]}", file=sys.stderr, flush=True)
    return growth


def measure(quick: bool) -> tuple[list[dict], dict]:
    problem = QUICK_PROBLEM if quick else FULL_PROBLEM
    names = [IN_KERNEL, *MARKED, *SCHEDULES]
    calls, holders = zip(*(gradient_call(name, problem) for name in names))
    reference = calls[0]()
    for name, call in zip(names[1:], calls[1:]):
        check(name, call(), reference)
    tape_bytes = explain(holders[0], *gradient_annotations(problem)).cache_bytes
    for holder in holders:
        if isinstance(holder, MarkedLoop):
            holder.explain(problem)
    step = holders[names.index(next(iter(SCHEDULES)))].step
    u, scratch = problem.initial_state(), np.zeros(problem.points)
    step_annotations = (Duplicated(u, np.zeros_like(u)), Duplicated(scratch, np.zeros_like(scratch)),
                        Active(problem.nu), Const(problem.dt))
    step_tape_bytes = explain(step, *step_annotations).cache_bytes
    print("timing ...", file=sys.stderr, flush=True)
    timed = {"primal": lambda: burgers_loop(problem.initial_state(), np.zeros(problem.points), problem.nu,
                                            problem.dt, problem.steps),
             # What one Python-level step costs, to explain the checkpointed times.
             "one step": lambda: step.dispatcher(u, scratch, problem.nu, problem.dt),
             "one step's gradient": lambda: step.autodiff(*step_annotations),
             **dict(zip(names, calls))}
    medians = {name: t.median_seconds for name, t in interleaved_medians(timed, QUICK_PLAN if quick else FULL_PLAN)
               .items()}
    rss = measure_memory_in_subprocesses(names, quick)
    baseline = medians[IN_KERNEL]
    rows = []
    for name, holder in zip(names, holders):
        report = getattr(holder, "report", None)
        # A marked loop's tape holds one step's (the steps the plan reverses next); a Python-level
        # loop's is one step's gradient call.
        one_step = holder.tape_bytes if isinstance(holder, MarkedLoop) else step_tape_bytes
        ad_bytes = tape_bytes if report is None else report.peak_memory_bytes + one_step
        schedule = MARKED.get(name, SCHEDULES.get(name))
        rows.append({"name": name, "seconds": medians[name], "rss": rss[name], "ad_bytes": ad_bytes,
                     "snapshots": 0 if report is None else report.peak_snapshots,
                     "forward": problem.steps if report is None else report.forward_steps,
                     "recomputed": 0 if report is None else report.recomputed_steps,
                     "optimum": binomial_recomputations(problem.steps, schedule.snapshots)
                     if isinstance(schedule, Revolve) else None,
                     "vs primal": medians[name] / medians["primal"], "vs in-kernel": medians[name] / baseline,
                     "memory %": 100 * ad_bytes / tape_bytes,
                     "rss %": None if rss[name] is None or not rss[IN_KERNEL] else 100 * rss[name] / rss[IN_KERNEL]})
    extra = {"problem": problem, "primal": medians["primal"], "step": medians["one step"],
             "step gradient": medians["one step's gradient"], "step tape": step_tape_bytes,
             "snapshot": holders[names.index(next(iter(SCHEDULES)))].report.snapshot_bytes,
             "marked snapshot": holders[1].report.snapshot_bytes}
    return rows, extra


def markdown_table(rows: list[dict]) -> str:
    def number(value, digits=3):
        return "—" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.{digits}g}"
    lines = ["| configuration | peak snapshots | forward steps | recomputed | binomial optimum | gradient ms "
             "| / primal | / in-kernel gradient | AD memory bytes | % of full tape | peak RSS growth MB "
             "| RSS % of in-kernel |", "|---|" + "---:|" * 11]
    for row in rows:
        rss_mb = None if row["rss"] is None else row["rss"] / 1e6
        lines.append(f"| {row['name']} | {row['snapshots']} | {row['forward']:,} | {row['recomputed']:,} | "
                     f"{number(row['optimum'])} | {row['seconds'] * 1e3:.1f} | {row['vs primal']:.1f} | "
                     f"{row['vs in-kernel']:.2f} | {row['ad_bytes']:,} | {row['memory %']:.3g} | "
                     f"{number(rss_mb)} | {number(row['rss %'])} |")
    return "\n".join(lines)


def discussion(rows: list[dict], extra: dict) -> str:
    problem = extra["problem"]
    by_name = {row["name"]: row for row in rows}
    target, baseline = by_name["Revolve(20)"], by_name[IN_KERNEL]
    marked = by_name["checkpoint_range, Revolve(20)"]

    def memory_met(row):
        return row["memory %"] <= 5 and (row["rss %"] is None or row["rss %"] <= 5)
    marked_primal_steps = marked["forward"] * extra["primal"] / problem.steps
    # Where Revolve(20)'s time goes, from the per-call costs timed alongside.
    adjoint_ms = problem.steps * extra["step gradient"] * 1e3
    forward_ms = target["forward"] * extra["step"] * 1e3 + extra["primal"] * 1e3
    rest_ms = target["seconds"] * 1e3 - adjoint_ms - forward_ms
    return (
        f"**How memory was measured.** AD memory: the tape the in-kernel gradient fills "
        f"(`explain(...).cache_bytes`, the bytes its forward sweep pushes), or for a checkpointed loop "
        f"`report.peak_memory_bytes` (snapshots plus the states kept for the adjoint steps; one snapshot is u "
        f"and scratch, {extra['snapshot']:,} bytes) plus one step's tape ({extra['step tape']:,} bytes). Peak "
        f"RSS growth: VmHWM after one gradient minus VmRSS just before it, with the peak counter reset through "
        f"/proc/self/clear_refs, each configuration in a fresh process after a 3-step warm-up that compiles "
        f"everything (so the in-kernel gradient's reused spare tape buffer is small). enzpy's tape is malloc'ed "
        f"outside numba's runtime, so `rtsys.get_allocation_stats()` does not see it (it only counts NRT "
        f"allocations and frees, no bytes and no peak, and only under NUMBA_NRT_STATS=1), nor does tracemalloc "
        f"(Python's allocators only). RSS moves in 4 KiB pages and a process reuses memory it freed before asking the OS for "
        f"more, so kilobyte-sized RSS growth (or 0) is noise; the tape's is not.\n\n"
        f"**Targets (Revolve(20)), in the kernel.** Memory at most 5% of the full tape's: "
        f"{'met' if memory_met(marked) else 'NOT met'} ({marked['memory %']:.2g}% by enzpy's count"
        + (f", {marked['rss %']:.2g}% by peak RSS growth" if marked["rss %"] is not None else "") + "). "
        f"Time at most 3x the un-checkpointed gradient: {'met' if marked['vs in-kernel'] <= 3 else 'NOT met'} "
        f"({marked['vs in-kernel']:.2f}x). The marked loop's gradient runs every step in generated code: its "
        f"{marked['forward']:,} forward steps cost about {marked_primal_steps * 1e3:.0f} ms at the primal's "
        f"speed, the rest is the one adjoint sweep (each step's augmented forward and reverse) and the "
        f"snapshot copies ({extra['marked snapshot']:,} bytes each). Revolve recomputes exactly the binomial "
        f"optimum, in the kernel and in Python.\n\n"
        f"**Targets (Revolve(20)), Python-level loop.** Memory: {'met' if memory_met(target) else 'NOT met'} "
        f"({target['memory %']:.2g}% by enzpy's count"
        + (f", {target['rss %']:.2g}% by peak RSS growth" if target["rss %"] is not None else "") + "). "
        f"Time: {'met' if target['vs in-kernel'] <= 3 else 'NOT met'} ({target['vs in-kernel']:.1f}x).\n\n"
        f"**Why the Python-level time.** The loop is Python around the step kernel, and the per-step Python overhead "
        f"dominates: one step's gradient through `Differentiable.autodiff` costs "
        f"{extra['step gradient'] * 1e6:.1f} µs and one plain step through the dispatcher "
        f"{extra['step'] * 1e6:.2f} µs, against {baseline['seconds'] / problem.steps * 1e6:.2f} µs per step for "
        f"the whole in-kernel gradient (primal: {extra['primal'] / problem.steps * 1e6:.2f} µs per step). Of "
        f"Revolve(20)'s {target['seconds'] * 1e3:.0f} ms, about {adjoint_ms:.0f} ms are the {problem.steps:,} "
        f"adjoint calls, {forward_ms:.0f} ms the {target['forward']:,} forward step calls and the seed's primal, "
        f"and the remaining {rest_ms:.0f} ms Python bookkeeping between the calls (the driver following about four "
        f"schedule actions per step, the loop's per-step argument lists, the schedule's generator). "
        f"Fewer snapshots mean more recomputed forward steps, which are cheap next to the adjoint calls, so time "
        f"hardly depends on the snapshot count; Periodic(100) is faster: two forward steps per step, and a "
        f"few schedule actions per period. A step doing more work per call (a "
        f"bigger grid, a 2-D field) would amortize the overhead. The in-kernel gradient is fast, but its tape "
        f"({baseline['ad_bytes'] / 1e6:.0f} MB here) grows linearly with the steps.")


def write_plot(rows: list[dict], path: Path, title: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")      # no display on build machines
        import matplotlib.pyplot as pyplot
    except Exception as error:
        return f"no plot: matplotlib is not available ({type(error).__name__})"
    baseline, checkpointed = rows[0], rows[1:]
    figure, (memory, time) = pyplot.subplots(1, 2, figsize=(12, 5))
    # Revolve as a line over its snapshot counts; the other schedules as single points.
    revolve = [row for row in checkpointed if row["name"].startswith("Revolve")]
    marked = [row for row in checkpointed if row["name"].startswith("checkpoint_range, Revolve")]
    others = [row for row in checkpointed if row not in revolve and row not in marked]
    for group, style, colour, what in ((marked, "o-", "C2", "checkpoint_range in the kernel"),
                                       (revolve, "o-", "C0", "checkpointed Python loop"), (others, "s", "C0", None)):
        memory.plot([r["snapshots"] for r in group], [r["ad_bytes"] / 1e6 for r in group], style, color=colour,
                    label=f"AD memory, {what}" if what else None)
        time.plot([r["snapshots"] for r in group], [r["seconds"] * 1e3 for r in group], style, color=colour,
                  label=what)
    # RSS growth of 0 (served from memory the process already held) has no place on a log axis.
    grown = [row for row in checkpointed if row["rss"]]
    memory.plot([r["snapshots"] for r in grown], [r["rss"] / 1e6 for r in grown], "x", color="C1",
                label="peak RSS growth (where above 0)")
    if baseline["rss"]:
        memory.axhline(baseline["rss"] / 1e6, color="grey", linestyle=":", label="in-kernel: peak RSS growth")
    memory.axhline(baseline["ad_bytes"] / 1e6, color="black", label="in-kernel: tape")
    memory.axhline(0.05 * baseline["ad_bytes"] / 1e6, color="red", linestyle="--", label="target: 5% of the tape")
    memory.set(xscale="log", yscale="log", xlabel="peak snapshots", ylabel="MB", title="memory")
    time.axhline(baseline["seconds"] * 1e3, color="black", label="in-kernel gradient")
    time.axhline(3 * baseline["seconds"] * 1e3, color="red", linestyle="--", label="target: 3x in-kernel")
    time.set(xscale="log", xlabel="peak snapshots", ylabel="ms", title="gradient time", ylim=(0, None))
    for row in checkpointed:
        for axes, y in ((memory, row["ad_bytes"] / 1e6), (time, row["seconds"] * 1e3)):
            axes.annotate(row["name"], (row["snapshots"], y), xytext=(-6, 6) if row in others else (4, 4),
                          textcoords="offset points", fontsize=7, ha="right" if row in others else "left")
    for axes in (memory, time):
        axes.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpointing", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 points, 2000 steps, fewer repetitions")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument("--rss-of", help=argparse.SUPPRESS)     # internal: one configuration's RSS, as JSON
    arguments = parser.parse_args(argv)
    if arguments.rss_of:
        print(json.dumps(peak_rss_growth(arguments.rss_of, arguments.quick)))
        return 0
    rows, extra = measure(arguments.quick)
    problem, plan = extra["problem"], QUICK_PLAN if arguments.quick else FULL_PLAN
    table = markdown_table(rows)
    setting = (f"{'quick' if arguments.quick else 'full'} run: Burgers, {problem.points} points, {problem.steps:,} "
               f"steps; gradient w.r.t. u0 and nu; median of up to {plan.repetitions} interleaved samples (at "
               f"least 3, within {plan.budget_seconds:g} s each) after {plan.warmup} warm-up; numba "
               f"{numba.__version__}, llvmlite {llvmlite.__version__}, numpy {np.__version__}, "
               f"checkpoint_schedules {importlib.metadata.version('checkpoint_schedules')}, "
               f"Python {platform.python_version()}, CPU {llvm.get_host_cpu_name()}.")
    text = f"{setting}\n\n{table}\n\n{discussion(rows, extra)}\n"
    print(text)
    stem = "checkpointing" + ("-quick" if arguments.quick else "")
    RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIRECTORY / f"{stem}.md").write_text(f"# Checkpointed loops vs one differentiated kernel\n\n{text}")
    print(f"wrote {RESULTS_DIRECTORY / f'{stem}.md'}", file=sys.stderr)
    if not arguments.no_plot:
        path = RESULTS_DIRECTORY / f"{stem}.png"
        problem_text = write_plot(rows, path, f"Burgers {problem.points} points, {problem.steps:,} steps: "
                                              f"checkpointed vs one kernel, CPU {llvm.get_host_cpu_name()}")
        print(problem_text or f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
