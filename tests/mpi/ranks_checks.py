"""MPI kernels differentiated on every rank (run by tests/test_mpi.py under `mpiexec -n 2` and `-n 4`).

Every test runs on all ranks at once; a failing rank fails mpiexec. Each kernel
is checked three ways: the gathered gradient against the serial program's (to
1e-12), against 5-point finite differences of the distributed function (every
rank perturbs its piece along its piece of one global direction), and reverse
against forward mode (<J t, 1> = <t, J^T 1>, the dot products summed over
ranks).
"""

import ctypes

import numba
import numba_mpi as mpi
from mpi4py import MPI
import numpy as np
import pytest

import enzpy
from examples import mpi_burgers

RANK, SIZE = mpi.rank(), mpi.size()
POINTS_PER_RANK = 6


def total(value: float) -> float:
    """The sum over ranks of a float."""
    send, receive = np.array([value]), np.zeros(1)
    mpi.allreduce(send, receive)
    return receive[0]


def piece(global_array: np.ndarray) -> np.ndarray:
    n = global_array.shape[0] // SIZE
    return global_array[RANK * n:(RANK + 1) * n].copy()


def gathered(local: np.ndarray) -> np.ndarray:
    n = local.shape[0]
    pieces = np.zeros(n * SIZE)
    pieces[RANK * n:(RANK + 1) * n] = local
    result = np.zeros_like(pieces)
    mpi.allreduce(pieces, result)
    return result


@numba.njit
def sum_energy(x, scale):
    local = np.zeros(1)
    local[0] = scale * np.sum(np.sin(x) * x)
    result = np.zeros(1)
    mpi.allreduce(local, result)
    return result[0] * result[0]


def serial_sum_energy(x, scale):
    return (scale * np.sum(np.sin(x) * x)) ** 2


@numba.njit
def max_energy(x, scale):
    # Elementwise MAX over ranks: the adjoint goes to the rank holding the winning element.
    result = np.zeros(x.shape[0])
    mpi.allreduce(x * scale, result, mpi.Operator.MAX)
    return np.sum(result * result)


def serial_max_energy(x, scale):
    return np.sum((scale * x.reshape(SIZE, -1)).max(axis=0) ** 2)


@numba.njit
def min_energy(x, scale):
    result = np.zeros(x.shape[0])
    mpi.allreduce(x * scale, result, mpi.Operator.MIN)
    return np.sum(np.exp(result))


def serial_min_energy(x, scale):
    return np.sum(np.exp((scale * x.reshape(SIZE, -1)).min(axis=0)))


@numba.njit
def broadcast_from_root(x, scale):
    # Rank 0's array goes to everyone; each rank adds its own part.
    shared = x.copy()
    mpi.bcast(shared, 0)
    local = np.zeros(1)
    local[0] = np.sum(shared * x) * scale
    result = np.zeros(1)
    mpi.allreduce(local, result)
    return result[0]


def serial_broadcast_from_root(x, scale):
    pieces = x.reshape(SIZE, -1)
    return scale * np.sum(pieces[0] * pieces)


@numba.njit
def reduce_to_root_then_broadcast(x, scale):
    reduced = np.zeros(x.shape[0])
    mpi.reduce(np.sin(x) * scale, reduced, mpi.Operator.SUM, 0)
    mpi.bcast(reduced, 0)
    return np.sum(reduced ** 3)


def serial_reduce_to_root_then_broadcast(x, scale):
    return np.sum((scale * np.sin(x.reshape(SIZE, -1)).sum(axis=0)) ** 3)


@numba.njit
def ring_send_recv(x, scale):
    # Each rank sends its array to the right and receives the left one's (even ranks send first).
    rank, size = mpi.rank(), mpi.size()
    received = np.zeros(x.shape[0])
    if size == 1:
        received[:] = x
    elif rank % 2 == 0:
        mpi.send(x * scale, (rank + 1) % size, 7)
        mpi.recv(received, (rank - 1) % size, 7)
    else:
        mpi.recv(received, (rank - 1) % size, 7)
        mpi.send(x * scale, (rank + 1) % size, 7)
    local = np.zeros(1)
    local[0] = np.sum(received * x)
    result = np.zeros(1)
    mpi.allreduce(local, result)
    return result[0]


def serial_ring_send_recv(x, scale):
    pieces = x.reshape(SIZE, -1)
    if SIZE == 1:
        return np.sum(pieces[0] * pieces[0])
    return sum(np.sum(scale * pieces[(r - 1) % SIZE] * pieces[r]) for r in range(SIZE))


CASES = [(sum_energy, serial_sum_energy), (max_energy, serial_max_energy), (min_energy, serial_min_energy),
         (broadcast_from_root, serial_broadcast_from_root),
         (reduce_to_root_then_broadcast, serial_reduce_to_root_then_broadcast),
         (ring_send_recv, serial_ring_send_recv)]


def global_input():
    points = POINTS_PER_RANK * SIZE
    # Distinct values, so that MAX and MIN have one winner per element.
    return 0.3 + np.sin(1.7 * np.arange(points)) + 0.01 * np.arange(points)


def serial_gradient(serial, x, scale, step=1e-6):
    """Central differences of the serial NumPy function, per element (its reference gradient)."""
    gradient = np.zeros_like(x)
    for i in range(x.shape[0]):
        e = np.zeros_like(x)
        e[i] = step
        gradient[i] = (-serial(x + 2 * e, scale) + 8 * serial(x + e, scale) - 8 * serial(x - e, scale)
                       + serial(x - 2 * e, scale)) / (12 * step)
    return gradient


@pytest.mark.parametrize("kernel, serial", CASES, ids=lambda c: getattr(c, "__name__", "?"))
def test_gradients_on_every_rank(kernel, serial):
    x, scale = global_input(), 0.8
    value, (local_gradient, scale_bar) = enzpy.differentiate(kernel).value_and_grad(piece(x), scale)
    assert value == pytest.approx(serial(x, scale), rel=1e-13)
    expected = serial_gradient(serial, x, scale)
    np.testing.assert_allclose(gathered(local_gradient), expected, rtol=1e-7, atol=1e-8)
    # The Active scalar's derivative is the full one, the same on every rank.
    step = 1e-6
    expected_scale = (serial(x, scale + step) - serial(x, scale - step)) / (2 * step)
    assert scale_bar == pytest.approx(expected_scale, rel=1e-6)
    assert total(scale_bar) == pytest.approx(SIZE * scale_bar, rel=1e-15)


@pytest.mark.parametrize("kernel, serial", CASES, ids=lambda c: getattr(c, "__name__", "?"))
def test_forward_agrees_with_reverse_across_ranks(kernel, serial):
    x, scale = global_input(), 0.8
    direction = np.cos(np.arange(x.shape[0]))
    _, tangent = enzpy.differentiate(kernel).jvp((piece(x), scale), (piece(direction), 0.5))
    _, (local_gradient, scale_bar) = enzpy.differentiate(kernel).value_and_grad(piece(x), scale)
    assert tangent == pytest.approx(total(local_gradient @ piece(direction)) + 0.5 * scale_bar, rel=1e-12)


def test_distributed_burgers_equals_the_serial_gradient():
    points = 8 * SIZE
    u0 = mpi_burgers.initial_state(points)
    nu, dx, steps = 0.05, 2 * np.pi / points, 23
    energy, (gradient, nu_bar, _, _) = enzpy.differentiate(mpi_burgers.burgers_energy).value_and_grad(
        piece(u0), nu, steps, dx)
    serial_energy, (serial, serial_nu, _, _) = enzpy.differentiate(
        mpi_burgers.serial_burgers_energy).value_and_grad(u0.copy(), nu, steps, dx)
    assert energy == pytest.approx(serial_energy, rel=1e-13)
    np.testing.assert_allclose(gathered(gradient), serial, rtol=1e-12, atol=1e-14)
    assert nu_bar == pytest.approx(serial_nu, rel=1e-12)
    direction = np.cos(np.arange(points))
    fd = mpi_burgers.finite_difference(mpi_burgers.serial_burgers_energy, u0, nu, steps, dx, direction)
    assert serial @ direction == pytest.approx(fd, rel=1e-7)


@numba.njit
def ring_nonblocking(x, scale):
    # Both neighbours' arrays at once: irecv, irecv, isend, isend, then waitall.
    rank, size = mpi.rank(), mpi.size()
    from_left = np.zeros(x.shape[0])
    from_right = np.zeros(x.shape[0])
    requests = np.zeros(4, dtype=mpi.RequestType)
    status, requests[0:1] = mpi.irecv(from_left, (rank - 1) % size, 11)
    status, requests[1:2] = mpi.irecv(from_right, (rank + 1) % size, 12)
    scaled = x * scale
    status, requests[2:3] = mpi.isend(scaled, (rank + 1) % size, 11)
    status, requests[3:4] = mpi.isend(np.sin(x), (rank - 1) % size, 12)
    mpi.waitall(requests)
    local = np.zeros(1)
    local[0] = np.sum(from_left * x + from_right * from_right)
    result = np.zeros(1)
    mpi.allreduce(local, result)
    return result[0]


def serial_ring_nonblocking(x, scale):
    pieces = x.reshape(SIZE, -1)
    return sum(np.sum(scale * pieces[(r - 1) % SIZE] * pieces[r] + np.sin(pieces[(r + 1) % SIZE]) ** 2)
               for r in range(SIZE))


CASES.append((ring_nonblocking, serial_ring_nonblocking))


def test_distributed_burgers_with_nonblocking_halos():
    points = 8 * SIZE
    u0 = mpi_burgers.initial_state(points)
    nu, dx, steps = 0.05, 2 * np.pi / points, 17
    energy, (gradient, nu_bar, _, _) = enzpy.differentiate(mpi_burgers.burgers_energy_nonblocking).value_and_grad(
        piece(u0), nu, steps, dx)
    _, (serial, serial_nu, _, _) = enzpy.differentiate(mpi_burgers.serial_burgers_energy).value_and_grad(
        u0.copy(), nu, steps, dx)
    np.testing.assert_allclose(gathered(gradient), serial, rtol=1e-12, atol=1e-14)
    assert nu_bar == pytest.approx(serial_nu, rel=1e-12)
    direction = np.cos(np.arange(points))
    _, tangent = enzpy.differentiate(mpi_burgers.burgers_energy_nonblocking).jvp(
        (piece(u0), nu, steps, dx), (piece(direction), 1.0, None, None))
    assert tangent == pytest.approx(serial @ direction + serial_nu, rel=1e-11)


# numba-mpi 1.3.1 has no float32 (its datatype table maps float64 only): float32 buffers go to
# MPI_Allreduce and MPI_Sendrecv through ctypes, as numba-mpi itself calls them.
_LIBRARY = ctypes.CDLL(__import__("numba_mpi").common.LIB)
_ALLREDUCE = _LIBRARY.MPI_Allreduce
_ALLREDUCE.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
_ALLREDUCE.restype = ctypes.c_int
_SENDRECV = _LIBRARY.MPI_Sendrecv
_SENDRECV.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                      ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_SENDRECV.restype = ctypes.c_int
_FLOAT, _SUM, _WORLD = (MPI._handleof(h) for h in (MPI.FLOAT, MPI.SUM, MPI.COMM_WORLD))


@numba.njit
def float32_energy(x, scale):
    # float32 buffers (MPI_FLOAT) through sendrecv and allreduce, and a barrier.
    rank, size = mpi.rank(), mpi.size()
    left = np.zeros(1, dtype=np.float32)
    status = np.zeros(16, dtype=np.int32)
    _SENDRECV(x[-1:].ctypes.data, 1, _FLOAT, (rank + 1) % size, 4, left.ctypes.data, 1, _FLOAT,
              (rank - 1) % size, 4, _WORLD, status.ctypes.data)
    mpi.barrier()
    local = np.zeros(1, dtype=np.float32)
    local[0] = np.sum(x * x) * scale + left[0] * x[0]
    result = np.zeros(1, dtype=np.float32)
    _ALLREDUCE(local.ctypes.data, result.ctypes.data, 1, _FLOAT, _SUM, _WORLD)
    return result[0]


def test_float32_buffers():
    x = global_input().astype(np.float32)
    scale = np.float32(0.8)
    value, (local_gradient, scale_bar) = enzpy.differentiate(float32_energy).value_and_grad(piece(x), scale)
    pieces = x.astype(np.float64).reshape(SIZE, -1)
    expected = 2 * 0.8 * pieces
    for r in range(SIZE):
        expected[r, 0] += pieces[(r - 1) % SIZE, -1]
        expected[(r - 1) % SIZE, -1] += pieces[r, 0]
    assert local_gradient.dtype == np.float32
    np.testing.assert_allclose(gathered(local_gradient.astype(np.float64)), expected.ravel(), rtol=1e-5)
    assert scale_bar == pytest.approx(np.sum(pieces ** 2), rel=1e-5)
    direction = np.cos(np.arange(x.shape[0])).astype(np.float32)
    _, tangent = enzpy.differentiate(float32_energy).jvp((piece(x), scale), (piece(direction), 0.0))
    assert tangent == pytest.approx(total(float(local_gradient.astype(np.float64) @ piece(direction))), rel=1e-5)
