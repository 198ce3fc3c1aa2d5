"""Derivatives of numba's BLAS helpers, stated at the BLAS level (as Enzyme does).

numba lowers `np.dot`, `@` and `np.vdot` on float arrays to three helpers of
its `_helperlib` (numba/_lapack.c), which call scipy's BLAS (and the 2-norm of
a vector, `np.linalg.norm`, to a fourth, `numba_xxnrm2(kind, n, x, incx, result)`):

    numba_xxdot(kind, conjugate, n, x, y, result)            *result = x . y
    numba_xxgemv(kind, trans, m, n, alpha, a, lda, x, beta, y)
                                                  y = alpha op(A) x + beta y
    numba_xxgemm(kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
                                                  C = alpha op(A) op(B) + beta C

`kind` is the character 'd', 's' (float64, float32), 'z' or 'c' (complex,
refused here); `trans` is 'n' or 't'; matrices are column-major with leading
dimension lda; vectors are contiguous (increment 1); alpha and beta are
pointers to a float (numba passes 1 and 0). np.dot(A, B) of C arrays computes
C^T = B^T A^T in column-major terms, so layouts become trans flags.

The derivative code calls the same helpers, so gradients run at BLAS speed:

    routine  tangent                                   adjoint
    dot      dr = dx . y + x . dy                      xbar += rbar y, ybar += rbar x  (gemv as axpy)
    nrm2     dr = x . dx / r                           xbar += rbar / r x  (gemms: x is strided)
    gemv     dy = alpha (op(dA) x + op(A) dx) + beta dy  xbar += alpha op(A)^T ybar (gemv),
                                                         Abar += alpha ybar x^T (gemm, k = 1), ybar *= beta
    gemm     dC = alpha (op(dA) op(B) + op(A) op(dB))     Abar += alpha Cbar op(B)^T, Bbar += alpha op(A)^T Cbar
                  + beta dC                              (two gemms, transposed to A's and B's storage), Cbar *= beta

alpha and beta carry no derivative (`MemoryCallRule.scalars`).
"""

from __future__ import annotations

from ..ir import core
from ..ir.builder import Builder, constant_float, constant_int
from ..ir.types import DOUBLE, FLOAT, I8, I32, I64, PTR, Type
from .calls import ArrayOperand, MemoryCallContext, MemoryCallRule, register_memory_call_rule

_REAL_KINDS = {"d": DOUBLE, "s": FLOAT}
_COMPLEX_KINDS = {"z": DOUBLE, "c": FLOAT}
"""Complex kinds, by the type of their real and imaginary parts (what the memory holds)."""


def _character(value: core.Value) -> str | None:
    return chr(value.value & 0xFF) if isinstance(value, core.ConstantInt) else None


def _transposed(value: core.Value) -> bool:
    """'t' (or 'c', the conjugate transpose, which is 't' for real kinds)."""
    return _character(value) in ("t", "T", "c", "C")


class _BlasRule(MemoryCallRule):
    """What the three routines share: the kind, the trans flags, emitting helper calls."""

    trans_positions: tuple[int, ...] = ()

    def float_type(self, call: core.Call) -> Type | None:
        kind = _character(call.operands[0])
        return _REAL_KINDS.get(kind) or _COMPLEX_KINDS.get(kind)

    def unsupported(self, call: core.Call) -> str | None:
        kind = _character(call.operands[0])
        if kind in _COMPLEX_KINDS:
            return f"'{self.names[0]}' (kind '{kind}'): complex BLAS is not supported"
        if kind not in _REAL_KINDS:
            return f"'{self.names[0]}': the BLAS kind is not a known constant"
        if any(_character(call.operands[p]) not in ("n", "N", "t", "T", "c", "C") for p in self.trans_positions):
            return f"'{self.names[0]}': the transpose flags are not known constants"
        return None


def _kind(call: core.Call) -> core.Value:
    return call.operands[0]


def _flag(transposed: bool) -> core.ConstantInt:
    return constant_int(I8, ord("t" if transposed else "n"))


def _at_least_one(builder: Builder, value: core.Value) -> core.Value:
    """max(value, 1): BLAS wants a leading dimension of at least 1, even for empty blocks."""
    small = builder.icmp("slt", value, constant_int(value.type, 1))
    return builder.select(small, constant_int(value.type, 1), value)


def _slot_holding(context: MemoryCallContext, value: core.Value) -> core.Value:
    slot = context.slot(value.type)
    context.builder.store(value, slot)
    return slot


def _dot(context: MemoryCallContext, float_type: Type, n, x, y) -> core.Value:
    """x . y by numba_xxdot."""
    builder = context.builder
    result = context.slot(float_type)
    callee = builder.declare("numba_xxdot", I32, [I8, I8, I64, PTR, PTR, PTR])
    builder.call(callee, [_kind(context.call), constant_int(I8, 0), n, x, y, result])
    return builder.load(float_type, result)


def _gemv(context: MemoryCallContext, transposed: bool, m, n, alpha, a, lda, x, beta, y) -> None:
    builder = context.builder
    callee = builder.declare("numba_xxgemv", I32, [I8, I8, I64, I64, PTR, PTR, I64, PTR, PTR, PTR])
    builder.call(callee, [_kind(context.call), _flag(transposed), m, n, alpha, a, lda, x, beta, y])


def _gemm(context: MemoryCallContext, transposed_a: bool, transposed_b: bool, m, n, k, alpha, a, lda,
          b, ldb, beta, c, ldc) -> None:
    builder = context.builder
    callee = builder.declare("numba_xxgemm", I32, [I8, I8, I8, I64, I64, I64, PTR, PTR, I64, PTR, I64, PTR,
                                                   PTR, I64])
    builder.call(callee, [_kind(context.call), _flag(transposed_a), _flag(transposed_b), m, n, k, alpha, a,
                          lda, b, ldb, beta, c, ldc])


def _axpy(context: MemoryCallContext, float_type: Type, n, alpha: core.Value, x, y) -> None:
    """y += alpha x (vectors of n): a gemv of the n x 1 matrix x with the vector [1]."""
    one = _slot_holding(context, constant_float(float_type, 1.0))
    leading = _at_least_one(context.builder, n)
    _gemv(context, False, n, constant_int(I64, 1), _slot_holding(context, alpha), x, leading, one, one, y)


def _one(context: MemoryCallContext, float_type: Type) -> core.Value:
    return _slot_holding(context, constant_float(float_type, 1.0))


def scale(context: MemoryCallContext, float_type: Type, pointer, rows, columns, leading,
          factor: core.Value) -> None:
    """block *= factor, column-major; factor 0 stores zeros (BLAS's beta = 0 ignores what C held)."""
    if isinstance(factor, core.ConstantFloat) and factor.value == 1.0:
        return
    builder = context.builder
    helper = scale_function(builder.module, float_type)
    builder.call(helper, [pointer, rows, columns, leading, factor])


# -- numba_xxdot(kind, conjugate, n, x, y, result)

class Dot(_BlasRule):
    names = ("numba_xxdot",)

    def arrays(self, call):
        n = call.operands[2]
        one = constant_int(I64, 1)
        ty = self.float_type(call)
        return [ArrayOperand(3, n, one, n, ty), ArrayOperand(4, n, one, n, ty),
                ArrayOperand(5, one, one, one, ty, reads=False, writes=True)]

    def contents_needed(self, call, active):
        return {p for p, other in ((4, 3), (3, 4)) if other in active}

    def forward(self, context):
        result = context.shadow(5)
        if result is None:
            return
        ty = self.float_type(context.call)
        n = context.value(2)
        tangent = constant_float(ty, 0.0)
        if context.shadow(3) is not None:
            tangent = _dot(context, ty, n, context.shadow(3), context.value(4))
        if context.shadow(4) is not None:
            tangent = context.builder.fadd(tangent, _dot(context, ty, n, context.value(3), context.shadow(4)))
        context.builder.store(tangent, result)

    def reverse(self, context):
        result = context.shadow(5)
        if result is None:
            return
        ty = self.float_type(context.call)
        builder = context.builder
        adjoint = builder.load(ty, result, "dot.adjoint")
        builder.store(constant_float(ty, 0.0), result)        # the call overwrote the result
        n = context.value(2)
        for position, other in ((3, 4), (4, 3)):
            if context.shadow(position) is not None:
                _axpy(context, ty, n, adjoint, context.contents(other), context.shadow(position))


# -- numba_xxgemv(kind, trans, m, n, alpha, a, lda, x, beta, y)

class Gemv(_BlasRule):
    names = ("numba_xxgemv",)
    trans_positions = (1,)

    def arrays(self, call):
        m, n, lda = call.operands[2], call.operands[3], call.operands[6]
        x_length, y_length = (m, n) if _transposed(call.operands[1]) else (n, m)
        one = constant_int(I64, 1)
        ty = self.float_type(call)
        return [ArrayOperand(5, m, n, lda, ty), ArrayOperand(7, x_length, one, x_length, ty),
                ArrayOperand(9, y_length, one, y_length, ty, writes=True)]

    def scalars(self, call):
        return [(4, self.float_type(call)), (8, self.float_type(call))]

    def contents_needed(self, call, active):
        return {p for p, other in ((7, 5), (5, 7)) if other in active}

    def forward(self, context):
        y = context.shadow(9)
        if y is None:
            return
        call, ty = context.call, self.float_type(context.call)
        transposed = _transposed(call.operands[1])
        m, n, lda = context.value(2), context.value(3), context.value(6)
        alpha, beta = context.scalar_pointer(4), context.scalar_pointer(8)
        for a, x in ((context.shadow(5), context.value(7)), (context.value(5), context.shadow(7))):
            if a is not None and x is not None:
                _gemv(context, transposed, m, n, alpha, a, lda, x, beta, y)
                beta = _one(context, ty)          # the first product applied beta
        if context.shadow(5) is None and context.shadow(7) is None:
            self._scale_y(context, y)

    def reverse(self, context):
        y = context.shadow(9)
        if y is None:
            return
        call, ty = context.call, self.float_type(context.call)
        builder = context.builder
        transposed = _transposed(call.operands[1])
        m, n, lda = context.value(2), context.value(3), context.value(6)
        alpha = context.scalar_pointer(4)
        if context.shadow(7) is not None:         # xbar += alpha op(A)^T ybar
            _gemv(context, not transposed, m, n, alpha, context.contents(5), lda, y, _one(context, ty),
                  context.shadow(7))
        if context.shadow(5) is not None:         # Abar += alpha ybar x^T (or x ybar^T): a gemm with k = 1
            column, row = (context.contents(7), y) if transposed else (y, context.contents(7))
            _gemm(context, False, False, m, n, constant_int(I64, 1), alpha, column, _at_least_one(builder, m),
                  row, constant_int(I64, 1), _one(context, ty), context.shadow(5), lda)
        self._scale_y(context, y)

    def _scale_y(self, context, y) -> None:
        """y *= beta, as the call did: BLAS returns early, leaving y alone, when m or n is 0."""
        call, ty, builder = context.call, self.float_type(context.call), context.builder
        beta = context.scalar(8)
        m, n = context.value(2), context.value(3)
        empty = builder.binary("or", builder.icmp("eq", m, constant_int(m.type, 0)),
                               builder.icmp("eq", n, constant_int(n.type, 0)))
        if not (isinstance(beta, core.ConstantFloat) and beta.value == 1.0):
            beta = builder.select(empty, constant_float(ty, 1.0), beta)
        length = n if _transposed(call.operands[1]) else m
        scale(context, ty, y, length, constant_int(I64, 1), _at_least_one(builder, length), beta)


# -- numba_xxgemm(kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

class Gemm(_BlasRule):
    names = ("numba_xxgemm",)
    trans_positions = (1, 2)

    def arrays(self, call):
        m, n, k = call.operands[3:6]
        ty = self.float_type(call)
        a_rows, a_columns = (k, m) if _transposed(call.operands[1]) else (m, k)
        b_rows, b_columns = (n, k) if _transposed(call.operands[2]) else (k, n)
        return [ArrayOperand(7, a_rows, a_columns, call.operands[8], ty),
                ArrayOperand(9, b_rows, b_columns, call.operands[10], ty),
                ArrayOperand(12, m, n, call.operands[13], ty, writes=True)]

    def scalars(self, call):
        return [(6, self.float_type(call)), (11, self.float_type(call))]

    def contents_needed(self, call, active):
        return {p for p, other in ((9, 7), (7, 9)) if other in active}

    def forward(self, context):
        c = context.shadow(12)
        if c is None:
            return
        call, ty = context.call, self.float_type(context.call)
        transposed_a, transposed_b = _transposed(call.operands[1]), _transposed(call.operands[2])
        m, n, k, lda, ldb, ldc = (context.value(p) for p in (3, 4, 5, 8, 10, 13))
        alpha, beta = context.scalar_pointer(6), context.scalar_pointer(11)
        for a, b in ((context.shadow(7), context.value(9)), (context.value(7), context.shadow(9))):
            if a is not None and b is not None:
                _gemm(context, transposed_a, transposed_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
                beta = _one(context, ty)
        if context.shadow(7) is None and context.shadow(9) is None:
            scale(context, ty, c, m, n, ldc, context.scalar(11))

    def reverse(self, context):
        c = context.shadow(12)
        if c is None:
            return
        call, ty = context.call, self.float_type(context.call)
        transposed_a, transposed_b = _transposed(call.operands[1]), _transposed(call.operands[2])
        m, n, k, lda, ldb, ldc = (context.value(p) for p in (3, 4, 5, 8, 10, 13))
        alpha = context.scalar_pointer(6)
        a_shadow, b_shadow = context.shadow(7), context.shadow(9)
        if a_shadow is not None:
            b = context.contents(9)
            if not transposed_a:                  # Abar (m x k) += alpha Cbar op(B)^T
                _gemm(context, False, not transposed_b, m, k, n, alpha, c, ldc, b, ldb, _one(context, ty),
                      a_shadow, lda)
            else:                                 # Abar (k x m) += alpha op(B) Cbar^T
                _gemm(context, transposed_b, True, k, m, n, alpha, b, ldb, c, ldc, _one(context, ty),
                      a_shadow, lda)
        if b_shadow is not None:
            a = context.contents(7)
            if not transposed_b:                  # Bbar (k x n) += alpha op(A)^T Cbar
                _gemm(context, not transposed_a, False, k, n, m, alpha, a, lda, c, ldc, _one(context, ty),
                      b_shadow, ldb)
            else:                                 # Bbar (n x k) += alpha Cbar^T op(A)
                _gemm(context, True, transposed_a, n, k, m, alpha, c, ldc, a, lda, _one(context, ty),
                      b_shadow, ldb)
        scale(context, ty, c, m, n, ldc, context.scalar(11))


# -- numba_xxnrm2(kind, n, x, incx, result)      *result = ||x||, x strided by incx

class Nrm2(_BlasRule):
    """np.linalg.norm of a vector. x is strided, which numba_xxdot cannot take: its dot
    products are gemms of 1 x n blocks with leading dimension incx. At x = 0 the
    derivative is taken as 0 (the norm has no derivative there)."""

    names = ("numba_xxnrm2",)

    def arrays(self, call):
        n, increment = call.operands[1], call.operands[3]
        one = constant_int(I64, 1)
        ty = self.float_type(call)
        return [ArrayOperand(2, one, n, increment, ty), ArrayOperand(4, one, one, one, ty, reads=False, writes=True)]

    def contents_needed(self, call, active):
        return {2} if 2 in active else set()

    def forward(self, context):
        result = context.shadow(4)
        if result is None:
            return
        ty = self.float_type(context.call)
        if context.shadow(2) is None:
            context.builder.store(constant_float(ty, 0.0), result)
            return
        x, increment = context.value(2), _at_least_one(context.builder, context.value(3))
        n = self._elements(context)
        product = _strided_dot(context, ty, n, x, context.shadow(2), increment)
        context.builder.store(self._over_norm(context, ty, product, context.builder.load(ty, context.value(4))),
                              result)

    def reverse(self, context):
        result = context.shadow(4)
        if result is None:
            return
        ty, builder = self.float_type(context.call), context.builder
        adjoint = builder.load(ty, result, "norm.adjoint")
        builder.store(constant_float(ty, 0.0), result)        # the call overwrote the result
        if context.shadow(2) is None:
            return
        x, increment = context.contents(2), _at_least_one(builder, context.value(3))
        n = self._elements(context)
        norm_slot = context.slot(ty)                          # recomputed: the result memory may be gone
        callee = builder.declare("numba_xxnrm2", I32, [I8, I64, PTR, I64, PTR])
        builder.call(callee, [_kind(context.call), n, x, increment, norm_slot])
        scale = self._over_norm(context, ty, adjoint, builder.load(ty, norm_slot))
        # xbar (1 x n, leading incx) += scale * [1] x: a gemm with m = k = 1
        _gemm(context, False, False, constant_int(I64, 1), n, constant_int(I64, 1), _slot_holding(context, scale),
              _one(context, ty), constant_int(I64, 1), x, increment, _one(context, ty), context.shadow(2), increment)

    @staticmethod
    def _elements(context) -> core.Value:
        """n, or 0 where incx < 1 (BLAS then returns 0 and reads nothing)."""
        builder, n, increment = context.builder, context.value(1), context.value(3)
        backwards = builder.icmp("slt", increment, constant_int(increment.type, 1))
        return builder.select(backwards, constant_int(n.type, 0), n)

    @staticmethod
    def _over_norm(context, ty, value, norm) -> core.Value:
        builder = context.builder
        zero = builder.fcmp("oeq", norm, constant_float(ty, 0.0))
        return builder.select(zero, constant_float(ty, 0.0), builder.fdiv(value, norm))


def _strided_dot(context: MemoryCallContext, float_type: Type, n, x, y, increment) -> core.Value:
    """x . y of vectors strided by `increment`: the 1 x 1 gemm x (1 x n) y^T."""
    result = context.slot(float_type)
    one = constant_int(I64, 1)
    _gemm(context, False, True, one, one, n, _one(context, float_type), x, increment, y, increment,
          _slot_holding(context, constant_float(float_type, 0.0)), result, one)
    return context.builder.load(float_type, result)


for _rule in (Dot(), Gemv(), Gemm(), Nrm2()):
    register_memory_call_rule(_rule)


_SCALE = """
define internal void @enzpy.blas.scale.{kind}(ptr %block, i64 %rows, i64 %columns, i64 %leading,
                                              {kind} %factor) alwaysinline {{
entry:
  %zero = fcmp oeq {kind} %factor, 0.0
  %no.rows = icmp slt i64 %rows, 1
  %no.columns = icmp slt i64 %columns, 1
  %empty = or i1 %no.rows, %no.columns
  br i1 %empty, label %done, label %column
column:
  %j = phi i64 [ 0, %entry ], [ %j.next, %column.end ]
  %offset = mul i64 %j, %leading
  %start = getelementptr inbounds {kind}, ptr %block, i64 %offset
  br label %element
element:
  %i = phi i64 [ 0, %column ], [ %i.next, %element ]
  %address = getelementptr inbounds {kind}, ptr %start, i64 %i
  %old = load {kind}, ptr %address
  %scaled = fmul {kind} %old, %factor
  %new = select i1 %zero, {kind} 0.0, {kind} %scaled
  store {kind} %new, ptr %address
  %i.next = add nuw nsw i64 %i, 1
  %column.done = icmp eq i64 %i.next, %rows
  br i1 %column.done, label %column.end, label %element
column.end:
  %j.next = add nuw nsw i64 %j, 1
  %finished = icmp eq i64 %j.next, %columns
  br i1 %finished, label %done, label %column
done:
  ret void
}}
"""


def scale_function(module: core.Module, float_type: Type) -> core.Function:
    """The (once-per-module) helper that scales a column-major block in place."""
    from ..ir.reader import parse_module

    name = f"enzpy.blas.scale.{float_type.kind}"
    if name not in module.functions:
        module.functions[name] = parse_module(_SCALE.format(kind=float_type.kind)).functions[name]
    return module.functions[name]
