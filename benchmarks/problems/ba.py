"""ADBench's bundle adjustment: reprojection and weight residuals, and their sparse Jacobian.

The numba kernel is tests/adbench/objectives.py's `ba_residuals`. The primal
column times the residuals; the gradient columns compute ADBench's Jacobian,
as its non-zero blocks: for each observation a 2 x 15 block (11 camera, 3
point, 1 weight columns) of the reprojection rows, and the weight-error
diagonal.

Every contender uses the same algorithm, a compressed Jacobian: the
residuals are evaluated on per-observation copies of the cameras and points
(gathered inside the timing), so observations share no inputs, and one
reverse sweep per residual component (reprojection x, reprojection y, weight
error) seeded on every observation at once yields all blocks' rows. enzpy
runs the numba residual kernel once forward and once in reverse with three
lanes (vector reverse mode, `autodiff(..., width=3)`); JAX linearizes once
(jax.vjp in one jit) and pulls back three times; PyTorch builds the graph
once and calls autograd.grad three times. (jit(vmap(jacrev(one
observation))) and torch.func.vmap(jacrev(...)) measured 2-5x slower here.)
Each contender returns the rows as it computed them; `flat_jacobian` lays
them out as blocks outside the timing. enzpy keeps its gathered inputs and
shadows between calls (zeroing them each call), as a solver's loop would.
"""

from __future__ import annotations

import numpy as np

from tests.adbench.objectives import ba_residuals

from . import SEED, Contender, Instance, fresh_kernel, numpy_float

# (cameras, points, observations) of ADBench's ba1..ba5.
ADBENCH_SIZES = {"ba1": (49, 7776, 31843), "ba2": (21, 11315, 36455), "ba3": (161, 48126, 182072),
                 "ba4": (372, 47423, 204472), "ba5": (257, 65132, 225911)}
SIZES = {"tiny": [("tiny", (3, 5, 12))],
         "quick": [("ba1", ADBENCH_SIZES["ba1"])],
         "full": list(ADBENCH_SIZES.items())}


def instances(scale: str) -> list[Instance]:
    return [BaInstance(name, *size) for name, size in SIZES[scale]]


class BaInstance(Instance):
    family = "BA"
    adbench = True
    gradient_kind = "Jacobian"

    def __init__(self, name: str, cameras: int, points: int, observations: int):
        self.name = name
        rng = np.random.default_rng([SEED, cameras, points, observations])
        # ADBench generates random cameras and points; observation i sees camera
        # i % n and point i % m. Rotations are small and points sit in front of
        # the cameras, so every projection is well defined.
        self.cams = np.concatenate([
            0.2 * rng.standard_normal((cameras, 3)),           # Rodrigues rotation
            rng.standard_normal((cameras, 3)),                 # centre
            rng.uniform(400.0, 600.0, (cameras, 1)),           # focal length
            rng.standard_normal((cameras, 2)),                 # principal point
            1e-3 * rng.standard_normal((cameras, 2)),          # radial distortion
        ], axis=1)
        self.x = rng.standard_normal((points, 3)) + np.array([0.0, 0.0, 10.0])
        self.w = rng.uniform(0.5, 1.5, observations)
        index = np.arange(observations)
        self.obs = np.stack([index % cameras, index % points], axis=1).astype(np.int64)
        self.feats = rng.uniform(-300.0, 300.0, (observations, 2))
        # For the compressed Jacobian: observation i sees the i-th gathered camera and point.
        self.identity = np.stack([index, index], axis=1).astype(np.int64)

    @property
    def label(self) -> str:
        n, m, p = self.cams.shape[0], self.x.shape[0], self.w.size
        return f"{self.name} ({n} cams, {m} pts, {p} obs)"

    def outputs(self) -> tuple[np.ndarray, np.ndarray]:
        return np.empty((self.w.size, 2)), np.empty(self.w.size)

    def split(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cams, x, w = np.split(flat, [self.cams.size, self.cams.size + self.x.size])
        return cams.reshape(self.cams.shape), x.reshape(self.x.shape), w

    # -- references

    def numpy_objective(self) -> np.ndarray:
        reprojection = project_observations(np, self.cams[self.obs[:, 0]], self.x[self.obs[:, 1]], self.w,
                                            self.feats)
        return np.concatenate([reprojection.ravel(), 1.0 - self.w * self.w])

    def parameters(self) -> np.ndarray:
        return np.concatenate([self.cams.ravel(), self.x.ravel(), self.w])

    def objective_at(self, flat: np.ndarray) -> np.ndarray:
        reprojection, weight_error = self.outputs()
        cams, x, w = self.split(flat)
        ba_residuals(cams, x, w, self.obs, self.feats, reprojection, weight_error)
        return np.concatenate([reprojection.ravel(), weight_error])

    def directional(self, jacobian: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """J @ direction from the flat blocks: (p, 2, 15) reprojection blocks then the (p,) diagonal."""
        p = self.w.size
        blocks, diagonal = jacobian[:30 * p].reshape(p, 2, 15), jacobian[30 * p:]
        cams, x, w = self.split(direction)
        local = np.concatenate([cams[self.obs[:, 0]], x[self.obs[:, 1]], w[:, None]], axis=1)
        return np.concatenate([np.einsum("pij,pj->pi", blocks, local).ravel(), diagonal * w])

    def direction_scale(self) -> float:
        # Focal lengths are ~500 and points ~10 away: unit steps would leave the linear regime.
        return 1e-3

    # -- contenders

    def primal(self, fresh: bool):
        kernel = fresh_kernel(ba_residuals) if fresh else ba_residuals
        reprojection, weight_error = self.outputs()

        def call():
            kernel(self.cams, self.x, self.w, self.obs, self.feats, reprojection, weight_error)
            return np.concatenate([reprojection.ravel(), weight_error])

        return call

    def enzpy_gradient(self, optimize: bool) -> Contender:
        from enzpy import Const, Duplicated, differentiate

        differentiable = differentiate(fresh_kernel(ba_residuals), optimize=optimize)
        p = self.w.size
        # The buffers live with the contender, as a Levenberg-Marquardt loop would keep them: a fresh
        # 13 MB of zeros per call costs page faults (~2 ms on ba1) that say nothing about AD.
        camera_index, point_index = self.obs[:, 0].copy(), self.obs[:, 1].copy()
        cams, x = np.empty((p, 11)), np.empty((p, 3))
        reprojection, weight_error = self.outputs()
        reprojection_adjoint, weight_error_adjoint = np.zeros((3, p, 2)), np.zeros((3, p))
        shadows = (np.zeros((3, p, 11)), np.zeros((3, p, 3)), np.zeros((3, p)))

        def call():
            """One forward sweep and one reverse sweep of three lanes (vector reverse mode): lane 0
            and 1 seeded on every observation's reprojection x and y, lane 2 on its weight error."""
            np.take(self.cams, camera_index, axis=0, out=cams)
            np.take(self.x, point_index, axis=0, out=x)
            # The reverse sweep consumes the output adjoints (leaves them zero): seed them again.
            reprojection_adjoint[0, :, 0] = reprojection_adjoint[1, :, 1] = weight_error_adjoint[2] = 1.0
            for shadow in shadows:
                shadow.fill(0.0)
            differentiable.autodiff(
                Duplicated(cams, shadows[0]), Duplicated(x, shadows[1]), Duplicated(self.w, shadows[2]),
                Const(self.identity), Const(self.feats), Duplicated(reprojection, reprojection_adjoint),
                Duplicated(weight_error, weight_error_adjoint), width=3)
            return shadows

        def jacobian_of(lanes):
            d_cams, d_x, d_w = lanes
            return self.flat_jacobian([np.concatenate([d_cams[k], d_x[k], d_w[k][:, None]], axis=1)
                                       for k in range(2)], d_w[2])

        return Contender(call, jacobian_of)

    def flat_jacobian(self, rows, weight_rows) -> np.ndarray:
        """The flat Jacobian (`directional`'s layout) from the two reprojection rows' (p, 15) blocks
        and the weight error's diagonal. Contenders return their rows as they computed them: this
        assembly is outside the timing, the same for each."""
        blocks = np.stack([numpy_float(row) for row in rows], axis=1)
        return np.concatenate([blocks.ravel(), numpy_float(weight_rows)])

    def jax_gradient(self, jax) -> Contender:
        numpy = jax.numpy

        @jax.jit
        def jacobian(cams, x, w, obs, feats):
            def residuals(cams, x, w):
                return project_observations(numpy, cams, x, w, feats), 1.0 - w * w

            # One linearization, then one pullback per colour (jax.vjp shares the forward pass).
            (reprojection, weight_error), pullback = jax.vjp(residuals, cams[obs[:, 0]], x[obs[:, 1]], w)
            nothing, unit = numpy.zeros_like(reprojection), numpy.zeros_like(weight_error)
            rows = [pullback((nothing.at[:, k].set(1.0), unit)) for k in range(2)]
            return rows, pullback((nothing, numpy.ones_like(weight_error)))[2]

        def jacobian_of(result):
            rows, weight_rows = result
            return self.flat_jacobian([np.concatenate([np.asarray(d) for d in row[:2]] + [np.asarray(row[2])[:, None]],
                                                      axis=1) for row in rows], weight_rows)

        arguments = tuple(numpy.asarray(a) for a in (self.cams, self.x, self.w, self.obs, self.feats))
        return Contender(lambda: jax.block_until_ready(jacobian(*arguments)), jacobian_of)

    def torch_gradient(self, torch) -> Contender:
        cams, x, w, feats = (torch.from_numpy(a) for a in (self.cams, self.x, self.w, self.feats))
        camera_index, point_index = torch.from_numpy(self.obs[:, 0]), torch.from_numpy(self.obs[:, 1])

        def call():
            inputs = (cams[camera_index].requires_grad_(), x[point_index].requires_grad_(),
                      w.clone().requires_grad_())
            reprojection = project_observations(torch, *inputs, feats)
            weight_error = 1.0 - inputs[2] * inputs[2]
            rows = []
            for k in range(2):
                seed = torch.zeros_like(reprojection)
                seed[:, k] = 1.0
                rows.append(torch.autograd.grad(reprojection, inputs, seed, retain_graph=True))
            (d_weight,) = torch.autograd.grad(weight_error, inputs[2], torch.ones_like(weight_error))
            return rows, d_weight

        def jacobian_of(result):
            rows, weight_rows = result
            return self.flat_jacobian([np.concatenate([numpy_float(row[0]), numpy_float(row[1]),
                                                       numpy_float(row[2])[:, None]], axis=1) for row in rows],
                                      weight_rows)

        return Contender(call, jacobian_of)


def project_observations(numpy, cams, points, w, feats):
    """Weighted reprojection residuals (p, 2) of gathered cameras (p, 11) and points (p, 3).

    Written once for NumPy, JAX and PyTorch (`numpy` is the array module), with
    ADBench's Rodrigues rotation and its first-order fallback at zero angle
    selected element-wise, as vectorized code must.
    """
    relative = points - cams[:, 3:6]
    rotation = cams[:, 0:3]
    squared_angle = (rotation * rotation).sum(-1)
    # Guard the square root so the unused branch has a finite derivative at angle 0.
    safe = numpy.where(squared_angle != 0.0, squared_angle, 1.0)
    angle = numpy.sqrt(safe)
    axis = rotation / angle[:, None]
    cos_angle, sin_angle = numpy.cos(angle)[:, None], numpy.sin(angle)[:, None]
    along_axis = (axis * relative).sum(-1)[:, None] * (1.0 - cos_angle)
    rodrigues = relative * cos_angle + cross(numpy, axis, relative) * sin_angle + axis * along_axis
    first_order = relative + cross(numpy, rotation, relative)
    rotated = numpy.where((squared_angle != 0.0)[:, None], rodrigues, first_order)
    projected = rotated[:, 0:2] / rotated[:, 2:3]
    squared_radius = (projected * projected).sum(-1)
    distortion = 1.0 + cams[:, 9] * squared_radius + cams[:, 10] * squared_radius * squared_radius
    projected = projected * distortion[:, None]
    return w[:, None] * (projected * cams[:, 6:7] + cams[:, 7:9] - feats)


def cross(numpy, a, b):
    """Row-wise cross product, spelled out: numpy, JAX and PyTorch name theirs differently."""
    return numpy.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
                        a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                        a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], -1)
