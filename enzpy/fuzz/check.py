"""Check one generated kernel: forward mode against finite differences, forward against reverse.

The kernel is read as a map F from everything float it receives (x, y, M on
entry, and s) to everything it produces (its result, and x, y, M as it
leaves them). For a random direction t and cotangent c:

- forward mode (`autodiff(..., mode="forward")`, Duplicated tangents) gives J t;
- 5-point central differences of F along t, at steps h and h / 2, give J t
  too when F is smooth there; when the two steps disagree the differences
  straddle a kink (a branch, abs, max, an early exit) and the comparison
  says `kink` instead of failing;
- reverse mode (`autodiff(...)`, Duplicated shadows seeded with c's parts,
  `seed` the result's part) gives J^T c, and <J t, c> must equal <t, J^T c>
  to rounding, kinks or not.

A float32 kernel is differentiated in float32 and compared with finite
differences of the same source run in float64.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

VERDICTS = ("ok", "kink", "refused", "mismatch", "crash", "invalid", "skip", "timeout")
"""ok: both checks hold; kink: the dot test holds, finite differences straddle a kink;
refused: enzpy raised its own error; mismatch: a check failed (a wrong derivative); crash:
another exception, or the process died; invalid: numba cannot compile the kernel (a generator
problem, never kept by the shrinker); skip: the primal is not finite; timeout: too slow."""
FAILURES = ("mismatch", "crash", "timeout")


@dataclass(frozen=True)
class Job:
    """What a checker needs of a kernel: its module text and the arguments it runs on."""
    source: str
    """Module text defining `kernel` (and its helpers)."""
    result: str
    """'scalar', 'array', 'tuple' or 'none'."""
    dtype: str
    """'float64' or 'float32'."""
    matrix: bool
    """Whether `kernel` takes the n x n argument M after y."""
    n: int
    """Length of x and y."""
    m: int
    """The integer argument."""
    seed: int
    """Seed of the argument values, the direction and the cotangent."""
    layout: str = "C"
    """'C', 'strided' or 'overlapping' (grammar.Kernel.layout)."""

    @classmethod
    def of(cls, kernel) -> "Job":
        return cls(kernel.source(), kernel.result, kernel.dtype, kernel.matrix, kernel.n, kernel.m, kernel.seed,
                   kernel.layout)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Verdict:
    """The outcome of checking one kernel."""
    kind: str
    """One of VERDICTS."""
    detail: str = ""
    """The error message, or which check failed and by how much."""
    errors: dict = field(default_factory=dict)
    """Measured relative errors: 'forward_vs_differences', 'dot_test'."""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_failure(self) -> bool:
        return self.kind in FAILURES


_modules = itertools.count()
_folder = None


def load(source: str):
    """The `kernel` of `source`, imported from a file so that numba and enzpy can name its lines."""
    global _folder
    if _folder is None:
        _folder = tempfile.mkdtemp(prefix="enzpy-fuzz-")
    name = f"enzpy_fuzz_kernel_{os.getpid()}_{next(_modules)}"
    path = os.path.join(_folder, name + ".py")
    with open(path, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.kernel


def storage(job: Job, dtype: str | None = None) -> list:
    """The independent float inputs of `job` in `dtype` (default: the job's): the memory behind the
    arrays (`views` makes the kernel's arguments of it), then s.

    With layout 'strided' x and y are every other element of arrays twice as long and M is a
    transposed view; with 'overlapping' x and y are two views of one array n + 1 long.
    """
    rng = np.random.default_rng(job.seed)
    x, y = rng.uniform(-1.0, 1.0, job.n), rng.uniform(-1.0, 1.0, job.n)
    matrix = rng.uniform(-1.0, 1.0, (job.n, job.n))
    s = rng.uniform(-1.0, 1.0)
    kind = np.dtype(dtype or job.dtype)
    x, y, matrix = x.astype(kind), y.astype(kind), matrix.astype(kind)
    matrices = [matrix] if job.matrix else []
    if job.layout == "strided":
        return [np.repeat(x, 2), np.repeat(y, 2), *(np.ascontiguousarray(a.T) for a in matrices), kind.type(s)]
    if job.layout == "overlapping":
        return [np.concatenate([x, y[-1:]]), *matrices, kind.type(s)]
    return [x, y, *matrices, kind.type(s)]


def views(job: Job, memory: list) -> list:
    """The kernel's float arguments (x, y, M, s) over `memory` (storage's layout)."""
    if job.layout == "strided":
        return [memory[0][::2], memory[1][1::2], *(a.T for a in memory[2:-1]), memory[-1]]
    if job.layout == "overlapping":
        return [memory[0][:-1], memory[0][1:], *memory[1:]]
    return list(memory)


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _leaves(result) -> list[np.ndarray]:
    if result is None:
        return []
    if isinstance(result, tuple):
        return [leaf for part in result for leaf in _leaves(part)]
    return [np.atleast_1d(np.asarray(result, dtype=np.float64)).ravel()]


def _flat(parts) -> np.ndarray:
    arrays = [np.atleast_1d(np.asarray(p, dtype=np.float64)).ravel() for p in parts]
    return np.concatenate(arrays) if arrays else np.zeros(0)


def _arrays(memory: list) -> list:
    return [part for part in memory if isinstance(part, np.ndarray)]


def outputs(job: Job, function, memory: list) -> np.ndarray:
    """F: the result's leaves, then the arrays' memory as the kernel leaves it (on copies)."""
    copies = [_copy(part) for part in memory]
    result = function(*views(job, copies), job.m)
    return _flat([*_leaves(result), *_arrays(copies)])


def directional_difference(job: Job, function, memory: list, direction: list, step: float) -> np.ndarray:
    """5-point central difference of F along `direction` (float64 memory)."""
    at = lambda k: outputs(job, function, [p + k * step * t for p, t in zip(memory, direction)])  # noqa: E731
    return (at(-2) - 8 * at(-1) + 8 * at(1) - at(2)) / (12 * step)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b), initial=0.0) / max(1.0, float(np.max(np.abs(b), initial=0.0))))


def check(job: Job, function=None) -> Verdict:
    """The verdict for `job` (its kernel loaded from source unless given)."""
    import enzpy
    from enzpy.errors import EnzpyError

    try:
        function = function or load(job.source)
        import numba
        primal = numba.njit(function)
        memory = storage(job)
        reference_memory = storage(job, "float64")
        value = outputs(job, primal, memory)
        reference = outputs(job, primal, reference_memory)
    except Exception as error:          # the generator wrote something numba refuses
        return Verdict("invalid", f"{type(error).__name__}: {error}"[:2000])
    if not (np.all(np.isfinite(value)) and np.all(np.isfinite(reference))) or np.max(np.abs(reference)) > 1e8:
        return Verdict("skip", "the primal is not finite (or above 1e8)")
    single = job.dtype == "float32"
    rng = np.random.default_rng(job.seed + 1)
    direction = [rng.uniform(-1.0, 1.0, np.shape(part)) if isinstance(part, np.ndarray) else rng.uniform(-1.0, 1.0)
                 for part in memory]
    cotangent = rng.uniform(-1.0, 1.0, value.shape)
    kernel = enzpy.differentiate(primal)
    try:
        jt = _forward(job, kernel, memory, direction)
        jtc = _reverse(job, kernel, memory, cotangent)
    except EnzpyError as error:
        return Verdict("refused", f"{type(error).__name__}: {error}"[:4000])
    except Exception as error:
        return Verdict("crash", "".join(traceback.format_exception(error))[-4000:])
    errors = {}
    if jt.shape != value.shape or jtc.shape != _flat(memory).shape:
        return Verdict("mismatch", f"derivative shapes {jt.shape} / {jtc.shape}, expected {value.shape} / "
                                   f"{_flat(memory).shape}")
    left, right = float(jt @ cotangent), float(_flat(direction) @ jtc)
    scale = np.linalg.norm(jt) * np.linalg.norm(cotangent) + np.linalg.norm(_flat(direction)) * np.linalg.norm(jtc)
    errors["dot_test"] = abs(left - right) / max(1.0, scale)
    if not (np.isfinite(left) and np.isfinite(right)) or errors["dot_test"] > (2e-4 if single else 1e-9):
        return Verdict("mismatch", f"forward against reverse: <J t, c> = {left!r}, <t, J^T c> = {right!r}", errors)
    coarse = directional_difference(job, primal, reference_memory, direction, 1e-3)
    fine = directional_difference(job, primal, reference_memory, direction, 5e-4)
    smooth = _relative(coarse, fine) < 1e-6 and _relative(value, reference) < (1e-3 if single else 1e-12)
    errors["forward_vs_differences"] = _relative(jt, fine)
    if not smooth:
        return Verdict("kink", "finite differences straddle a kink", errors)
    if errors["forward_vs_differences"] > (5e-3 if single else 1e-6):
        return Verdict("mismatch", f"forward mode against finite differences: relative error "
                                   f"{errors['forward_vs_differences']:.3g}\n  forward {jt!r}\n  differences {fine!r}",
                       errors)
    return Verdict("ok", "", errors)


def _forward(job: Job, kernel, memory: list, direction: list) -> np.ndarray:
    """J t by forward mode: the result's tangent, then the tangent memory as the kernel leaves it."""
    from enzpy import Const, Duplicated

    dtype = np.dtype(job.dtype)
    tangent_memory = [np.array(t, dtype=dtype) if isinstance(p, np.ndarray) else dtype.type(t)
                      for p, t in zip(memory, direction)]
    values = views(job, [_copy(p) for p in memory])
    annotated = [Duplicated(v, t) for v, t in zip(values, views(job, tangent_memory))]
    result = kernel.autodiff(*annotated, Const(job.m), mode="forward")
    return _flat([*_leaves(result), *_arrays(tangent_memory)])


def _reverse(job: Job, kernel, memory: list, cotangent: np.ndarray) -> np.ndarray:
    """J^T c by reverse mode: the shadow memory as the kernel leaves it, then d/ds."""
    from enzpy import Active, Const, Duplicated

    dtype = np.dtype(job.dtype)
    arrays = _arrays(memory)
    result_size = cotangent.size - sum(a.size for a in arrays)
    shadow_memory, offset = [], result_size
    for array in arrays:
        shadow_memory.append(cotangent[offset:offset + array.size].reshape(array.shape).astype(dtype))
        offset += array.size
    values = views(job, [_copy(p) for p in memory])
    shadows = views(job, [*shadow_memory, None])[:-1]
    seed = _seed(job, kernel, memory, cotangent[:result_size])
    annotated = [Duplicated(v, d) for v, d in zip(values[:-1], shadows)] + [Active(values[-1]), Const(job.m)]
    active = kernel.autodiff(*annotated, seed=seed)
    return _flat([*shadow_memory, *active])


def _seed(job: Job, kernel, memory: list, part: np.ndarray):
    """The result's part of the cotangent in the result's structure."""
    if job.result == "scalar":
        return float(part[0])
    if job.result == "none":
        return 1.0
    result = kernel.dispatcher(*views(job, [_copy(p) for p in memory]), job.m)
    if job.result == "array":
        return part.reshape(np.shape(result))
    return (float(part[0]), part[1:].reshape(np.shape(result[1])))
