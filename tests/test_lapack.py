"""np.linalg (numba's LAPACK helpers) in both modes: the corpus of tests/kernels/lapack.py
against finite differences and forward against reverse, plus what the rules must not do
(factor twice, touch the user's arrays) and what they refuse (complex kinds, routines
without a rule).

The scalar kernels are checked as the corpus is (tests/test_reverse_corpus.py,
tests/test_forward_corpus.py): the objective is L = seed * result + sum_k <c_k, final
array k>, its gradient from one reverse sweep and its directional derivatives from
forward sweeps, against 5-point finite differences along random relative directions.
One `differentiate` per kernel serves the three checks (derivatives are compiled once
per mode). Array results go through vjp / jvp as tests/test_array_results.py does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import tests.test_array_results as array_results
from enzpy import Active, DifferentiationError, Duplicated, differentiate
from tests.kernels.lapack import ARRAY_CASES, CASES, solve_quadratic
from tests.test_blas import gradient_calls
from tests.test_forward_corpus import (forward_directional_derivative, is_single_precision, output_weights,
                                       random_directions)
from tests.test_reverse_corpus import objective, perturbed, reverse_annotations

REPO = str(Path(__file__).resolve().parents[1])
SEED = 0.75
_DIFFERENTIABLE: dict[str, object] = {}


def differentiable_of(case):
    if case.name not in _DIFFERENTIABLE:
        _DIFFERENTIABLE[case.name] = differentiate(case.func)
    return _DIFFERENTIABLE[case.name]


def kernel_of(case):
    return case.func if isinstance(case.func, numba.core.dispatcher.Dispatcher) else numba.njit(case.func)


def fresh(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def reverse_gradient(case, args, weights) -> dict:
    """dL / d(float inputs) by one reverse sweep; checks that the arguments come back unchanged."""
    annotated = reverse_annotations(case, args, weights)
    active = iter(differentiable_of(case).autodiff(*annotated, seed=SEED))
    gradient = {}
    for index, annotation in enumerate(annotated):
        if isinstance(annotation, Duplicated):
            # numba's np.linalg works on copies: the rules must not write into the user's arrays.
            np.testing.assert_array_equal(annotation.value, args[index])
            gradient[index] = annotation.shadow.astype(np.float64)
        elif isinstance(annotation, Active):
            gradient[index] = next(active)
    return gradient


def finite_difference(case, args, directions, weights) -> float:
    step = 1e-2 if is_single_precision(case, args) else 1e-4
    values = [objective(kernel_of(case), perturbed(args, directions, s * step), weights, SEED) for s in (-2, -1, 1, 2)]
    return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)


def assert_close(case, args, got, expected, what):
    tolerance = 2e-2 if is_single_precision(case, args) else 1e-6
    assert abs(got - expected) <= tolerance * max(1.0, abs(expected)), \
        f"{case.name}: {what} {got!r} vs finite differences {expected!r}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_reverse_matches_finite_differences(case):
    rng = np.random.default_rng(7)
    args = case.make_args(np.random.default_rng(3))
    weights = output_weights(rng, args)
    gradient = reverse_gradient(case, args, weights)
    for _ in range(2):
        directions = random_directions(rng, case, args)
        predicted = sum(float(np.sum(gradient[i] * directions[i])) for i in directions)
        assert_close(case, args, predicted, finite_difference(case, args, directions, weights), "reverse")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_forward_matches_finite_differences(case):
    rng = np.random.default_rng(11)
    args = case.make_args(np.random.default_rng(3))
    weights = output_weights(rng, args)
    for _ in range(2):
        directions = random_directions(rng, case, args)
        predicted = forward_directional_derivative(differentiable_of(case), args, directions, weights, SEED)
        assert_close(case, args, predicted, finite_difference(case, args, directions, weights), "forward")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_forward_agrees_with_reverse(case):
    """<J t, c> from one forward sweep equals <t, J^T c> from one reverse sweep."""
    rng = np.random.default_rng(5)
    args = case.make_args(np.random.default_rng(3))
    weights = output_weights(rng, args)
    directions = random_directions(rng, case, args)
    forward = forward_directional_derivative(differentiable_of(case), args, directions, weights, SEED)
    gradient = reverse_gradient(case, args, weights)
    reverse = sum(float(np.sum(gradient[i] * directions[i])) for i in directions)
    tolerance = 1e-4 if is_single_precision(case, args) else 1e-10
    assert abs(forward - reverse) <= tolerance * max(abs(forward), abs(reverse), 1e-300) + 1e-300, \
        f"{case.name}: <J t, c> = {forward!r} but <t, J^T c> = {reverse!r}"


@pytest.mark.parametrize("case", ARRAY_CASES, ids=lambda case: case.name)
def test_array_results_match_finite_differences(case):
    array_results.test_vjp_and_jvp_match_finite_differences(case, True)


@pytest.mark.parametrize("name", ["lapack_determinant", "lapack_nuclear_norm", "lapack_eigen_energy"])
def test_unoptimized_ir_gives_the_same_gradient(name):
    # numba's raw IR: np.linalg.svd's jobz ('A' or 'S') is decided at run time there.
    case = next(case for case in CASES if case.name == name)
    args = case.make_args(np.random.default_rng(3))
    _, unoptimized = differentiate(case.func, optimize=False).value_and_grad(*fresh(args))
    _, optimized = differentiable_of(case).value_and_grad(*fresh(args))
    for ours, reference in zip(unoptimized, optimized):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- the mechanism

def test_the_gradient_of_a_solve_reuses_its_factors():
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((5, 5)) + 3.0 * np.eye(5), rng.standard_normal(5)
    calls = gradient_calls(solve_quadratic, [Duplicated(A, np.zeros_like(A)), Duplicated(b, np.zeros_like(b))])
    # The primal gesv and one adjoint (a getrs with the saved factors): no second factorization.
    assert calls["numba_xgesv"] == 1 and calls["numba_xxgetrf"] == 0
    assert calls["enzpy_lapack_gesv_adjoint_d"] == 1


def test_caching_everything_agrees():
    rng = np.random.default_rng(2)
    S = rng.standard_normal((4, 4))
    S = S @ S.T / 4 + np.eye(4)
    x, mu = rng.standard_normal(4), rng.standard_normal(4)
    from tests.kernels.lapack import gaussian_log_likelihood

    gradients = []
    for minimize in (True, False):
        shadows = [np.zeros_like(S), np.zeros_like(x), np.zeros_like(mu)]
        differentiate(gaussian_log_likelihood, cache_minimization=minimize).autodiff(
            Duplicated(S.copy(), shadows[0]), Duplicated(x.copy(), shadows[1]), Duplicated(mu.copy(), shadows[2]))
        gradients.append(shadows)
    for ours, cached in zip(*gradients):
        np.testing.assert_allclose(ours, cached, rtol=1e-12)
    L = np.linalg.cholesky(S)
    z = np.linalg.solve(S, x - mu)
    np.testing.assert_allclose(gradients[0][1], -z, rtol=1e-12)
    # d/dS on the lower triangle numpy's cholesky reads: -(S^-1 - z z^T) / 2, doubled off the diagonal.
    full = -0.5 * (np.linalg.inv(S) - np.outer(z, z))
    np.testing.assert_allclose(gradients[0][0], np.tril(2.0 * full, -1) + np.diag(np.diag(full)), rtol=1e-10,
                               atol=1e-12)
    assert L.shape == (4, 4)


def test_a_factorization_the_kernel_overwrites_later_is_copied_for_reverse_mode():
    @numba.njit
    def inverse_then_scaled(A):
        B = np.linalg.inv(A)
        total = np.sum(B * B)
        B *= 2.0                                # the inverse is overwritten after getri made it
        return total + np.sum(B)

    rng = np.random.default_rng(4)
    A = rng.standard_normal((4, 4)) + 3.0 * np.eye(4)
    calls = gradient_calls(inverse_then_scaled, [Duplicated(A, np.zeros_like(A))])
    assert calls["copies"] >= 2                 # getri's input factors, and its result
    gradient = np.zeros_like(A)
    differentiate(inverse_then_scaled).autodiff(Duplicated(A.copy(), gradient))
    inverse = np.linalg.inv(A)
    cotangent = 2.0 * inverse + 2.0
    np.testing.assert_allclose(gradient, -inverse.T @ cotangent @ inverse.T, rtol=1e-10)


def test_a_raising_kernel_frees_the_factor_copies():
    # NRT statistics must be on before numba starts: a fresh interpreter.
    script = textwrap.dedent("""
        import numpy as np, numba
        from numba.core.runtime import rtsys
        from enzpy import Duplicated, differentiate

        @numba.njit
        def checked(A, b):
            x = np.linalg.solve(A, b)
            s = x @ x
            if s > 1e6:
                raise ValueError("too large")
            return s

        d = differentiate(checked)
        A, b = np.eye(3) + 0.1, np.ones(3)
        d.autodiff(Duplicated(A.copy(), np.zeros((3, 3))), Duplicated(b.copy(), np.zeros(3)))
        before = rtsys.get_allocation_stats()
        for _ in range(100):
            try:
                d.autodiff(Duplicated(A.copy(), np.zeros((3, 3))), Duplicated(1e4 * b, np.zeros(3)))
            except ValueError as error:
                assert "too large" in str(error)
            else:
                raise AssertionError("no exception")
        after = rtsys.get_allocation_stats()
        assert after.alloc - before.alloc >= 100, after.alloc - before.alloc
        assert after.alloc - before.alloc == after.free - before.free, (before, after)
        assert after.mi_alloc - before.mi_alloc == after.mi_free - before.mi_free, (before, after)
        print("OK")
    """)
    environment = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_the_users_arrays_are_not_modified():
    rng = np.random.default_rng(6)
    from tests.kernels.lapack import gaussian_log_likelihood, least_squares_residual, nuclear_norm

    by_name = {case.name: case for case in CASES}
    for kernel, args in ((gaussian_log_likelihood, by_name["lapack_gaussian_log_likelihood"].make_args(rng)),
                         (least_squares_residual, (rng.standard_normal((6, 3)), rng.standard_normal(6))),
                         (nuclear_norm, (rng.standard_normal((4, 3)),))):
        entry = fresh(args)
        differentiable = differentiate(kernel)
        differentiable.value_and_grad(*args)
        differentiable.jvp(tuple(args), tuple(np.ones_like(a) for a in args))
        for before, after in zip(entry, args):
            np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------- the entry points, one routine at a time
# Each LAPACK routine as a map F from its operands' contents before the call to their contents
# after it (scipy's LAPACK gives F), against the tangent and adjoint entry points of
# enzpy/rules/lapack_calculus.py called directly: the tangent against finite differences of F
# (on what F defines: not on what a routine destroys, and for gelsd's trailing rows only their
# column norms), the adjoint against the tangent. This covers every job and triangle, whether
# or not a kernel reaches it.

def _fortran(*shape, rng, scale=1.0):
    return np.asfortranarray(scale * rng.standard_normal(shape))


def _call_entry_point(routine, mode, arguments):
    import ctypes

    from enzpy.rules import lapack_calculus

    function = lapack_calculus._COMPILED[lapack_calculus.entry_point(routine, mode, True)].ctypes
    function.argtypes = [ctypes.c_void_p if isinstance(a, np.ndarray) or a is None else
                         ctypes.c_double if isinstance(a, float) else ctypes.c_int64 for a in arguments]
    function(*[a.ctypes.data if isinstance(a, np.ndarray) else a for a in arguments])


def _signed(vectors, columns):
    """Singular or eigen vectors with a positive first row: F must be a function of its input."""
    vectors = vectors.copy(order="F")
    signs = np.sign(vectors[0:1, :columns])
    vectors[:, :columns] *= signs
    return vectors, signs


class _Routine:
    """One routine: blocks (name -> array before the call), F, which blocks it reads, the
    entry points' arguments, and what finite differences can see of its results."""

    def __init__(self, name, blocks, run, reads, arguments, observe=None):
        self.name, self.blocks, self.run, self.reads = name, blocks, run, reads
        self.arguments, self.observe = arguments, observe or (lambda out: np.concatenate([v.ravel() for v in out.values()]))


def _routines():
    from scipy.linalg import lapack

    rng = np.random.default_rng(1)
    n, count = 5, 2
    general = np.asfortranarray(rng.standard_normal((n, n)) + 3.0 * np.eye(n))
    g = rng.standard_normal((n, n))
    spd = np.asfortranarray(g @ g.T / n + np.eye(n) + np.diag(np.linspace(0, 1, n)))

    def getrf(blocks):
        lu, pivots, _ = lapack.dgetrf(blocks["a"])
        return {"a": np.asfortranarray(lu)}, (pivots + 1).astype(np.int32)

    def gesv(blocks):
        lu, pivots, x, _ = lapack.dgesv(blocks["a"], blocks["b"])
        return {"a": np.asfortranarray(lu), "b": np.asfortranarray(x)}, (pivots + 1).astype(np.int32)

    def getri(blocks):
        return {"a": np.asfortranarray(lapack.dgetri(blocks["a"], PIVOTS - 1)[0])}, PIVOTS

    lu, pivots, _ = lapack.dgetrf(general)
    PIVOTS = (pivots + 1).astype(np.int32)
    routines = [
        _Routine("getrf", {"a": general}, getrf, {"a"},
                 lambda out, pivots, shadow: [n, n, out["a"], n, pivots, shadow["a"], 1]),
        _Routine("gesv", {"a": general, "b": _fortran(n, count, rng=rng)}, gesv, {"a", "b"},
                 lambda out, pivots, shadow: [n, count, out["a"], n, pivots, out["b"], n, shadow["a"], 1,
                                              shadow["b"], 1]),
        _Routine("getri", {"a": np.asfortranarray(lu)}, getri, {"a"},
                 lambda out, pivots, shadow, before=None: [n, before["a"], n, PIVOTS, out["a"], shadow["a"], 1]),
    ]
    for lower in (0, 1):
        def potrf(blocks, lower=lower):
            return {"a": np.asfortranarray(lapack.dpotrf(blocks["a"], lower=lower, clean=0)[0])}, None
        routines.append(_Routine(f"potrf-{'L' if lower else 'U'}", {"a": spd}, potrf, {"a"},
                                 lambda out, pivots, shadow, lower=lower: [lower, n, out["a"], n, shadow["a"], 1]))
        for vectors in (1, 0):
            def syevd(blocks, lower=lower, vectors=vectors):
                w, v, _ = lapack.dsyevd(blocks["a"], compute_v=1, lower=lower)
                mask = np.tril(np.ones((n, n))) if lower else np.triu(np.ones((n, n)))
                a = _signed(v, n)[0] if vectors else np.where(mask > 0, 0.0, blocks["a"])   # 'N' destroys a triangle
                return {"a": np.asfortranarray(a), "w": w}, None
            routines.append(_Routine(
                f"syevd-{'V' if vectors else 'N'}{'L' if lower else 'U'}", {"a": spd, "w": np.zeros(n)}, syevd, {"a"},
                lambda out, pivots, shadow, before=None, lower=lower, vectors=vectors: [
                    vectors, lower, n, out["a"] if vectors else before["a"], n, out["w"], shadow["a"], 1,
                    shadow["w"], 1]))
    for m, k in ((5, 3), (3, 5)):
        matrix = _fortran(m, k, rng=rng)
        small = min(m, k)
        for job in (0, 1, 2):
            columns_u, rows_vt = (m, k) if job == 2 else (small, small)

            def gesdd(blocks, m=m, k=k, job=job, small=small):
                u, s, vt, _ = lapack.dgesdd(blocks["a"], compute_uv=1, full_matrices=int(job == 2))
                u, signs = _signed(u, small)
                vt = vt.copy(order="F")
                vt[:small, :] *= signs.T
                out = {"a": np.zeros((m, k), order="F"), "s": s}         # the call destroys a: tangent 0
                if job:
                    out.update(u=u, vt=vt)
                return out, None

            blocks = {"a": matrix, "s": np.zeros(small)}
            if job:
                blocks.update(u=np.zeros((m, columns_u), order="F"), vt=np.zeros((rows_vt, k), order="F"))
            def observe(out, small=small):
                # A full U's and V's other columns are arbitrary bases of the complements: not a function of A
                parts = [out["s"]] + ([out["u"][:, :small].ravel(), out["vt"][:small].ravel()] if "u" in out else [])
                return np.concatenate(parts)

            routines.append(_Routine(
                f"gesdd-{'NSA'[job]}-{m}x{k}", blocks, gesdd, {"a"},
                lambda out, pivots, shadow, before=None, m=m, k=k, job=job, columns_u=columns_u, rows_vt=rows_vt: [
                    job, m, k, before["a"] if job == 0 else None, m, out["s"] if job else None,
                    out["u"] if job else None, m, out["vt"] if job else None, rows_vt if job else 1,
                    shadow["a"], 1, shadow["s"], 1, shadow.get("u"), int(job > 0), shadow.get("vt"), int(job > 0)],
                observe))
    for m, k in ((6, 3), (3, 5)):
        tall = max(m, k)
        right = np.zeros((tall, count), order="F")
        right[:m] = rng.standard_normal((m, count))

        def gelsd(blocks, m=m, k=k):
            x, s, _, _ = lapack.dgelsd(blocks["a"], blocks["b"].copy(), lwork=2000, size_iwork=2000, cond=-1)
            b = np.zeros_like(blocks["b"])
            b[:x.shape[0]] = x
            return {"a": np.zeros((m, k), order="F"), "b": b, "s": s}, None

        def observe(out, m=m, k=k):
            # X, the singular values, and the residuals: the trailing rows' column norms
            return np.concatenate([out["b"][:k].ravel(), out["s"], np.sum(out["b"][k:m] ** 2, axis=0)])

        routines.append(_Routine(
            f"gelsd-{m}x{k}", {"a": _fortran(m, k, rng=rng), "b": right, "s": np.zeros(min(m, k))}, gelsd, {"a", "b"},
            lambda out, pivots, shadow, before=None, m=m, k=k, tall=tall: [
                m, k, count, before["a"], m, before["b"], tall, out["b"], -1.0, shadow["a"], 1, shadow["b"], 1,
                shadow["s"], 1], observe))
    return routines


_ROUTINES = _routines()


def _entry_point_sweep(routine, mode, before, after, pivots, shadows):
    import inspect

    arguments = routine.arguments(after, pivots, shadows, **({"before": {k: v.copy(order="F") for k, v in
                                                                         before.items()}}
                                                             if "before" in inspect.signature(routine.arguments).parameters
                                                             else {}))
    _call_entry_point(routine.name.split("-")[0], mode, arguments)


@pytest.mark.parametrize("routine", _ROUTINES, ids=lambda routine: routine.name)
def test_entry_points_match_finite_differences(routine):
    rng = np.random.default_rng(9)
    before = routine.blocks
    after, pivots = routine.run(before)
    # Tangents of what the call reads; write-only blocks get none.
    tangent_in = {k: np.asfortranarray(rng.standard_normal(v.shape)) if k in routine.reads else np.zeros_like(v)
                  for k, v in before.items()}
    tangent = {k: v.copy(order="F") for k, v in tangent_in.items()}
    _entry_point_sweep(routine, "tangent", before, after, pivots, tangent)
    step, scale = 1e-6, 1e-3
    moved = [routine.run({k: before[k] + s * step * tangent_in[k] for k in before})[0] for s in (1, -1)]
    finite = (routine.observe(moved[0]) - routine.observe(moved[1])) / (2 * step)
    predicted = (routine.observe({k: after[k] + scale * tangent[k] for k in after}) -
                 routine.observe({k: after[k] - scale * tangent[k] for k in after})) / (2 * scale)
    np.testing.assert_allclose(predicted, finite, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(finite).max()))
    if "u" in after and after["u"].shape[0] == after["u"].shape[1]:
        # A full U stays orthogonal to first order: U^T dU is skew (V alike).
        for q, dq in ((after["u"], tangent["u"]), (after["vt"].T, tangent["vt"].T)):
            np.testing.assert_allclose(q.T @ dq + dq.T @ q, 0.0, atol=1e-10)

    cotangent = {k: np.asfortranarray(rng.standard_normal(v.shape)) for k, v in after.items()}
    adjoint = {k: v.copy(order="F") for k, v in cotangent.items()}
    _entry_point_sweep(routine, "adjoint", before, after, pivots, adjoint)
    forward = sum(float(np.sum(tangent[k] * cotangent[k])) for k in after)
    reverse = sum(float(np.sum(tangent_in[k] * adjoint[k])) for k in after)
    assert forward == pytest.approx(reverse, rel=1e-10, abs=1e-12)


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_complex_lapack_is_refused_naming_the_function(mode):
    def complex_solve(x):
        z = x * (1.0 + 2.0j)
        Z = np.outer(z, z) + np.eye(z.shape[0])
        return np.sum(np.linalg.solve(Z, z)).real

    x = np.linspace(0.5, 1.0, 3)
    with pytest.raises(DifferentiationError, match=r"np\.linalg\.solve \('numba_xgesv', kind 'z'\): complex LAPACK "
                                                   r"is not supported"):
        differentiate(complex_solve).autodiff(Duplicated(x, np.ones(3)), mode=mode)


def eigenvalues(a):
    w, v = np.linalg.eig(a)
    return np.sum(w)


def r_factor(a):
    q, r = np.linalg.qr(a)
    return np.sum(r * r)


@pytest.mark.parametrize("function, mode, operation", [
    (eigenvalues, "reverse", r"np\.linalg\.eig / np\.linalg\.eigvals \(numba_ez_rgeev"),
    (eigenvalues, "forward", r"np\.linalg\.eig / np\.linalg\.eigvals \(numba_ez_rgeev"),
    (r_factor, "reverse", r"np\.linalg\.qr \(numba_ez_(geqrf|xxgqr)"),
    (r_factor, "forward", r"np\.linalg\.qr \(numba_ez_(geqrf|xxgqr)")], ids=["eig-reverse", "eig-forward", "qr-reverse", "qr-forward"])
def test_a_routine_without_a_rule_is_refused_naming_the_function_and_line(function, mode, operation):
    line = function.__code__.co_firstlineno + 1
    a = np.diag([1.0, 2.0, 3.0]) + 0.1
    located = rf"call to {operation}.*no differentiation rule.*Python source .*test_lapack\.py:{line}"
    with pytest.raises(DifferentiationError, match=located):
        differentiate(function).autodiff(Duplicated(a, np.ones((3, 3))), mode=mode)
