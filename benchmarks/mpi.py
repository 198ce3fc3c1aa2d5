"""The distributed Burgers gradient (examples/mpi_burgers.py) at 1, 2 and 4 ranks.

    python -m benchmarks.mpi [--quick]        (needs the mpi extra; starts mpiexec itself)

For each rank count, mpiexec runs this module's `--ranks-run` on that many
processes: every rank times the primal kernel and its gradient
(`value_and_grad`, checkpointed time loop, halo exchange by sendrecv, energy
by allreduce) on its piece of one global grid (strong scaling), between
barriers, median of the repetitions. Reported: primal and gradient times and
gradient / primal per rank count, and that ratio against the one-rank ratio
(the issue's target: within 1.3x on 2 ranks), so the cost of the MPI adjoints
shows. Written to benchmarks/results/mpi.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
RANKS = (1, 2, 4)


def ranks_run(points: int, steps: int, repetitions: int) -> None:
    """On every rank: time the primal and the gradient; rank 0 prints the medians as JSON."""
    import numba_mpi as mpi
    import numpy as np

    import enzpy
    from examples import mpi_burgers

    rank, size = mpi.rank(), mpi.size()
    piece = points // size
    u0 = mpi_burgers.initial_state(points)[rank * piece:(rank + 1) * piece].copy()
    nu, dx = 0.05, 2 * np.pi / points
    differentiable = enzpy.differentiate(mpi_burgers.burgers_energy)
    calls = {"primal": lambda: mpi_burgers.burgers_energy(u0, nu, steps, dx),
             "gradient": lambda: differentiable.value_and_grad(u0, nu, steps, dx)}
    for call in calls.values():               # compile, and build the checkpointing plan
        call()
    seconds = {name: [] for name in calls}
    for _ in range(repetitions):
        for name, call in calls.items():
            mpi.barrier()
            start = time.perf_counter()
            call()
            mpi.barrier()
            seconds[name].append(time.perf_counter() - start)
    if rank == 0:
        print(json.dumps({name: statistics.median(values) for name, values in seconds.items()}))


def measure(quick: bool) -> list[dict]:
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("no mpiexec: pip install -e '.[mpi]'")
    points, steps, repetitions = (256, 200, 3) if quick else (4096, 2000, 5)
    rows = []
    for ranks in RANKS:
        command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "benchmarks.mpi", "--ranks-run",
                   "--points", str(points), "--steps", str(steps), "--repetitions", str(repetitions)]
        environment = dict(os.environ, PYTHONPATH=str(ROOT))
        output = subprocess.run(command, cwd=ROOT, env=environment, check=True, capture_output=True,
                                text=True).stdout
        times = json.loads(output.strip().splitlines()[-1])
        rows.append({"ranks": ranks, **times, "ratio": times["gradient"] / times["primal"]})
        print(f"{ranks} ranks: {times}", file=sys.stderr, flush=True)
    for row in rows:
        row["ratio vs 1 rank"] = row["ratio"] / rows[0]["ratio"]
    return rows, points, steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mpi", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 points, 200 steps")
    parser.add_argument("--ranks-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, default=4096, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=2000, help=argparse.SUPPRESS)
    parser.add_argument("--repetitions", type=int, default=5, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.ranks_run:
        ranks_run(arguments.points, arguments.steps, arguments.repetitions)
        return 0
    rows, points, steps = measure(arguments.quick)
    cores = os.cpu_count()
    lines = [f"Distributed Burgers (examples/mpi_burgers.py): {points} points split over the ranks, {steps} "
             f"steps in a checkpoint_range loop (Revolve, {10} snapshots), halo exchange by sendrecv, energy by "
             f"allreduce; median of the repetitions between barriers; MPICH, {cores} cores on this machine"
             + (" (4 ranks oversubscribe it)" if cores and cores < 4 else "") + ".", "",
             "| ranks | primal ms | gradient ms | gradient / primal | ratio / 1-rank ratio |",
             "|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['ranks']} | {row['primal'] * 1e3:.2f} | {row['gradient'] * 1e3:.2f} | "
                     f"{row['ratio']:.2f} | {row['ratio vs 1 rank']:.2f} |")
    two = next(row for row in rows if row["ranks"] == 2)
    lines += ["", f"Target: gradient / primal on 2 ranks within 1.3x of the 1-rank ratio: "
                  f"{'met' if two['ratio vs 1 rank'] <= 1.3 else 'NOT met'} ({two['ratio vs 1 rank']:.2f}x). "
                  "The gradient recomputes steps from snapshots (the checkpointed loop), and every recomputed "
                  "step exchanges its halos again, as the reverse sweep's adjoint exchanges do."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    stem = "mpi" + ("-quick" if arguments.quick else "")
    (RESULTS_DIRECTORY / f"{stem}.md").write_text("# MPI adjoints: distributed Burgers\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
