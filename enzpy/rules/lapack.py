"""Derivatives of numba's LAPACK helpers (np.linalg), stated at the LAPACK level.

numba's np.linalg copies its operands into fresh column-major arrays and calls
a helper of numba/_lapack.c that works on them in place (numba/np/linalg.py):

    numba_xgesv(kind, n, nrhs, a, lda, ipiv, b, ldb)      solve: A := LU, B := A^-1 B
    numba_xxgetrf(kind, m, n, a, lda, ipiv)               inv, det, slogdet: A := LU (P^T A = L U)
    numba_ez_xxgetri(kind, n, a, lda, ipiv)               inv: LU := A^-1
    numba_xxpotrf(kind, uplo, n, a, lda)                  cholesky: a triangle of A := its factor
    numba_ez_xxxevd(kind, jobz, uplo, n, a, lda, w)       eigh / eigvalsh: w, and A := V ('V')
    numba_ez_gesdd(kind, jobz, m, n, a, lda, s, u, ldu, vt, ldvt)
                                                          svd ('A', 'S'), norm / cond ('N'): s, U, V^T
    numba_ez_gelsd(kind, m, n, nrhs, a, lda, b, ldb, s, rcond, rank)
                                                          lstsq: B := X (and the residual's coordinates)

det and slogdet read the LU factors' diagonal in numba's own code, so a rule
for the factorization is all they need; inv is getrf then getri. Each rule
says which operands are arrays (the pivots and gelsd's rank are integers:
written, copied when the reverse sweep needs them, never shadowed), which
inputs its code reads (`contents`, as the call read them: copied before the
call, since the call overwrites them) and which results (`result`, as the call
left them: the factors, re-read or copied after the call), and passes them, with
the shadows, to a tangent or an adjoint entry point in `lapack_calculus.py`,
where the matrix calculus is numpy code numba compiles: reverse mode of a solve
is one more solve with the saved factors (getrs with the transpose), not a new
factorization. The derivatives are defined where the functions are smooth:
distinct eigenvalues and singular values, full rank for lstsq (NaN otherwise);
numba's np.linalg refuses singular matrices itself. Complex kinds are refused
by name; so are the LAPACK routines without a rule (geev: np.linalg.eig,
geqrf / orgqr: np.linalg.qr), by the helper table (numba_helpers.py).
"""

from __future__ import annotations

from numba.np.linalg import F_INT_nptype

from ..ir import core
from ..ir.builder import constant_int
from ..ir.types import DOUBLE, FLOAT, I32, I64, PTR, VOID, Type
from .calls import ArrayOperand, MemoryCallContext, MemoryCallRule, register_memory_call_rule
from .numba_helpers import LAPACK_OPERATIONS

_REAL_KINDS = {"d": DOUBLE, "s": FLOAT}
_COMPLEX_KINDS = {"z": DOUBLE, "c": FLOAT}
_PIVOT = I64 if F_INT_nptype().itemsize == 8 else I32
"""numba's Fortran integer (ipiv, rank): what its LAPACK build takes."""
_ONE = constant_int(I64, 1)


def _character(value: core.Value) -> str | None:
    return chr(value.value & 0xFF) if isinstance(value, core.ConstantInt) else None


def _is(value: core.Value, letters: str) -> bool:
    """Whether a flag operand is the constant of one of `letters` (False where it is not a constant)."""
    character = _character(value)
    return character is not None and character in letters


def _minimum(m: core.Value, n: core.Value):
    """min(m, n) as an extent: computed where a copy needs it (`ArrayOperand`)."""
    return lambda builder: builder.select(builder.icmp("slt", m, n), m, n)


def _flag(value: bool) -> core.ConstantInt:
    return constant_int(I64, int(value))


class _LapackRule(MemoryCallRule):
    """What the routines share: the kind, constant job flags, and calling the entry points."""

    routine = ""
    """The entry points' name in lapack_calculus (`gesv` for `gesv_tangent` / `gesv_adjoint`)."""
    flags: dict[int, str] = {}
    """Operand position -> the characters numba passes there (jobz, uplo)."""

    def float_type(self, call: core.Call) -> Type | None:
        kind = _character(call.operands[0])
        return _REAL_KINDS.get(kind) or _COMPLEX_KINDS.get(kind)

    def unsupported(self, call: core.Call) -> str | None:
        name, kind = self.names[0], _character(call.operands[0])
        operation = LAPACK_OPERATIONS[name]
        if kind in _COMPLEX_KINDS:
            return f"{operation} ('{name}', kind '{kind}'): complex LAPACK is not supported"
        if kind not in _REAL_KINDS:
            return f"{operation} ('{name}'): the LAPACK kind is not a known constant"
        for position, allowed in self.flags.items():
            if not _is(call.operands[position], allowed):
                return f"{operation} ('{name}'): operand {position} is not one of the constants {', '.join(allowed)}"
        return None

    def arguments(self, context: MemoryCallContext) -> list[core.Value]:
        """The entry points' arguments (lapack_calculus.PARAMETERS says their kinds)."""
        raise NotImplementedError

    def forward(self, context):
        self._call(context, "tangent")

    def reverse(self, context):
        self._call(context, "adjoint")

    def _call(self, context: MemoryCallContext, mode: str) -> None:
        call = context.call
        if all(context.shadow(a.position) is None for a in self.arrays(call) if a.float_type is not None):
            return
        from . import lapack_calculus             # numba compiles (or loads) the entry points on first use

        symbol = lapack_calculus.entry_point(self.routine, mode, self.float_type(call) is DOUBLE)
        codes = lapack_calculus.PARAMETERS[self.routine]
        callee = context.builder.declare(symbol, VOID, [{"i": I64, "f": PTR, "p": PTR, "r": DOUBLE}[c]
                                                        for c in codes])
        arguments = self.arguments(context)
        assert len(arguments) == len(codes), (symbol, len(arguments))
        context.builder.call(callee, arguments)
        context.done()


def _shadow(context: MemoryCallContext, position: int) -> list[core.Value]:
    """[shadow pointer, 1], or [null, 0] for an operand without derivative."""
    shadow = context.shadow(position)
    return [core.ConstantNull(PTR), _flag(False)] if shadow is None else [shadow, _flag(True)]


def _null() -> core.Value:
    return core.ConstantNull(PTR)


def _integer_block(position: int, rows, reads: bool, writes: bool) -> ArrayOperand:
    return ArrayOperand(position, rows, _ONE, rows, None, reads=reads, writes=writes, element_type=_PIVOT)


# -- numba_xgesv(kind, n, nrhs, a, lda, ipiv, b, ldb): np.linalg.solve

class Gesv(_LapackRule):
    """dX = A^-1 (dB - dA X); Bbar = A^-T Xbar, Abar = -Bbar X^T (one getrs with the factors).
    The factors left in A have getrf's derivatives (np.linalg.solve never reads them)."""

    names = ("numba_xgesv",)
    routine = "gesv"

    def arrays(self, call):
        n, nrhs, lda, ldb = (call.operands[p] for p in (1, 2, 4, 7))
        ty = self.float_type(call)
        return [ArrayOperand(3, n, n, lda, ty, writes=True), _integer_block(5, n, reads=False, writes=True),
                ArrayOperand(6, n, nrhs, ldb, ty, writes=True)]

    def contents_needed(self, call, active):
        return set()

    def results_needed(self, call, active):
        return {3, 5, 6}

    def arguments(self, context):
        return [context.value(1), context.value(2), context.result(3), context.value(4), context.result(5),
                context.result(6), context.value(7), *_shadow(context, 3), *_shadow(context, 6)]


# -- numba_xxgetrf(kind, m, n, a, lda, ipiv): np.linalg.inv, det, slogdet

class Getrf(_LapackRule):
    """dL = L tril(F, -1), dU = triu(F) U with F = L^-1 P^T dA U^-1, and its transpose.
    numba factors square matrices only (the entry points give NaN for others)."""

    names = ("numba_xxgetrf",)
    routine = "getrf"

    def arrays(self, call):
        m, n, lda = call.operands[1], call.operands[2], call.operands[4]
        return [ArrayOperand(3, m, n, lda, self.float_type(call), writes=True),
                _integer_block(5, _minimum(m, n), reads=False, writes=True)]

    def contents_needed(self, call, active):
        return set()

    def results_needed(self, call, active):
        return {3, 5}

    def arguments(self, context):
        return [context.value(1), context.value(2), context.result(3), context.value(4), context.result(5),
                *_shadow(context, 3)]


# -- numba_ez_xxgetri(kind, n, a, lda, ipiv): np.linalg.inv, after getrf

class Getri(_LapackRule):
    """From the factors' tangent: dA = P (dL U + L dU), d(A^-1) = -A^-1 dA A^-1; the adjoint
    maps G = -A^-T Ibar A^-T back onto the factors."""

    names = ("numba_ez_xxgetri",)
    routine = "getri"

    def arrays(self, call):
        n, lda = call.operands[1], call.operands[3]
        return [ArrayOperand(2, n, n, lda, self.float_type(call), writes=True),
                _integer_block(4, n, reads=True, writes=False)]

    def contents_needed(self, call, active):
        return {2, 4}

    def results_needed(self, call, active):
        return {2}

    def arguments(self, context):
        return [context.value(1), context.contents(2), context.value(3), context.contents(4), context.result(2),
                *_shadow(context, 2)]


# -- numba_xxpotrf(kind, uplo, n, a, lda): np.linalg.cholesky

class Potrf(_LapackRule):
    """A = U^T U from A's upper triangle (uplo 'U', what numba passes for its C-order copy) or
    L L^T from the lower: dU = Psi(U^-T dA U^-1) U, Psi the upper triangle with half its diagonal.
    The other triangle is not touched; its shadow neither."""

    names = ("numba_xxpotrf",)
    routine = "potrf"
    flags = {1: "ULul"}

    def arrays(self, call):
        n, lda = call.operands[2], call.operands[4]
        return [ArrayOperand(3, n, n, lda, self.float_type(call), writes=True)]

    def contents_needed(self, call, active):
        return set()

    def results_needed(self, call, active):
        return {3}

    def arguments(self, context):
        lower = _is(context.call.operands[1], "Ll")
        return [_flag(lower), context.value(2), context.result(3), context.value(4), *_shadow(context, 3)]


# -- numba_ez_xxxevd(kind, jobz, uplo, n, a, lda, w): np.linalg.eigh ('V'), eigvalsh ('N')

class Syevd(_LapackRule):
    """C = V^T dA V: dw = diag(C), dV = V (F o C), F_ij = 1 / (w_j - w_i); Abar = V (diag(wbar)
    + F o (V^T Vbar)) V^T, symmetrized, on the triangle the routine reads. For 'N' the
    eigenvectors come from a second decomposition of the saved input."""

    names = ("numba_ez_xxxevd",)
    routine = "syevd"
    flags = {1: "VNvn", 2: "ULul"}

    def arrays(self, call):
        n, lda = call.operands[3], call.operands[5]
        ty = self.float_type(call)
        return [ArrayOperand(4, n, n, lda, ty, writes=True), ArrayOperand(6, n, _ONE, n, ty, reads=False, writes=True)]

    def _vectors(self, call) -> bool:
        return _is(call.operands[1], "Vv")

    def contents_needed(self, call, active):
        return set() if self._vectors(call) else {4}

    def results_needed(self, call, active):
        return {4, 6} if self._vectors(call) else set()

    def arguments(self, context):
        call = context.call
        vectors = self._vectors(call)
        return [_flag(vectors), _flag(_is(call.operands[2], "Ll")), context.value(3),
                context.result(4) if vectors else context.contents(4), context.value(5),
                context.result(6) if vectors else _null(), *_shadow(context, 4), *_shadow(context, 6)]


# -- numba_ez_gesdd(kind, jobz, m, n, a, lda, s, u, ldu, vt, ldvt): np.linalg.svd, norm, cond

class Gesdd(_LapackRule):
    """The thin SVD's derivatives (distinct singular values); with full_matrices the other
    columns of U and V (arbitrary bases of the complements) turn as little as they can,
    dU2 = -U1 dU1^T U2. For 'N' (singular values only) U and V come from a second
    decomposition of the saved input. The call destroys A: its tangent is 0. numba's
    np.linalg.svd picks 'A' or 'S' from full_matrices, which unoptimized code decides at run time."""

    names = ("numba_ez_gesdd",)
    routine = "gesdd"

    def unsupported(self, call):
        problem = super().unsupported(call)
        if problem is None and _character(call.operands[1]) not in (None, "A", "S", "N", "a", "s", "n"):
            problem = f"{LAPACK_OPERATIONS[self.names[0]]} ('{self.names[0]}'): jobz '{_character(call.operands[1])}'"
        return problem

    @staticmethod
    def _job(call) -> int | None:
        """0, 1, 2 for 'N', 'S', 'A'; None where jobz is not a constant (then 'A' or 'S')."""
        character = _character(call.operands[1])
        return None if character is None else {"N": 0, "S": 1, "A": 2}.get(character.upper())

    def arrays(self, call):
        m, n, lda, ldu, ldvt, jobz = (call.operands[p] for p in (2, 3, 5, 8, 10, 1))
        ty, k, job = self.float_type(call), _minimum(m, n), self._job(call)
        arrays = [ArrayOperand(4, m, n, lda, ty, writes=True), ArrayOperand(6, k, _ONE, k, ty, reads=False,
                                                                            writes=True)]
        if job != 0:                            # 'N' leaves u and vt alone
            columns_u = m if job == 2 else k if job == 1 else \
                lambda builder: builder.select(builder.icmp("eq", jobz, constant_int(jobz.type, ord("A"))), m,
                                               k(builder))
            arrays += [ArrayOperand(7, m, columns_u, ldu, ty, reads=False, writes=True),
                       ArrayOperand(9, ldvt, n, ldvt, ty, reads=False, writes=True)]
        return arrays

    def contents_needed(self, call, active):
        return {4} if self._job(call) == 0 else set()

    def results_needed(self, call, active):
        return set() if self._job(call) == 0 else {6, 7, 9}

    def arguments(self, context):
        job = self._job(context.call)
        if job != 0:                            # what the call computed
            singular = [_null(), context.value(5), context.result(6), context.result(7), context.value(8),
                        context.result(9), context.value(10)]
        else:                                   # the input, decomposed again
            singular = [context.contents(4), context.value(5), _null(), _null(), context.value(8), _null(),
                        context.value(10)]
        if job is None:                         # 2 for 'A', 1 for 'S', -1 (NaN derivatives) for anything else
            builder, jobz = context.builder, context.value(1)
            is_full = builder.icmp("eq", jobz, constant_int(jobz.type, ord("A")))
            is_thin = builder.icmp("eq", jobz, constant_int(jobz.type, ord("S")))
            code = builder.select(is_full, constant_int(I64, 2), builder.select(is_thin, _ONE, constant_int(I64, -1)))
        else:
            code = constant_int(I64, job)
        vectors = [*_shadow(context, 7), *_shadow(context, 9)] if job != 0 else [_null(), _flag(False)] * 2
        return [code, context.value(2), context.value(3), *singular, *_shadow(context, 4),
                *_shadow(context, 6), *vectors]


# -- numba_ez_gelsd(kind, m, n, nrhs, a, lda, b, ldb, s, rcond, rank): np.linalg.lstsq

class Gelsd(_LapackRule):
    """Full rank: dX = A^+ (dB - dA X) + (A^T A)^-1 dA^T r + (I - A^+ A) dA^T (A A^T)^-1 B,
    ds = diag(U^T dA V), from an SVD of the saved A. For m > n, rows n..m-1 of B hold the
    residual r's coordinates in a basis gelsd chooses: only their column norms (numba's
    residuals) have a derivative, and the rule gives those. Rank-deficient: NaN."""

    names = ("numba_ez_gelsd",)
    routine = "gelsd"

    def arrays(self, call):
        m, n, nrhs, lda, ldb = (call.operands[p] for p in (1, 2, 3, 5, 7))
        ty, k = self.float_type(call), _minimum(m, n)
        return [ArrayOperand(4, m, n, lda, ty, writes=True), ArrayOperand(6, ldb, nrhs, ldb, ty, writes=True),
                ArrayOperand(8, k, _ONE, k, ty, reads=False, writes=True),
                _integer_block(10, _ONE, reads=False, writes=True)]

    def contents_needed(self, call, active):
        return {4, 6}

    def results_needed(self, call, active):
        return {6}

    def arguments(self, context):
        return [context.value(1), context.value(2), context.value(3), context.contents(4), context.value(5),
                context.contents(6), context.value(7), context.result(6), context.value(9),
                *_shadow(context, 4), *_shadow(context, 6), *_shadow(context, 8)]


RULES = (Gesv(), Getrf(), Getri(), Potrf(), Syevd(), Gesdd(), Gelsd())
for _rule in RULES:
    register_memory_call_rule(_rule)
