"""CUDA-style kernels on the CPU (enzpy.cuda): results against NumPy, derivatives against finite
differences and forward mode against reverse mode. No GPU needed; numba-cuda (the `cuda` extra) is."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

if importlib.util.find_spec("numba_cuda") is None:
    pytest.skip("numba-cuda is not installed (pip install -e '.[cuda]')", allow_module_level=True)

import enzpy.cuda as enzpy_cuda  # noqa: E402
from enzpy import Active, Const, Duplicated, FrontendError, KernelError  # noqa: E402
from tests.kernels import cuda_kernels  # noqa: E402
from tests.kernels.cuda_kernels import CASES  # noqa: E402

IDS = [case.name for case in CASES]


def _launch(case, runner):
    if case.dynamic_shared:
        return runner(case.kernel)[case.grid, case.block, 0, case.dynamic_shared]
    return runner(case.kernel)[case.grid, case.block]


def _is_float_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _differentiable(args) -> list[int]:
    return [i for i, a in enumerate(args) if _is_float_array(a) or isinstance(a, float)]


def _outputs(case, args) -> np.ndarray:
    """Every float array after the kernel, flattened, as a function of the arguments on entry."""
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    _launch(case, enzpy_cuda.on_cpu)(*args)
    return np.concatenate([a.ravel().astype(np.float64) for a in args if _is_float_array(a)])


def _moved(args, direction, step):
    return [a + step * direction[i] if i in direction else a for i, a in enumerate(args)]


def _directions(args, rng) -> dict:
    return {i: (rng.uniform(-1, 1, a.shape).astype(a.dtype) if isinstance(a, np.ndarray) else rng.uniform(-1, 1))
            for i, a in enumerate(args) if i in _differentiable(args)}


def _finite_difference(case, args, direction) -> np.ndarray:
    step = 1e-2 if any(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in args) else 1e-3
    f = lambda s: _outputs(case, _moved(args, direction, s))  # noqa: E731
    return (-f(2 * step) + 8 * f(step) - 8 * f(-step) + f(-2 * step)) / (12 * step)


def _cotangents(args, rng) -> dict:
    return {i: rng.uniform(-1, 1, a.shape).astype(a.dtype) for i, a in enumerate(args) if _is_float_array(a)}


def _reverse(case, args, cotangents) -> dict:
    """J^T c: the arrays' shadows after the reverse sweep, and the Active scalars' derivatives."""
    annotated, shadows = [], {}
    for i, a in enumerate(args):
        if i in cotangents:
            shadows[i] = cotangents[i].copy()
            annotated.append(Duplicated(a.copy(), shadows[i]))
        elif isinstance(a, float):
            annotated.append(Active(a))
        else:
            annotated.append(Const(a.copy() if isinstance(a, np.ndarray) else a))
    active = _launch(case, enzpy_cuda.differentiate)(*annotated)
    scalars = iter(active)
    return {i: shadows[i] if i in shadows else next(scalars) for i in _differentiable(args)}


def _forward(case, args, direction) -> np.ndarray:
    """J t: the tangents of every float array after the kernel."""
    annotated, tangents = [], []
    for i, a in enumerate(args):
        if _is_float_array(a):
            tangents.append(direction[i].copy())
            annotated.append(Duplicated(a.copy(), tangents[-1]))
        elif isinstance(a, float):
            annotated.append(Duplicated(a, direction[i]))
        else:
            annotated.append(Const(a.copy() if isinstance(a, np.ndarray) else a))
    assert _launch(case, enzpy_cuda.differentiate)(*annotated, mode="forward") is None
    return np.concatenate([t.ravel().astype(np.float64) for t in tangents])


def _pairing(direction, gradient) -> float:
    return sum(float(np.sum(np.asarray(direction[i], np.float64) * np.asarray(gradient[i], np.float64)))
               for i in direction)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_runs_like_numpy(case):
    args = case.arguments(np.random.default_rng(1))
    expected = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    case.reference(expected)
    _launch(case, enzpy_cuda.on_cpu)(*args)
    for got, want in zip(args, expected):
        if isinstance(got, np.ndarray):
            np.testing.assert_allclose(got, want, rtol=case.tolerance * 100, atol=case.tolerance * 100)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reverse_matches_finite_differences(case):
    rng = np.random.default_rng(2)
    args = case.arguments(rng)
    cotangents = _cotangents(args, rng)
    direction = _directions(args, rng)
    gradient = _reverse(case, args, cotangents)
    c = np.concatenate([cotangents[i].ravel().astype(np.float64) for i in sorted(cotangents)])
    expected = float(c @ _finite_difference(case, args, direction))
    tolerance = 1e-3 if case.tolerance > 1e-8 else 1e-7
    assert _pairing(direction, gradient) == pytest.approx(expected, rel=tolerance, abs=tolerance)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_finite_differences_and_reverse(case):
    rng = np.random.default_rng(3)
    args = case.arguments(rng)
    direction = _directions(args, rng)
    cotangents = _cotangents(args, rng)
    tangent = _forward(case, args, direction)
    tolerance = 1e-3 if case.tolerance > 1e-8 else 1e-7
    np.testing.assert_allclose(tangent, _finite_difference(case, args, direction), rtol=tolerance, atol=tolerance)
    c = np.concatenate([cotangents[i].ravel().astype(np.float64) for i in sorted(cotangents)])
    assert float(c @ tangent) == pytest.approx(_pairing(direction, _reverse(case, args, cotangents)),
                                               rel=tolerance * 1e-3, abs=tolerance * 1e-3)


def _heat_steps(u, nu, steps):
    states = [u.copy()]
    for _ in range(steps):
        following = np.zeros_like(u)
        enzpy_cuda.on_cpu(cuda_kernels.heat_step)[3, cuda_kernels.TPB](states[-1], following, nu)
        states.append(following)
    return states


def test_time_step_launched_repeatedly():
    """Reverse launches in reverse order carry the adjoint back through 6 launches of a step."""
    rng = np.random.default_rng(4)
    u, nu, steps = rng.uniform(-1, 1, 90), 0.2, 6
    weights = rng.uniform(-1, 1, 90)
    states = _heat_steps(u, nu, steps)
    adjoint, nu_adjoint = weights.copy(), 0.0
    gradient = enzpy_cuda.differentiate(cuda_kernels.heat_step)[3, cuda_kernels.TPB]
    for k in range(steps, 0, -1):
        previous = np.zeros_like(u)
        (d_nu,) = gradient(Duplicated(states[k - 1].copy(), previous), Duplicated(states[k].copy(), adjoint),
                           Active(nu))
        assert not np.any(adjoint), "the overwritten output's adjoint is consumed"
        adjoint, nu_adjoint = previous, nu_adjoint + d_nu
    direction = rng.uniform(-1, 1, 90)
    energy = lambda s: weights @ _heat_steps(u + s * direction, nu + s * 0.5, steps)[-1]  # noqa: E731
    h = 1e-3
    expected = (-energy(2 * h) + 8 * energy(h) - 8 * energy(-h) + energy(-2 * h)) / (12 * h)
    assert adjoint @ direction + 0.5 * nu_adjoint == pytest.approx(expected, rel=1e-8)


def test_results_do_not_depend_on_the_worker_count():
    import numba

    case = next(c for c in CASES if c.name == "tiled_matmul")
    args = case.arguments(np.random.default_rng(5))
    cotangents = _cotangents(args, np.random.default_rng(6))
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = _reverse(case, args, cotangents)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        parallel = _reverse(case, args, cotangents)
    finally:
        numba.set_num_threads(previous)
    for i in serial:
        np.testing.assert_allclose(parallel[i], serial[i], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ["heat_step", "shared_stencil", "weighted_histogram"])
def test_atomic_private_and_serial_adjoints_agree(name, monkeypatch):
    """The three ways blocks share adjoint memory give one gradient: one worker (plain adds),
    per-worker copies of the read-only arrays' shadows, and atomic adds (copies over budget)."""
    import numba

    from enzpy.cuda import api

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads")
    case = next(c for c in CASES if c.name == name)
    args = case.arguments(np.random.default_rng(8))
    cotangents = _cotangents(args, np.random.default_rng(9))
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = _reverse(case, args, cotangents)
        numba.set_num_threads(2)
        private = _reverse(case, args, cotangents)
        monkeypatch.setattr(api, "PRIVATE_SHADOW_BYTES", 0)
        atomic = _reverse(case, args, cotangents)
    finally:
        numba.set_num_threads(previous)
    for i in serial:
        np.testing.assert_allclose(private[i], serial[i], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(atomic[i], serial[i], rtol=1e-13, atol=1e-13)


# -- errors name the construct and the line; bad input is refused before anything runs

def _shuffle(x, out):
    i = cuda_kernels.cuda.grid(1)
    out[i] = cuda_kernels.cuda.shfl_down_sync(0xFFFFFFFF, x[i], 1)


def _float_max(x, out):
    i = cuda_kernels.cuda.grid(1)
    cuda_kernels.cuda.atomic.max(out, 0, x[i])


def _uses_old_value(x, out):
    i = cuda_kernels.cuda.grid(1)
    old = cuda_kernels.cuda.atomic.add(out, 0, x[i])
    x[i] = old


def _divergent_barrier(x, out):
    i = cuda_kernels.cuda.grid(1)
    if cuda_kernels.cuda.threadIdx.x < 4:
        cuda_kernels.cuda.syncthreads()
        out[i] = x[i]
    else:
        out[i] = 2.0 * x[i]
        cuda_kernels.cuda.syncthreads()


@pytest.mark.parametrize("kernel, construct", [(_shuffle, "warp shuffle"), (_float_max, "cuda.atomic.max"),
                                               (_uses_old_value, "old value")])
def test_unsupported_constructs_are_named_with_their_line(kernel, construct):
    import inspect

    with pytest.raises(FrontendError) as error:
        enzpy_cuda.on_cpu(kernel)[1, 8](np.ones(8), np.zeros(8))
    message = str(error.value)
    assert construct in message and kernel.__name__ in message
    source, first = inspect.getsourcelines(kernel)
    line = first + next(k for k, text in enumerate(source) if "atomic" in text or "shfl" in text)
    assert f"test_cuda.py:{line}" in message


def test_divergent_barriers_are_an_error():
    with pytest.raises(KernelError, match="different barriers"):
        enzpy_cuda.on_cpu(_divergent_barrier)[1, 8](np.ones(8), np.zeros(8))


def test_a_wrong_shadow_names_its_argument_and_changes_nothing():
    x, out = np.ones(64), np.zeros(64)
    with pytest.raises(ValueError, match="argument 1 of 'shared_stencil'"):
        enzpy_cuda.differentiate(cuda_kernels.shared_stencil)[2, cuda_kernels.TPB](
            Duplicated(x, np.zeros(64)), Duplicated(out, np.zeros(63)))
    assert np.all(x == 1.0) and np.all(out == 0.0)


def test_each_threads_tape_is_small_and_its_own():
    """A thread's gradient (ReverseSpec.thread_tapes) pushes onto a tape that starts at 16 slots and
    neither takes nor gives back the spare buffer CPU gradients share."""
    from numba import typeof

    from enzpy.cuda.capture import python_function
    from enzpy.cuda.compile import thread_function
    from enzpy.ir import core

    case = next(c for c in CASES if c.name == "sum_of_squares")
    args = case.arguments(np.random.default_rng(0))
    built = thread_function(python_function(case.kernel), "reverse", tuple(typeof(a) for a in args),
                            (Duplicated,) * len(args), True)
    called = {i.callee.name for f in built.module.functions.values() for i in f.instructions()
              if isinstance(i, core.Call) and isinstance(i.callee, core.Function)}
    assert "enzpy.tape.push.16" in called
    assert not called & {"enzpy.tape.push", "enzpy.tape.start", "enzpy.tape.free"}
    push = built.module.functions["enzpy.tape.push.16"]
    assert [o.value for i in push.instructions() if isinstance(i, core.Select)
            for o in i.operands if isinstance(o, core.ConstantInt)] == [16]


def test_launch_configuration_is_checked():
    with pytest.raises(ValueError, match="blockdim"):
        enzpy_cuda.on_cpu(cuda_kernels.saxpy)[2, (0,)](1.0, np.ones(4), np.ones(4), np.zeros(4))


# -- the GPU path: PTX from llvmlite's NVPTX backend, assembled by the CUDA toolkit's ptxas

def _gpu_toolkit_missing() -> str | None:
    from enzpy.cuda import gpu

    try:
        gpu.libdevice_path()
    except Exception as error:
        return str(error)
    return None if gpu.ptxas() else "ptxas (CUDA toolkit) not found"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gpu_kernels_assemble(case):
    """Each kernel's primal, tangent and gradient kernels compile to PTX that ptxas takes for sm_90;
    the gradient mirrors every barrier and adds adjoints atomically."""
    from enzpy.cuda import gpu

    missing = _gpu_toolkit_missing()
    if missing:
        pytest.skip(missing)
    args = case.arguments(np.random.default_rng(7))
    annotated = [Duplicated(a, np.zeros_like(a)) if _is_float_array(a) else Active(a) if isinstance(a, float)
                 else a for a in args]
    texts = {mode: gpu.ptx(case.kernel, *(args if mode == "primal" else annotated), mode=mode)
             for mode in ("primal", "forward", "reverse")}
    for text in texts.values():
        assert f".entry {gpu.ENTRY}" in text
        assert len(gpu.assemble(text)) > 0
    barriers = {mode: text.count("bar.sync") for mode, text in texts.items()}
    if barriers["primal"] > 1:
        assert barriers["reverse"] > barriers["primal"]
    assert re.search(r"(atom|red)(\.global|\.shared)?\.add\.f(32|64)", texts["reverse"])




def test_the_heat_example_checks_its_gradient():
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "cuda_heat.py"), run_name="__main__")
