"""MPI adjoints (enzpy/mpi, rules/mpi.py): recognition in the IR, and the rank checks under mpiexec.

tests/mpi/ranks_checks.py holds the checks that need several ranks; here they
run under `mpiexec -n 2` and `-n 4` (each rank runs pytest; mpiexec fails if
any rank does). Without the `mpi` extra (`pip install -e ".[mpi]"`: MPICH,
mpi4py, numba-mpi) these tests skip, saying so.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numba_mpi = pytest.importorskip("numba_mpi", reason="MPI tests need the mpi extra: pip install -e '.[mpi]'")

import numba  # noqa: E402

import enzpy  # noqa: E402
from enzpy import DifferentiationError  # noqa: E402
from enzpy.driver import kernel_ir  # noqa: E402
from enzpy.mpi import mpi_routines_in  # noqa: E402
from enzpy.mpi.recognition import handle_name, constant_handle  # noqa: E402
from enzpy.ir import core  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


@numba.njit
def halo_and_sum(u):
    rank, size = numba_mpi.rank(), numba_mpi.size()
    ghost = np.zeros(1)
    numba_mpi.sendrecv(u[-1:], (rank + 1) % size, ghost, (rank - 1) % size, 3, 3)
    local = np.zeros(1)
    local[0] = np.sum(u * u) + ghost[0] * u[0]
    total = np.zeros(1)
    numba_mpi.allreduce(local, total)
    return total[0]


def test_numba_mpi_calls_are_named_with_their_handles():
    module, captured = kernel_ir(halo_and_sum, (np.ones(4),))
    assert {"MPI_Sendrecv", "MPI_Allreduce", "MPI_Comm_rank", "MPI_Comm_size"} <= mpi_routines_in(module)
    allreduce = next(i for i in module.functions[captured.convention.entry].instructions()
                     if isinstance(i, core.Call) and getattr(i.callee, "name", "") == "MPI_Allreduce")
    assert handle_name(constant_handle(allreduce.operands[3])) == "MPI_DOUBLE"
    assert handle_name(constant_handle(allreduce.operands[4])) == "MPI_SUM"


def test_on_one_rank_the_gradient_is_the_serial_one():
    u = np.linspace(0.5, 1.5, 7)
    value, (gradient,) = enzpy.differentiate(halo_and_sum).value_and_grad(u)
    assert value == pytest.approx(np.sum(u * u) + u[-1] * u[0], rel=1e-15)
    expected = 2 * u
    expected[0] += u[-1]
    expected[-1] += u[0]
    np.testing.assert_allclose(gradient, expected, rtol=1e-15)


def test_an_mpi_routine_without_a_rule_is_a_named_error():
    @numba.njit
    def gathered(x):
        everything = np.zeros(x.shape[0] * numba_mpi.size())
        numba_mpi.allgather(x * 2.0, everything, x.shape[0])
        return np.sum(everything ** 2)

    with pytest.raises(DifferentiationError, match="MPI_Allgather"):
        enzpy.differentiate(gathered).grad(np.ones(3))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (the mpi extra installs MPICH's)")
@pytest.mark.parametrize("ranks", [2, 4])
def test_every_rank_passes_the_rank_checks(ranks):
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
               str(ROOT / "tests" / "mpi" / "ranks_checks.py")]
    run = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"mpiexec -n {ranks} failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert run.stdout.count(" passed") == ranks


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (the mpi extra installs MPICH's)")
@pytest.mark.parametrize("halos", [[], ["--nonblocking"]], ids=["sendrecv", "nonblocking"])
def test_the_distributed_burgers_example_runs_on_two_ranks(halos):
    command = [MPIEXEC, "-n", "2", sys.executable, str(ROOT / "examples" / "mpi_burgers.py"), "--steps", "30",
               *halos]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK" in run.stdout


@numba.njit
def local_energy(x):
    return np.sum(x * x)


@numba.njit
def partly_local(x):
    total, local = np.zeros(1), np.zeros(1)
    local[0] = np.sum(x)
    numba_mpi.allreduce(local, total)
    return total[0] + x[0]


@numba.njit
def summed_in_a_loop(x, scale):
    # A loop over the collective's result: its phi stays "the same on every rank".
    total, local = np.zeros(x.shape[0]), x * scale
    numba_mpi.allreduce(local, total)
    s = 0.0
    for value in total:
        s = s * 0.5 + np.tanh(value)
    return s


@pytest.mark.parametrize("kernel, arguments, replicated", [
    (halo_and_sum, (np.ones(4),), True), (local_energy, (np.ones(4),), False),
    (partly_local, (np.ones(4),), False), (summed_in_a_loop, (np.ones(4), 0.5), True)],
    ids=["allreduced", "local", "partly-local", "loop-over-allreduced"])
def test_which_results_are_seeded_once(kernel, arguments, replicated):
    from enzpy.mpi.ranks import replicated_result
    module, captured = kernel_ir(kernel, arguments)
    assert replicated_result(module.functions[captured.convention.entry]) is replicated
