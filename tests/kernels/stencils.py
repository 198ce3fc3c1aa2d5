"""Published-style numpy stencil kernels (after npbench's numba versions): 3-D heat
diffusion, a channel-flow Navier-Stokes step, COSMO's vertical advection and a
ResNet basic block. Written with slices and array expressions, `fastmath=True`,
as numba users write them; small sizes and two time steps.

numba's array expressions call an error formatter at every broadcast
(`ol_raise_with_shape_context`, through numba's unicode functions): these
kernels are where compile time used to explode (see passes/inlining.py).
"""

import numba
import numpy as np

from .case import Case


@numba.njit(fastmath=True)
def heat_3d(steps, A, B):
    for t in range(1, steps):
        B[1:-1, 1:-1, 1:-1] = (0.125 * (A[2:, 1:-1, 1:-1] - 2.0 * A[1:-1, 1:-1, 1:-1] + A[:-2, 1:-1, 1:-1]) +
                               0.125 * (A[1:-1, 2:, 1:-1] - 2.0 * A[1:-1, 1:-1, 1:-1] + A[1:-1, :-2, 1:-1]) +
                               0.125 * (A[1:-1, 1:-1, 2:] - 2.0 * A[1:-1, 1:-1, 1:-1] + A[1:-1, 1:-1, 0:-2]) +
                               A[1:-1, 1:-1, 1:-1])
        A[1:-1, 1:-1, 1:-1] = (0.125 * (B[2:, 1:-1, 1:-1] - 2.0 * B[1:-1, 1:-1, 1:-1] + B[:-2, 1:-1, 1:-1]) +
                               0.125 * (B[1:-1, 2:, 1:-1] - 2.0 * B[1:-1, 1:-1, 1:-1] + B[1:-1, :-2, 1:-1]) +
                               0.125 * (B[1:-1, 1:-1, 2:] - 2.0 * B[1:-1, 1:-1, 1:-1] + B[1:-1, 1:-1, 0:-2]) +
                               B[1:-1, 1:-1, 1:-1])


@numba.njit(fastmath=True)
def build_up_b(rho, dt, dx, dy, u, v):
    b = np.zeros_like(u)
    b[1:-1, 1:-1] = (rho * (1 / dt * ((u[1:-1, 2:] - u[1:-1, 0:-2]) / (2 * dx) +
                                      (v[2:, 1:-1] - v[0:-2, 1:-1]) / (2 * dy)) -
                            ((u[1:-1, 2:] - u[1:-1, 0:-2]) / (2 * dx))**2 -
                            2 * ((u[2:, 1:-1] - u[0:-2, 1:-1]) / (2 * dy) * (v[1:-1, 2:] - v[1:-1, 0:-2]) / (2 * dx)) -
                            ((v[2:, 1:-1] - v[0:-2, 1:-1]) / (2 * dy))**2))
    # Periodic in x: the last and first columns see each other.
    b[1:-1, -1] = (rho * (1 / dt * ((u[1:-1, 0] - u[1:-1, -2]) / (2 * dx) + (v[2:, -1] - v[0:-2, -1]) / (2 * dy)) -
                          ((u[1:-1, 0] - u[1:-1, -2]) / (2 * dx))**2 -
                          2 * ((u[2:, -1] - u[0:-2, -1]) / (2 * dy) * (v[1:-1, 0] - v[1:-1, -2]) / (2 * dx)) -
                          ((v[2:, -1] - v[0:-2, -1]) / (2 * dy))**2))
    b[1:-1, 0] = (rho * (1 / dt * ((u[1:-1, 1] - u[1:-1, -1]) / (2 * dx) + (v[2:, 0] - v[0:-2, 0]) / (2 * dy)) -
                         ((u[1:-1, 1] - u[1:-1, -1]) / (2 * dx))**2 -
                         2 * ((u[2:, 0] - u[0:-2, 0]) / (2 * dy) * (v[1:-1, 1] - v[1:-1, -1]) / (2 * dx)) -
                         ((v[2:, 0] - v[0:-2, 0]) / (2 * dy))**2))
    return b


@numba.njit(fastmath=True)
def pressure_poisson_periodic(iterations, p, dx, dy, b):
    for q in range(iterations):
        pn = p.copy()
        p[1:-1, 1:-1] = (((pn[1:-1, 2:] + pn[1:-1, 0:-2]) * dy**2 + (pn[2:, 1:-1] + pn[0:-2, 1:-1]) * dx**2) /
                         (2 * (dx**2 + dy**2)) - dx**2 * dy**2 / (2 * (dx**2 + dy**2)) * b[1:-1, 1:-1])
        p[1:-1, -1] = (((pn[1:-1, 0] + pn[1:-1, -2]) * dy**2 + (pn[2:, -1] + pn[0:-2, -1]) * dx**2) /
                       (2 * (dx**2 + dy**2)) - dx**2 * dy**2 / (2 * (dx**2 + dy**2)) * b[1:-1, -1])
        p[1:-1, 0] = (((pn[1:-1, 1] + pn[1:-1, -1]) * dy**2 + (pn[2:, 0] + pn[0:-2, 0]) * dx**2) /
                      (2 * (dx**2 + dy**2)) - dx**2 * dy**2 / (2 * (dx**2 + dy**2)) * b[1:-1, 0])
        p[-1, :] = p[-2, :]        # dp/dy = 0 at both walls
        p[0, :] = p[1, :]


@numba.njit(fastmath=True)
def channel_flow(steps, u, v, p, dt, dx, dy, rho, nu, F):
    for step in range(steps):
        un = u.copy()
        vn = v.copy()
        b = build_up_b(rho, dt, dx, dy, u, v)
        pressure_poisson_periodic(2, p, dx, dy, b)
        u[1:-1, 1:-1] = (un[1:-1, 1:-1] - un[1:-1, 1:-1] * dt / dx * (un[1:-1, 1:-1] - un[1:-1, 0:-2]) -
                         vn[1:-1, 1:-1] * dt / dy * (un[1:-1, 1:-1] - un[0:-2, 1:-1]) -
                         dt / (2 * rho * dx) * (p[1:-1, 2:] - p[1:-1, 0:-2]) +
                         nu * (dt / dx**2 * (un[1:-1, 2:] - 2 * un[1:-1, 1:-1] + un[1:-1, 0:-2]) +
                               dt / dy**2 * (un[2:, 1:-1] - 2 * un[1:-1, 1:-1] + un[0:-2, 1:-1])) + F * dt)
        v[1:-1, 1:-1] = (vn[1:-1, 1:-1] - un[1:-1, 1:-1] * dt / dx * (vn[1:-1, 1:-1] - vn[1:-1, 0:-2]) -
                         vn[1:-1, 1:-1] * dt / dy * (vn[1:-1, 1:-1] - vn[0:-2, 1:-1]) -
                         dt / (2 * rho * dy) * (p[2:, 1:-1] - p[0:-2, 1:-1]) +
                         nu * (dt / dx**2 * (vn[1:-1, 2:] - 2 * vn[1:-1, 1:-1] + vn[1:-1, 0:-2]) +
                               dt / dy**2 * (vn[2:, 1:-1] - 2 * vn[1:-1, 1:-1] + vn[0:-2, 1:-1])))
        u[1:-1, -1] = (un[1:-1, -1] - un[1:-1, -1] * dt / dx * (un[1:-1, -1] - un[1:-1, -2]) -
                       vn[1:-1, -1] * dt / dy * (un[1:-1, -1] - un[0:-2, -1]) -
                       dt / (2 * rho * dx) * (p[1:-1, 0] - p[1:-1, -2]) +
                       nu * (dt / dx**2 * (un[1:-1, 0] - 2 * un[1:-1, -1] + un[1:-1, -2]) +
                             dt / dy**2 * (un[2:, -1] - 2 * un[1:-1, -1] + un[0:-2, -1])) + F * dt)
        u[1:-1, 0] = (un[1:-1, 0] - un[1:-1, 0] * dt / dx * (un[1:-1, 0] - un[1:-1, -1]) -
                      vn[1:-1, 0] * dt / dy * (un[1:-1, 0] - un[0:-2, 0]) -
                      dt / (2 * rho * dx) * (p[1:-1, 1] - p[1:-1, -1]) +
                      nu * (dt / dx**2 * (un[1:-1, 1] - 2 * un[1:-1, 0] + un[1:-1, -1]) +
                            dt / dy**2 * (un[2:, 0] - 2 * un[1:-1, 0] + un[0:-2, 0])) + F * dt)
        u[0, :] = 0                # no slip at the walls
        u[-1, :] = 0
        v[0, :] = 0
        v[-1, :] = 0
    return np.sum(u * u) + np.sum(v * v) + 0.01 * np.sum(p * p)


BETA_MINUS = 0.5
BETA_PLUS = 0.5


@numba.njit(fastmath=True)
def vertical_advection(utens_stage, u_stage, wcon, u_pos, utens, dtr_stage):
    I, J, K = utens_stage.shape[0], utens_stage.shape[1], utens_stage.shape[2]
    ccol = np.empty((I, J, K), dtype=utens_stage.dtype)
    dcol = np.empty((I, J, K), dtype=utens_stage.dtype)
    data_col = np.empty((I, J), dtype=utens_stage.dtype)
    for k in range(1):                       # the top level
        gcv = 0.25 * (wcon[1:, :, k + 1] + wcon[:-1, :, k + 1])
        cs = gcv * BETA_MINUS
        ccol[:, :, k] = gcv * BETA_PLUS
        bcol = dtr_stage - ccol[:, :, k]
        correction = -cs * (u_stage[:, :, k + 1] - u_stage[:, :, k])
        dcol[:, :, k] = dtr_stage * u_pos[:, :, k] + utens[:, :, k] + utens_stage[:, :, k] + correction
        divided = 1.0 / bcol
        ccol[:, :, k] = ccol[:, :, k] * divided
        dcol[:, :, k] = dcol[:, :, k] * divided
    for k in range(1, K - 1):                # the forward sweep of the tridiagonal solve
        gav = -0.25 * (wcon[1:, :, k] + wcon[:-1, :, k])
        gcv = 0.25 * (wcon[1:, :, k + 1] + wcon[:-1, :, k + 1])
        as_ = gav * BETA_MINUS
        cs = gcv * BETA_MINUS
        acol = gav * BETA_PLUS
        ccol[:, :, k] = gcv * BETA_PLUS
        bcol = dtr_stage - acol - ccol[:, :, k]
        correction = (-as_ * (u_stage[:, :, k - 1] - u_stage[:, :, k]) -
                      cs * (u_stage[:, :, k + 1] - u_stage[:, :, k]))
        dcol[:, :, k] = dtr_stage * u_pos[:, :, k] + utens[:, :, k] + utens_stage[:, :, k] + correction
        divided = 1.0 / (bcol - ccol[:, :, k - 1] * acol)
        ccol[:, :, k] = ccol[:, :, k] * divided
        dcol[:, :, k] = (dcol[:, :, k] - dcol[:, :, k - 1] * acol) * divided
    for k in range(K - 1, K):                # the bottom level
        gav = -0.25 * (wcon[1:, :, k] + wcon[:-1, :, k])
        as_ = gav * BETA_MINUS
        acol = gav * BETA_PLUS
        bcol = dtr_stage - acol
        correction = -as_ * (u_stage[:, :, k - 1] - u_stage[:, :, k])
        dcol[:, :, k] = dtr_stage * u_pos[:, :, k] + utens[:, :, k] + utens_stage[:, :, k] + correction
        divided = 1.0 / (bcol - ccol[:, :, k - 1] * acol)
        dcol[:, :, k] = (dcol[:, :, k] - dcol[:, :, k - 1] * acol) * divided
    for k in range(K - 1, K - 2, -1):        # back substitution
        data_col[:] = dcol[:, :, k]
        utens_stage[:, :, k] = dtr_stage * (data_col - u_pos[:, :, k])
    for k in range(K - 2, -1, -1):
        data_col[:] = dcol[:, :, k] - ccol[:, :, k] * data_col
        utens_stage[:, :, k] = dtr_stage * (data_col - u_pos[:, :, k])


@numba.njit(fastmath=True)
def conv2d(images, weights):
    K = weights.shape[0]
    N, H_out, W_out = images.shape[0], images.shape[1] - K + 1, images.shape[2] - K + 1
    C_out = weights.shape[3]
    output = np.empty((N, H_out, W_out, C_out))
    for n in range(N):
        for i in range(H_out):
            for j in range(W_out):
                for c in range(C_out):
                    output[n, i, j, c] = np.sum(images[n, i:i + K, j:j + K, :] * weights[:, :, :, c])
    return output


@numba.njit(fastmath=True)
def batchnorm2d(x):
    mean = x.sum(axis=0) / x.shape[0]
    centred = x - mean
    variance = (centred * centred).sum(axis=0) / x.shape[0]
    return centred / np.sqrt(variance + 1e-5)


@numba.njit(fastmath=True)
def resnet_basic_block(images, conv1, conv2, conv3):
    # A bottleneck block: 1x1 convolution, padded 3x3, 1x1, each with batch norm and ReLU.
    padded = np.zeros((images.shape[0], images.shape[1] + 2, images.shape[2] + 2, conv1.shape[3]))
    padded[:, 1:-1, 1:-1, :] = conv2d(images, conv1)
    x = np.maximum(batchnorm2d(padded), 0.0)
    x = np.maximum(batchnorm2d(conv2d(x, conv2)), 0.0)
    x = batchnorm2d(conv2d(x, conv3))
    return np.sum(np.maximum(x + images, 0.0) ** 2)


def _channel_arguments(rng):
    rows, columns = 6, 7
    return (2, rng.uniform(0.5, 1.0, (rows, columns)), rng.uniform(-0.2, 0.2, (rows, columns)),
            rng.uniform(-0.1, 0.1, (rows, columns)), 0.01, 2.0 / (columns - 1), 2.0 / (rows - 1), 1.0, 0.1, 1.0)


CASES = [
    Case(
        name="stencil_heat_3d",
        func=heat_3d,
        make_args=lambda rng: (3, rng.uniform(0.0, 1.0, (6, 6, 6)), rng.uniform(0.0, 1.0, (6, 6, 6))),
        tags=frozenset({"arrayexpr", "3d", "inplace", "stencil", "large"}),
    ),
    Case(
        name="stencil_channel_flow",
        func=channel_flow,
        make_args=_channel_arguments,
        tags=frozenset({"arrayexpr", "2d", "inplace", "stencil", "calls", "large"}),
    ),
    Case(
        name="stencil_vertical_advection",
        func=vertical_advection,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (4, 5, 6)), rng.uniform(-1.0, 1.0, (4, 5, 6)),
                               rng.uniform(-0.5, 0.5, (5, 5, 6)), rng.uniform(-1.0, 1.0, (4, 5, 6)),
                               rng.uniform(-1.0, 1.0, (4, 5, 6)), 3.0),
        tags=frozenset({"arrayexpr", "3d", "inplace", "stencil", "large"}),
    ),
]


# In the compile-time benchmark only: LLVM's O3 over its four nested convolution loops takes
# about 30 s for numba's own compile and as long again for each derivative, too slow for
# the test suite's every-kernel-in-every-mode checks.
BENCHMARK_ONLY = [
    Case(
        name="stencil_resnet_basic_block",
        func=resnet_basic_block,
        make_args=lambda rng: (rng.uniform(-1.0, 1.0, (3, 4, 4, 2)), rng.uniform(-0.5, 0.5, (1, 1, 2, 3)),
                               rng.uniform(-0.5, 0.5, (3, 3, 3, 3)), rng.uniform(-0.5, 0.5, (1, 1, 3, 2))),
        tags=frozenset({"arrayexpr", "3d", "stencil", "calls", "large"}),
    ),
]
