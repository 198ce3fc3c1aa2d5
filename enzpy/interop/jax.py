"""`enzpy.jax.function`: an enzpy kernel as a JAX function, with forward and reverse mode.

    f = enzpy.jax.function(kernel)          # a `differentiate`d kernel or a plain function
    f(x, a, n)                              # jax.Array in, jax.Array (or a tuple of them) out
    jax.grad(f)(x, a, n)                    # enzpy's reverse mode
    jax.jvp(f, (x, a, n), (tx, ta, None))   # enzpy's forward mode
    jax.jit(jax.vmap(jax.grad(f), in_axes=(0, None, None)))(xs, a, n)

How it fits JAX. `jax.custom_jvp` and `jax.custom_vjp` cannot both sit on one
function, so the kernel is three JAX primitives instead, each run on the host:

    enzpy_call(operands)                 -> the result's leaves     (the kernel)
    enzpy_tangent(operands, tangents)    -> the leaves' tangents    (Differentiable.jvp)
    enzpy_adjoint(operands, cotangents)  -> the operands' cotangents (value_and_grad / autodiff)

`enzpy_call`'s JVP rule is `enzpy_tangent`, which is linear in its tangents;
the transpose of `enzpy_tangent` is `enzpy_adjoint` (and back). `jax.jvp`
therefore runs enzpy's forward mode once, and `jax.grad` / `jax.vjp`, which JAX
gets by linearizing and transposing, run enzpy's reverse mode once, never
forward mode column by column (the value, where it is used, is one more plain
call of the kernel: JAX asks for it before it knows a transpose will follow).
Only the arguments JAX differentiates (nonzero
tangents: symbolic zeros and the float0 tangents of integers are dropped) get
derivatives. Second derivatives of the kernel are not available (enzpy's
derivative functions have no derivatives themselves): they raise.

The host call. Each primitive lowers to XLA's Python host callback through
`jax._src.callback.emit_python_callback`, the function `jax.pure_callback`
itself lowers to, given our own callback: it receives the operands as numpy
views of XLA's buffers. `jax.pure_callback` (jax 0.10) first `device_put`s every
operand and hands the callback jax Arrays, ~200 us per call against ~15 us
here, so it is only the fallback where that internal function is missing. An
XLA FFI handler (a C ABI entry point calling the compiled derivative without
Python) would remove the rest of the overhead; it is not done.

vmap is sequential: a batched primitive becomes `lax.map` over the batch, one
host call per element (and the map's own JVP and transpose rules then apply).
So `jax.jacfwd` is one forward call per column; enzpy's vector forward mode
(`jvp(width=k)`) as the batching rule of `enzpy_tangent` is not done.

Arguments. JAX arrays, numpy arrays and Python floats are operands (traced
under jit, differentiable, a 0-d operand reaches the kernel as a numpy scalar
of its dtype); Python ints and bools are static: the kernel sees them as given
(loop bounds, sizes), and they are part of the compiled call. The kernel gets
writeable copies of the arrays it writes into (JAX arrays are immutable, and
the host callback's views are read-only) and of arrays that share memory with
another operand; the others are writeable views of XLA's memory, not copies
(`_writeable_view` says why).

Result shapes. Under jit JAX needs the result's shapes before the kernel runs.
Scalars need nothing; for array leaves the kernel is run once, when the call
is traced, on the concrete arguments where JAX has them and on stand-ins of
the right shapes and dtypes otherwise (floats in [0.5, 1.5), integers 0). With
a traced integer scalar it runs a second time with that integer 1: if the
shapes move, they depend on a value JAX does not know yet, and the call is
refused, asking for `function(kernel, result_shape=...)` or a Python int.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from numba.core import types as numba_types
from numba.np.numpy_support import as_dtype

from .. import results
from ..annotations import Active, Const, Duplicated
from ..api import Differentiable, differentiate

try:                        # the lowering of jax.pure_callback, without its device_put of every operand
    from jax._src.callback import emit_python_callback as _emit_python_callback
except ImportError:         # a JAX that moved it: the public jax.pure_callback (slower) instead
    _emit_python_callback = None

__all__ = ["function", "Function", "use_host_callback"]

_STAND_IN_SEED = 20240518
"""Stand-in floats for result-shape inference are drawn from this fixed seed: traces are reproducible."""

_MAX_CACHED_CALLS = 256
"""How many call descriptions (argument types and static values) one Function keeps."""


# ---------------------------------------------------------------- one call's description

@dataclass(frozen=True)
class _Call:
    """What the three primitives need to run the kernel on the host: hashable, a primitive parameter
    (equal calls let jit reuse its compiled computation)."""

    kernel: Differentiable
    arity: int
    positions: tuple[int, ...]
    """The argument position of each operand."""
    static: tuple[tuple[int, type, object], ...]
    """(position, type, value) of each static argument (the type keeps 1 and True apart)."""
    copied: frozenset[int]
    """Operands (indices into `positions`) the kernel writes: they get writeable copies."""
    layout: results.ResultLayout | None
    """The structure of an array or tuple result; None for a scalar result."""
    leaves: tuple[tuple[tuple[int, ...], np.dtype], ...]
    """(shape, dtype as JAX holds it) of each leaf of the result."""
    kernel_dtypes: tuple[np.dtype, ...]
    """Each leaf's dtype as the kernel returns it (float64 where JAX, without x64, holds float32)."""

    @property
    def float_leaves(self) -> tuple[int, ...]:
        """The leaves that have derivatives."""
        return tuple(i for i, dtype in enumerate(self.kernel_dtypes) if dtype.kind == "f")

    # -- host side: numpy in, numpy out

    def arguments(self, operands) -> list:
        """The kernel's arguments from the operands (numpy arrays) and the static values."""
        args = [None] * self.arity
        for position, _, value in self.static:
            args[position] = value
        passed = []
        for index, (position, value) in enumerate(zip(self.positions, operands)):
            if value.ndim == 0:
                args[position] = value[()]          # a numpy scalar of the operand's dtype
                continue
            # Copies where the kernel writes, and where two operands share memory: XLA may pass one
            # buffer twice, and enzpy would then give both the one derivative of that memory.
            if index in self.copied or not value.flags.aligned \
                    or any(np.may_share_memory(value, other) for other in passed):
                value = np.array(value, order="K")
            elif not value.flags.writeable:
                value = _writeable_view(value)
            passed.append(value)
            args[position] = value
        return args

    def result_leaves(self, value, args=()) -> list[np.ndarray]:
        """The kernel's result as one numpy array per leaf, in JAX's dtypes, shapes checked."""
        found = [value] if self.layout is None else self.layout.leaf_values(value)
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        leaves = []
        for index, (item, (shape, dtype)) in enumerate(zip(found, self.leaves)):
            array = np.asarray(item, dtype=dtype)
            if any(np.may_share_memory(array, a) for a in arrays):
                array = array.copy()      # a view of an argument: of XLA's buffer, valid during the call only
            if array.shape != shape:
                where = "the result" if self.layout is None else self.layout.leaves[index].description
                raise ValueError(
                    f"enzpy.jax.function({self.kernel.__name__}): {where} has shape {array.shape}, but "
                    f"{shape} was expected when the call was traced. A result shape that depends on the "
                    "value of a traced argument needs function(kernel, result_shape=...), or that "
                    "argument passed as a Python int")
            leaves.append(array)
        return leaves

    def primal(self, *operands) -> list[np.ndarray]:
        args = self.arguments(operands)
        return self.result_leaves(self.kernel.dispatcher(*args), args)

    def tangent(self, *operands, differentiated: tuple[int, ...]) -> list[np.ndarray]:
        """Forward mode: the tangents of the float leaves along the tangents of `differentiated`."""
        primals, tangents = operands[:len(self.positions)], operands[len(self.positions):]
        args = self.arguments(primals)
        aligned = [None] * self.arity
        for index, tangent in zip(differentiated, tangents):
            aligned[self.positions[index]] = tangent[()] if tangent.ndim == 0 else tangent
        _, tangent = self.kernel.jvp(args, aligned)
        found = [tangent] if self.layout is None else self.layout.leaf_values(tangent)
        return [np.asarray(found[i], dtype=self.leaves[i][1]) for i in self.float_leaves]

    def adjoint(self, *operands, differentiated: tuple[int, ...]) -> list[np.ndarray]:
        """Reverse mode: the cotangents of `differentiated` from those of the float leaves."""
        primals, cotangents = operands[:len(self.positions)], operands[len(self.positions):]
        args = self.arguments(primals)
        wanted = [self.positions[i] for i in differentiated]
        if self.layout is None:
            # From its third call with the same types (and wrt) value_and_grad takes enzpy's
            # compiled trampoline (fast_calls): a few microseconds. A scalar's gradient is linear
            # in its seed.
            seed = cotangents[0][()]
            _, gradients = self.kernel.value_and_grad(*args, wrt=tuple(wanted))
            gradients = [g if seed == 1 else g * seed for g in gradients]
        else:
            gradients = self._autodiff(args, wanted, cotangents)
        return [np.asarray(g, dtype=primals[i].dtype).reshape(primals[i].shape)
                for g, i in zip(gradients, differentiated)]

    def _autodiff(self, args, wanted: list[int], cotangents) -> list:
        annotated = []
        for position, value in enumerate(args):
            if position not in wanted:
                annotated.append(Const(value))
            elif isinstance(value, np.ndarray):
                annotated.append(Duplicated(value, np.zeros_like(value)))
            else:
                annotated.append(Active(value))
        if self.layout is None:
            seed = cotangents[0][()]
        else:
            given = iter(cotangents)
            seeds = []
            for (shape, _), kernel_dtype, leaf in zip(self.leaves, self.kernel_dtypes, self.layout.leaves):
                if kernel_dtype.kind == "f":
                    seeds.append(next(given))
                else:                # no derivative: autodiff wants zeros of an array leaf's shape
                    seeds.append(None if leaf.ndim is None else np.zeros(shape, dtype=kernel_dtype))
            seed = self.layout.build(seeds)
        active = iter(self.kernel.autodiff(*annotated, seed=seed))
        return [a.shadow if isinstance(a, Duplicated) else next(active) if isinstance(a, Active) else None
                for a in annotated if not isinstance(a, Const)]


def _writeable_view(array: np.ndarray) -> np.ndarray:
    """A writeable array over the memory of a read-only one (no copy), for an argument the kernel
    does not write.

    The host callback's arrays are read-only views of XLA's buffers. Passed as they are, numba
    would compile every kernel and derivative again for read-only array types (and some numba
    functions refuse them), and enzpy's compiled value_and_grad trampoline (fast_calls) takes
    writeable arrays only; a copy costs a pass over the array. Nothing writes through this view:
    the arguments the kernel writes (`Differentiable.written_arguments`, the analysis enzpy's own
    reverse mode relies on) are copied instead, and enzpy writes only into shadows.
    """
    if array.nbytes == 0:
        return np.array(array)
    memory = (ctypes.c_byte * array.nbytes).from_address(array.ctypes.data)
    return np.ndarray(array.shape, array.dtype, buffer=memory, strides=array.strides)


# ---------------------------------------------------------------- the primitives

call_primitive = Primitive("enzpy_call")
"""The kernel: operands -> the leaves of its result. `jax.make_jaxpr(enzpy.jax.function(k))(x)` shows
it as `enzpy_call[call=...]`."""
tangent_primitive = Primitive("enzpy_tangent")
"""Forward mode: (operands, tangents of the differentiated ones) -> tangents of the float leaves.
`jax.make_jaxpr(lambda x, t: jax.jvp(f, (x,), (t,)))(x, t)` shows `enzpy_call` and `enzpy_tangent`."""
adjoint_primitive = Primitive("enzpy_adjoint")
"""Reverse mode: (operands, cotangents of the float leaves) -> cotangents of the differentiated operands.
`jax.make_jaxpr(jax.grad(f))(x)` shows `enzpy_adjoint` (the transpose of `enzpy_tangent`)."""

for _primitive in (call_primitive, tangent_primitive, adjoint_primitive):
    _primitive.multiple_results = True


def _shaped(shape, dtype, weak_type: bool = False):
    return jax.core.ShapedArray(tuple(shape), np.dtype(dtype), weak_type=weak_type)


def _call_abstract(*avals, call: _Call):
    return [_shaped(shape, dtype) for shape, dtype in call.leaves]


def _tangent_abstract(*avals, call: _Call, differentiated):
    return [_shaped(*call.leaves[i]) for i in call.float_leaves]


def _adjoint_abstract(*avals, call: _Call, differentiated):
    return [_shaped(avals[i].shape, avals[i].dtype, avals[i].weak_type) for i in differentiated]


call_primitive.def_abstract_eval(_call_abstract)
tangent_primitive.def_abstract_eval(_tangent_abstract)
adjoint_primitive.def_abstract_eval(_adjoint_abstract)


def _host(call: _Call, mode: str, differentiated):
    """The numpy function a primitive runs."""
    if mode == "primal":
        return call.primal
    method = call.tangent if mode == "tangent" else call.adjoint
    return lambda *operands: method(*operands, differentiated=differentiated)


_MODES = {call_primitive: "primal", tangent_primitive: "tangent", adjoint_primitive: "adjoint"}


def _impl(primitive):
    mode = _MODES[primitive]

    def impl(*operands, call, differentiated=None):
        # Outside jit: run the host function directly, without compiling an XLA computation.
        outputs = _host(call, mode, differentiated)(*(np.asarray(o) for o in operands))
        return [jnp.asarray(o) for o in outputs]
    return impl


def _lowering(primitive):
    """XLA's Python host callback with our callback: numpy views of XLA's buffers in, numpy out."""
    mode = _MODES[primitive]

    def lowering(context, *operands, call, differentiated=None):
        host = _host(call, mode, differentiated)
        outputs, _, _ = _emit_python_callback(
            context, lambda *arrays: tuple(host(*arrays)), None, list(operands), context.avals_in,
            context.avals_out, has_side_effect=False, returns_token=False)
        return outputs
    return lowering


def _pure_callback_lowering(primitive):
    """The same through the public jax.pure_callback (it device_puts the operands first: slower)."""
    mode = _MODES[primitive]

    def through_pure_callback(*operands, call, differentiated=None):
        host = _host(call, mode, differentiated)
        parameters = {"call": call} if differentiated is None else {"call": call, "differentiated": differentiated}
        avals, _ = primitive.abstract_eval(*(jax.typeof(o) for o in operands), **parameters)
        shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals]
        return jax.pure_callback(lambda *arrays: tuple(host(*(np.asarray(a) for a in arrays))), shapes, *operands)
    return mlir.lower_fun(through_pure_callback, multiple_results=True)


def use_host_callback(through: str = "emit_python_callback") -> None:
    """How the primitives reach the host under jit: "emit_python_callback" (the default, where this
    JAX has it) or "pure_callback" (public API, several times the per-call overhead). Calls traced before
    keep theirs.

    >>> from enzpy.interop.jax import use_host_callback
    >>> use_host_callback("pure_callback")
    >>> use_host_callback()
    """
    if through not in ("emit_python_callback", "pure_callback"):
        raise ValueError(f"through must be 'emit_python_callback' or 'pure_callback', not {through!r}")
    internal = through == "emit_python_callback" and _emit_python_callback is not None
    for primitive in _MODES:
        mlir.register_lowering(primitive, _lowering(primitive) if internal else _pure_callback_lowering(primitive))


for _primitive in _MODES:
    _primitive.def_impl(_impl(_primitive))
use_host_callback()


def _is_zero(tangent) -> bool:
    return type(tangent) is ad.Zero


def _is_float(value) -> bool:
    return jnp.issubdtype(value.dtype, jnp.floating)


def _zeros(avals) -> list:
    return [ad.Zero(aval.to_tangent_aval()) for aval in avals]


def _call_jvp(primals, tangents, *, call: _Call):
    outputs = call_primitive.bind(*primals, call=call)
    for primal, tangent in zip(primals, tangents):
        if not _is_zero(tangent) and jnp.issubdtype(primal.dtype, jnp.complexfloating):
            raise TypeError(f"enzpy.jax.function({call.kernel.__name__}): complex arguments have no derivatives "
                            "in enzpy")
    # Integers' tangents are float0 (zero by construction) and symbolic zeros carry nothing:
    # only the rest are differentiated, so enzpy does no work for them.
    differentiated = tuple(i for i, (primal, tangent) in enumerate(zip(primals, tangents))
                           if not _is_zero(tangent) and _is_float(primal))
    tangent_leaves = _zeros(_call_abstract(call=call))
    if differentiated and call.float_leaves:
        computed = tangent_primitive.bind(*primals, *(tangents[i] for i in differentiated), call=call,
                                          differentiated=differentiated)
        for leaf, tangent in zip(call.float_leaves, computed):
            tangent_leaves[leaf] = tangent
    return outputs, tangent_leaves


def _second_order_error(call: _Call) -> NotImplementedError:
    return NotImplementedError(
        f"enzpy.jax.function({call.kernel.__name__}) has first derivatives only: a derivative of a derivative "
        "(jax.hessian, jax.jvp of jax.grad, ...) would need the derivative of enzpy's derivative functions, "
        "which enzpy does not build through JAX (use enzpy's own hvp / hessian)")


def _linear_jvp(primitive):
    """JVP of a primitive that is linear in its trailing operands: linear there, refused elsewhere."""
    def rule(primals, tangents, *, call: _Call, differentiated):
        operand_count = len(call.positions)
        if any(not _is_zero(t) and _is_float(p) for p, t in zip(primals[:operand_count], tangents[:operand_count])):
            raise _second_order_error(call)
        outputs = primitive.bind(*primals, call=call, differentiated=differentiated)
        linear = tangents[operand_count:]
        if all(_is_zero(t) for t in linear):
            return outputs, _zeros(jax.typeof(o) for o in outputs)
        linear = [ad.instantiate_zeros(t) for t in linear]
        return outputs, primitive.bind(*primals[:operand_count], *linear, call=call, differentiated=differentiated)
    return rule


def _transpose_into(other):
    """Transpose rule of a primitive linear in its trailing operands: `other` with the cotangents there."""
    def rule(cotangents, *operands, call: _Call, differentiated):
        operand_count = len(call.positions)
        primals, linear = operands[:operand_count], operands[operand_count:]
        if any(ad.is_undefined_primal(p) for p in primals):
            raise _second_order_error(call)
        if all(_is_zero(c) for c in cotangents):
            return [None] * len(operands)
        transposed = other.bind(*primals, *(ad.instantiate_zeros(c) for c in cotangents), call=call,
                                differentiated=differentiated)
        return [None] * operand_count + [t if ad.is_undefined_primal(x) else None for t, x in zip(transposed, linear)]
    return rule


ad.primitive_jvps[call_primitive] = _call_jvp
ad.primitive_jvps[tangent_primitive] = _linear_jvp(tangent_primitive)
ad.primitive_jvps[adjoint_primitive] = _linear_jvp(adjoint_primitive)
ad.primitive_transposes[tangent_primitive] = _transpose_into(adjoint_primitive)
ad.primitive_transposes[adjoint_primitive] = _transpose_into(tangent_primitive)


def _sequential_batching(primitive):
    """vmap as a loop: `lax.map` over the batch, one host call per element (nested vmaps nest maps)."""
    def rule(operands, dimensions, **parameters):
        # An unbatched operand's dimension is None (batching.not_mapped, no longer exported).
        moved = [o if d is None else jnp.moveaxis(o, d, 0) for o, d in zip(operands, dimensions)]
        mapped = [i for i, d in enumerate(dimensions) if d is not None]

        def one(values):
            full = list(moved)
            for i, value in zip(mapped, values):
                full[i] = value
            return primitive.bind(*full, **parameters)

        outputs = lax.map(one, [moved[i] for i in mapped])
        return outputs, [0] * len(outputs)
    return rule


for _primitive in (call_primitive, tangent_primitive, adjoint_primitive):
    batching.primitive_batchers[_primitive] = _sequential_batching(_primitive)


# ---------------------------------------------------------------- the public function

def _is_static(value) -> bool:
    """Python ints and bools (and numpy's) are static: loop bounds and sizes, seen by the kernel as given."""
    return isinstance(value, (int, np.integer, np.bool_)) and not isinstance(value, (jax.Array, np.ndarray))


class Function:
    """A kernel as a JAX function: made by `function`; call it with the kernel's arguments.

    `kernel` is the `enzpy.api.Differentiable` it runs. The result is a jax.Array for a scalar or
    array result, a tuple (nested as the kernel's) for a tuple result.

    >>> import jax, numpy as np
    >>> import enzpy.jax
    >>> def norm2(x):
    ...     return np.sum(x * x)
    >>> f = enzpy.jax.function(norm2)
    >>> f.kernel.__name__
    'norm2'
    >>> [float(g) for g in jax.grad(f)(jax.numpy.array([1.0, 2.0]))]
    [2.0, 4.0]
    """

    def __init__(self, kernel, result_shape=None):
        self.kernel = kernel if isinstance(kernel, Differentiable) else differentiate(kernel)
        """The enzpy kernel (a `Differentiable`)."""
        self.result_shape = result_shape
        """None (inferred), or the result's `jax.ShapeDtypeStruct`s (a pytree, or a callable of the arguments)."""
        self.__name__ = self.kernel.__name__
        self.__doc__ = self.kernel.__doc__
        self._calls: OrderedDict = OrderedDict()

    def __repr__(self) -> str:
        return f"enzpy.jax.function({self.__name__})"

    def __call__(self, *args):
        """The kernel's result at `args`, as jax.Arrays (traced under jit; differentiable).

        >>> import jax.numpy as jnp, numpy as np
        >>> import enzpy.jax
        >>> pair = enzpy.jax.function(lambda x, n: (x * n, np.sum(x)))
        >>> doubled, total = pair(jnp.array([1.0, 2.0]), 2)
        >>> [float(v) for v in doubled], float(total)
        ([2.0, 4.0], 3.0)
        """
        operands, positions, static = [], [], []
        for position, value in enumerate(args):
            if _is_static(value):
                static.append((position, type(value), value))
            elif isinstance(value, (jax.Array, np.ndarray, float, np.floating, list)):
                operands.append(jnp.asarray(value))
                positions.append(position)
            else:
                raise TypeError(f"enzpy.jax.function({self.__name__}): argument {position} is a "
                                f"{type(value).__name__}; pass arrays, floats, ints or bools")
        call = self._call_for(args, operands, tuple(positions), tuple(static))
        leaves = call_primitive.bind(*operands, call=call)
        return leaves[0] if call.layout is None else call.layout.build(list(leaves))

    def _call_for(self, args, operands, positions, static) -> _Call:
        """The call description for these argument types (cached: traced once per types)."""
        key = (positions, static, tuple(
            (o.shape, o.dtype, _concrete_integer(o)) for o in operands))
        call = self._calls.get(key)
        if call is not None:
            self._calls.move_to_end(key)
            return call
        call = self._describe(args, operands, positions, static)
        self._calls[key] = call
        if len(self._calls) > _MAX_CACHED_CALLS:
            self._calls.popitem(last=False)
        return call

    def _describe(self, args, operands, positions, static) -> _Call:
        random = np.random.default_rng(_STAND_IN_SEED)
        stand_ins = [_stand_in(o, random) for o in operands]
        call = _Call(self.kernel, len(args), positions, static, frozenset(), None, (), ())
        return_type = self.kernel._result_type(call.arguments(stand_ins))
        if isinstance(return_type, numba_types.NoneType):
            raise TypeError(f"enzpy.jax.function({self.__name__}): the kernel returns nothing; a JAX function "
                            "needs a result (return the arrays it computes)")
        if results.is_structured(return_type):
            layout = results.result_layout(return_type, self.__name__)
            kernel_dtypes = tuple(leaf.dtype for leaf in layout.leaves)
            array_leaves = any(leaf.ndim is not None for leaf in layout.leaves)
        elif isinstance(return_type, (numba_types.Float, numba_types.Integer, numba_types.Boolean)):
            layout, kernel_dtypes, array_leaves = None, (np.dtype(as_dtype(return_type)),), False
        else:
            raise TypeError(f"enzpy.jax.function({self.__name__}): the kernel returns {return_type}; results are "
                            "float, int and bool scalars and arrays, and tuples of them")
        written = self._written(call.arguments(stand_ins), layout)
        call = dataclasses.replace(call, copied=frozenset(i for i, p in enumerate(positions) if p in written))
        shapes = self._result_shapes(args, operands, layout, call, stand_ins) if array_leaves \
            else [()] * len(kernel_dtypes)
        leaves = tuple((tuple(shape), jax.dtypes.canonicalize_dtype(dtype))
                       for shape, dtype in zip(shapes, kernel_dtypes))
        return dataclasses.replace(call, layout=layout, leaves=leaves, kernel_dtypes=kernel_dtypes)

    def _written(self, kernel_args, layout) -> frozenset[int]:
        """The arguments the kernel writes into (from its IR; for an array or tuple result, from the
        output form that enzpy differentiates, whose first parameters are the kernel's)."""
        if layout is None:
            return self.kernel.written_arguments(kernel_args, floats_only=False)
        form = results.output_form(self.kernel, layout, len(kernel_args))
        outputs = [np.empty((1,) if leaf.ndim is None else (0,) * leaf.ndim, dtype=leaf.dtype)
                   for leaf in layout.leaves]
        written = form.written_arguments(list(kernel_args) + outputs, floats_only=False)
        return frozenset(i for i in written if i < len(kernel_args))

    def _result_shapes(self, args, operands, layout, call: _Call, stand_ins) -> list:
        if self.result_shape is not None:
            given = self.result_shape(*args) if callable(self.result_shape) else self.result_shape
            shapes = [tuple(s.shape) for s in jax.tree_util.tree_leaves(given)]
            if len(shapes) != len(layout.leaves):
                raise ValueError(f"enzpy.jax.function({self.__name__}): result_shape has {len(shapes)} leaves, "
                                 f"the kernel's result {len(layout.leaves)}")
            return shapes
        shapes = self._run_for_shapes(layout, call.arguments(stand_ins))
        # A traced integer scalar is 0 in the stand-ins. If the shapes move when it is 1, they depend
        # on its value, which JAX does not know here (and XLA would skip a call with an empty result).
        traced = [i for i, o in enumerate(operands) if isinstance(o, jax.core.Tracer) and o.ndim == 0
                  and not jnp.issubdtype(o.dtype, jnp.floating)]
        if traced:
            moved = [np.ones_like(s) if i in traced else s for i, s in enumerate(stand_ins)]
            if self._run_for_shapes(layout, call.arguments(moved)) != shapes:
                names = ", ".join(str(self.kernel._argument_name(call.positions[i])) for i in traced)
                raise ValueError(f"enzpy.jax.function({self.__name__}): the shape of the result depends on the "
                                 f"value of the traced integer argument(s) {names}; pass them as Python ints "
                                 "(static_argnums under jax.jit), or give function(kernel, result_shape=...)")
        return shapes

    def _run_for_shapes(self, layout, kernel_args) -> list:
        try:
            value = self.kernel.dispatcher(*kernel_args)
        except Exception as error:
            raise ValueError(f"enzpy.jax.function({self.__name__}): running the kernel on stand-in arguments, to "
                             f"learn its result's shapes, raised {type(error).__name__}: {error}. Pass "
                             "function(kernel, result_shape=...)") from error
        return [() if shape is None else tuple(shape) for shape in results.leaf_shapes(layout, value)]


def _concrete_integer(operand):
    """The value of a concrete integer scalar (it may set a result's shape), else None."""
    if operand.ndim == 0 and not isinstance(operand, jax.core.Tracer) \
            and jnp.issubdtype(operand.dtype, jnp.integer):
        return int(operand)
    return None


def _stand_in(operand, random) -> np.ndarray:
    """A numpy array like `operand` for running the kernel at trace time: its value where JAX has one."""
    if not isinstance(operand, jax.core.Tracer):
        return np.array(operand)
    dtype = np.dtype(operand.dtype)
    if dtype.kind == "f":
        # Positive and away from zero: sqrt, log and division stay finite, matrices regular.
        return random.uniform(0.5, 1.5, operand.shape).astype(dtype)
    return np.zeros(operand.shape, dtype=dtype)    # integers may index arrays: 0 is in bounds


def function(kernel=None, result_shape=None) -> Function:
    """`kernel` as a JAX function: jax.jvp runs enzpy's forward mode, jax.grad / jax.vjp its reverse mode.

    `kernel` is a `differentiate`d kernel or a plain Python function (differentiated here). The
    function works under `jax.jit`, `jax.vmap` (sequentially, one kernel call per element),
    `jax.grad`, `jax.vjp`, `jax.jvp`, `jax.linearize` and their compositions, to first order.
    JAX arrays, numpy arrays and Python floats are traced arguments; Python ints and bools are
    static (integer arrays are traced and get no derivative). A kernel returning an array or a
    tuple returns the same structure of jax.Arrays; `result_shape` (jax.ShapeDtypeStruct
    leaves, or a callable of the arguments giving them) is needed only where a result's shape
    depends on the value of a traced argument.

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> import enzpy.jax
    >>> def energy(x, a, n):
    ...     s = 0.0
    ...     for i in range(n):
    ...         s += a * x[i] * x[i]
    ...     return s
    >>> f = enzpy.jax.function(energy)
    >>> x = jnp.array([1.0, 2.0])
    >>> float(f(x, 0.5, 2))
    2.5
    >>> [float(g) for g in jax.jit(jax.grad(f), static_argnums=2)(x, 0.5, 2)]
    [1.0, 2.0]
    >>> value, tangent = jax.jvp(lambda x: f(x, 0.5, 2), (x,), (jnp.array([1.0, 0.0]),))
    >>> float(tangent)
    1.0
    >>> scaled = enzpy.jax.function(lambda a, x, y: a * x + np.sin(y))
    >>> jax.vmap(scaled, in_axes=(None, 0, None))(2.0, jnp.ones((3, 2)), jnp.zeros(2)).shape
    (3, 2)

    `@enzpy.jax.function` and `@enzpy.jax.function(result_shape=...)` decorate a kernel.
    """
    if kernel is None:
        return lambda kernel: Function(kernel, result_shape)
    return Function(kernel, result_shape)
