"""A distributed 1-D viscous Burgers' equation and its gradient on every rank.

    mpiexec -n 2 .venv/bin/python examples/mpi_burgers.py      (after pip install -e ".[mpi]")

The periodic domain of N points is split into equal pieces, one per rank, each
with a ghost cell at both ends. A time step exchanges the ghost cells with the
neighbours (`numba_mpi.sendrecv`, or `isend`/`irecv`/`waitall` with
--nonblocking) and updates the interior (upwind advection, central diffusion);
the time loop is an `enzpy.checkpoint_range` loop (Revolve, 10 snapshots), so
the reverse sweep recomputes steps from snapshots, halo exchanges included. The
energy sum(u^2) / 2 is summed over the ranks by `numba_mpi.allreduce`, so every
rank returns the same value.

Every rank calls `value_and_grad` with its own piece: it gets the gradient with
respect to its piece of the initial state, and the full derivative with
respect to the viscosity. Rank 0 gathers the pieces and checks them against the
serial kernel's gradient (and that one against finite differences).
"""

from __future__ import annotations

import argparse
import sys

import numba
import numba_mpi as mpi
import numpy as np

import enzpy

SNAPSHOTS = 10


@numba.njit
def exchange_halos(u):
    """Ghost cells u[0] and u[-1] from the left and right neighbours (periodic)."""
    rank, size = mpi.rank(), mpi.size()
    left, right = (rank - 1) % size, (rank + 1) % size
    mpi.sendrecv(u[-2:-1], right, u[0:1], left, 1, 1)       # my last cell is my right neighbour's ghost
    mpi.sendrecv(u[1:2], left, u[-1:], right, 2, 2)         # my first cell is my left neighbour's ghost


@numba.njit
def exchange_halos_nonblocking(u):
    rank, size = mpi.rank(), mpi.size()
    left, right = (rank - 1) % size, (rank + 1) % size
    requests = np.zeros(4, dtype=mpi.RequestType)
    status, requests[0:1] = mpi.irecv(u[0:1], left, 1)
    status, requests[1:2] = mpi.irecv(u[-1:], right, 2)
    status, requests[2:3] = mpi.isend(u[-2:-1], right, 1)
    status, requests[3:4] = mpi.isend(u[1:2], left, 2)
    mpi.waitall(requests)


@numba.njit
def update(u, un, nu, dt, dx):
    n = u.shape[0] - 2
    for i in range(1, n + 1):
        centre = u[i]
        upwind = centre - u[i - 1] if centre > 0.0 else u[i + 1] - centre
        un[i] = centre - dt * centre * upwind / dx + nu * dt * (u[i + 1] - 2.0 * centre + u[i - 1]) / (dx * dx)
    for i in range(1, n + 1):
        u[i] = un[i]


def make_burgers_energy(exchange):
    """The distributed energy with halos exchanged by `exchange` (a numba function of u)."""
    @numba.njit
    def burgers_energy(u0, nu, steps, dx):
        """Energy of the global state after `steps` steps; u0: this rank's piece (no ghosts)."""
        n = u0.shape[0]
        u = np.zeros(n + 2)
        un = np.zeros(n + 2)
        u[1:n + 1] = u0
        dt = 0.2 * dx
        for _ in enzpy.checkpoint_range(steps, SNAPSHOTS):
            exchange(u)
            update(u, un, nu, dt, dx)
        local = np.zeros(1)
        local[0] = 0.5 * np.sum(u[1:n + 1] ** 2)
        total = np.zeros(1)
        mpi.allreduce(local, total)
        return total[0]
    return burgers_energy


burgers_energy = make_burgers_energy(exchange_halos)
burgers_energy_nonblocking = make_burgers_energy(exchange_halos_nonblocking)


@numba.njit
def serial_burgers_energy(u0, nu, steps, dx):
    """The same computation on one process: the reference."""
    n = u0.shape[0]
    u = np.zeros(n + 2)
    un = np.zeros(n + 2)
    u[1:n + 1] = u0
    dt = 0.2 * dx
    for _ in range(steps):
        u[0], u[n + 1] = u[n], u[1]
        update(u, un, nu, dt, dx)
    return 0.5 * np.sum(u[1:n + 1] ** 2)


def initial_state(points: int) -> np.ndarray:
    x = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    return 1.0 + 0.5 * np.sin(x) + 0.1 * np.cos(3 * x)


def finite_difference(function, u0, nu, steps, dx, direction, step=1e-5):
    """5-point derivative along `direction` (u0) of the serial energy."""
    values = [function(u0 + k * step * direction, nu, steps, dx) for k in (-2, -1, 1, 2)]
    return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=64, help="global grid points (divisible by the ranks)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--nonblocking", action="store_true", help="halos by isend/irecv/waitall")
    arguments = parser.parse_args(argv)
    rank, size = mpi.rank(), mpi.size()
    if arguments.points % size:
        sys.exit(f"--points {arguments.points} is not divisible by {size} ranks")
    nu, dx, steps = 0.05, 2 * np.pi / arguments.points, arguments.steps
    u0 = initial_state(arguments.points)
    piece = arguments.points // size
    mine = u0[rank * piece:(rank + 1) * piece].copy()

    kernel = burgers_energy_nonblocking if arguments.nonblocking else burgers_energy
    energy, (gradient, nu_bar, _, _) = enzpy.differentiate(kernel).value_and_grad(mine, nu, steps, dx)
    pieces = np.zeros(arguments.points)
    gathered = np.zeros(arguments.points)
    pieces[rank * piece:(rank + 1) * piece] = gradient
    mpi.allreduce(pieces, gathered)

    failures = 0
    if rank == 0:
        serial_energy, (serial_gradient, serial_nu, _, _) = enzpy.differentiate(
            serial_burgers_energy).value_and_grad(u0.copy(), nu, steps, dx)
        direction = np.cos(np.arange(arguments.points))
        fd = finite_difference(serial_burgers_energy, u0, nu, steps, dx, direction)
        errors = {"energy": abs(energy - serial_energy) / abs(serial_energy),
                  "gradient": np.abs(gathered - serial_gradient).max() / np.abs(serial_gradient).max(),
                  "d/dnu": abs(nu_bar - serial_nu) / abs(serial_nu),
                  "serial vs finite differences": abs(serial_gradient @ direction - fd) / abs(fd)}
        print(f"{size} ranks, {arguments.points} points, {steps} steps: energy {energy:.12g}")
        for name, error in errors.items():
            print(f"  {name}: relative error {error:.2e}")
        tolerance = {"serial vs finite differences": 1e-7}
        failures = sum(error > tolerance.get(name, 1e-12) for name, error in errors.items())
        print("OK" if not failures else f"{failures} check(s) FAILED")
    # Every rank also gets the full derivative in nu.
    nu_values = np.zeros(size)
    everyone = np.zeros(size)
    nu_values[rank] = nu_bar
    mpi.allreduce(nu_values, everyone)
    if not np.all(everyone == everyone[0]):
        print(f"rank {rank}: d/dnu differs between the ranks: {everyone}")
        failures += 1
    flags = np.array([failures], dtype=np.float64)
    total = np.zeros(1)
    mpi.allreduce(flags, total)
    return 1 if total[0] else 0


if __name__ == "__main__":
    sys.exit(main())
