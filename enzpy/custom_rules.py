"""Custom derivative rules: `enzpy.custom_vjp`, in the spirit of `jax.custom_vjp`.

    @enzpy.custom_vjp
    @numba.njit
    def safe_norm(x): ...

    def safe_norm_fwd(x): return value, residuals
    def safe_norm_bwd(residuals, cotangent): return (x_cotangent,)   # one entry per argument
    safe_norm.defvjp(safe_norm_fwd, safe_norm_bwd)

A kernel that calls `safe_norm` (in njit code it is the njit function) gets the user's rule in
reverse mode: the call stays a call (marked `noinline` when the module is read) and
`ad/calls.py` asks `reverse_functions` here for its augmented forward A and reverse R instead
of differentiating the callee:

- A copies the array arguments (their contents when the call ran: the caller may overwrite them
  before its reverse sweep), keeps every operand and the shadows in a frame, and calls the
  primal.
- R calls a helper numba compiles from the user's functions, `value, residuals = fwd(copies)`,
  `cotangents = bwd(residuals, cotangent)`, which adds the array cotangents into the arrays'
  shadows and returns the float ones; the cotangent is the result's adjoint (consumed), the
  floats go to the caller's adjoints. R frees the copies and the frame.

The rule's residuals are recomputed in R (one more `fwd`), so nothing numba-typed crosses the
sweeps. Functions with a float result only; forward mode differentiates the function itself.
"""

from __future__ import annotations

import functools
import itertools

import llvmlite.binding as llvm

from .errors import DifferentiationError
from .frontend.numba import argument_specs, as_dispatcher
from .ir import core
from .ir.builder import Builder, constant_float, constant_int
from .ir.types import DOUBLE, FLOAT, I1, I32, I64, PTR, VOID

_RULES: list["custom_vjp"] = []
_NUMBERS = itertools.count()


class custom_vjp:  # noqa: N801 (named as jax.custom_vjp)
    """An njit function with a user-given reverse-mode rule (see the module docstring).

    Kernels that call it (from njit code) get the rule instead of its own derivative: `defvjp`
    gives reverse mode's rule, `defjvp` forward mode's. Functions with a float result only.

    >>> import numba
    >>> import numpy as np
    >>> from enzpy import custom_vjp, differentiate
    >>> @custom_vjp
    ... @numba.njit
    ... def safe_norm(x):
    ...     return np.sqrt(np.sum(x * x))
    >>> def safe_norm_fwd(x):
    ...     n = np.sqrt(np.sum(x * x))
    ...     return n, (x, n)                     # the value and the residuals
    >>> def safe_norm_bwd(residuals, cotangent):
    ...     x, n = residuals
    ...     if n == 0.0:
    ...         return (np.zeros_like(x),)       # sqrt's own derivative is NaN at 0
    ...     return (cotangent * x / n,)
    >>> safe_norm.defvjp(safe_norm_fwd, safe_norm_bwd) is safe_norm
    True
    >>> @differentiate
    ... def scaled_norm(x, w):
    ...     return w * safe_norm(x)
    >>> scaled_norm.grad(np.array([3.0, 4.0]), 2.0)
    (array([1.2, 1.6]), 5.0)
    >>> scaled_norm.grad(np.zeros(2), 2.0)
    (array([0., 0.]), 0.0)
    """

    def __init__(self, function):
        self.dispatcher = as_dispatcher(function)
        self.fwd = self.bwd = self.jvp = None
        self._helpers: dict = {}
        functools.update_wrapper(self, self.dispatcher.py_func)
        _RULES.append(self)

    def defvjp(self, fwd, bwd) -> "custom_vjp":
        """`fwd(*args) -> (value, residuals)`, `bwd(residuals, cotangent) -> one cotangent per
        argument` (None where there is none); plain Python functions numba can compile, or njit ones.
        Returns the rule itself.

        >>> import numba
        >>> import numpy as np
        >>> from enzpy import custom_vjp, differentiate
        >>> @custom_vjp
        ... @numba.njit
        ... def quantize(a):
        ...     return np.floor(a)
        >>> def quantize_fwd(a):
        ...     return np.floor(a), a                # (value, residuals)
        >>> def quantize_bwd(residuals, cotangent):
        ...     return (cotangent,)                  # straight through: floor's derivative taken as 1
        >>> quantize.defvjp(quantize_fwd, quantize_bwd) is quantize
        True
        >>> @differentiate
        ... def quantized(a):
        ...     return 3.0 * quantize(a)
        >>> quantized.value_and_grad(2.5)
        (6.0, (3.0,))
        """
        self.fwd, self.bwd = as_dispatcher(fwd), as_dispatcher(bwd)
        return self

    def defjvp(self, jvp) -> "custom_vjp":
        """Forward mode's rule: `jvp(primals, tangents) -> (value, tangent)`, both tuples aligned with
        the arguments (a tangent is zero where the argument has none; None for integers).
        Returns the rule itself.

        >>> import numba
        >>> import numpy as np
        >>> from enzpy import Active, custom_vjp, differentiate
        >>> @custom_vjp
        ... @numba.njit
        ... def snap(a):
        ...     return np.floor(a)
        >>> def snap_jvp(primals, tangents):
        ...     (a,), (ta,) = primals, tangents
        ...     return np.floor(a), ta               # straight through: the tangent passes unchanged
        >>> snap.defjvp(snap_jvp) is snap
        True
        >>> @differentiate
        ... def snapped(a):
        ...     return 3.0 * snap(a)
        >>> snapped.autodiff(Active(2.5), mode="forward")
        3.0
        >>> snapped.jvp((2.5,), (2.0,))
        (6.0, 6.0)
        """
        self.jvp = as_dispatcher(jvp)
        return self

    def __call__(self, *args):
        return self.dispatcher(*args)

    def overload_named(self, name: str):
        """numba's compile result of the overload whose LLVM function is `name`, or None."""
        for result in self.dispatcher.overloads.values():
            if result.fndesc.mangled_name == name:
                return result
        return None


def rule_for(name: str):
    """(rule, compile result) of the custom-rule function whose LLVM function is `name`, or None."""
    for rule in _RULES:
        result = rule.overload_named(name)
        if result is not None:
            return rule, result
    return None


def keep_rule_calls(module: core.Module) -> None:
    """Custom-rule functions stay calls (the pre-AD inliner leaves `noinline` functions alone)."""
    for function in module.functions.values():
        if not function.is_declaration and rule_for(function.name) is not None \
                and "noinline" not in function.attributes:
            function.attributes = tuple(a for a in function.attributes if a != "alwaysinline") + ("noinline",)


def _register_typing() -> None:
    from numba.core import types
    from numba.extending import typeof_impl

    @typeof_impl.register(custom_vjp)
    def _typeof_custom_vjp(value, context):
        return types.Dispatcher(value.dispatcher)        # njit code calls the function itself


_register_typing()


# -- the augmented forward and reverse functions of a call

def reverse_functions(module: core.Module, call: core.Call, duplicated: tuple[int, ...], active: tuple[int, ...],
                      augmented: core.Function, reverse: core.Function) -> None:
    """Fill in `augmented` (A) and `reverse` (R) for a call of a custom-rule function (ad/calls.py's
    protocol: A(operands..., shadows..., frame.out, tape, log), R(frame, adjoint slots..., tape, log))."""
    rule, result = rule_for(call.callee.name)
    if rule.fwd is None:
        raise DifferentiationError(f"custom_vjp {rule.__name__!r} has no rule: call "
                                   f"{rule.__name__}.defvjp(fwd, bwd)")
    from numba.core import types
    if not isinstance(result.signature.return_type, types.Float):
        raise DifferentiationError(f"custom_vjp {rule.__name__!r}: rules for functions with a float result only, "
                                   f"not {result.signature.return_type}")
    specs = argument_specs(result, f"custom_vjp {rule.__name__!r}: ")
    for spec in specs:
        if spec.is_array and spec.layout not in ("C", "F"):
            raise DifferentiationError(f"custom_vjp {rule.__name__!r}: argument {spec.name!r} is a strided "
                                       "array view; rules take contiguous arrays (pass a copy)")
    shadowed_arrays = [s for s in specs if s.is_array and s.data_parameter() in duplicated]
    float_scalars = [s for s in specs if not s.is_array and s.first_parameter in active]
    helper = _reverse_helper(rule, result, shadowed_arrays, float_scalars)
    operand_count = len(call.operands)
    operand_types = list(call.callee.function_type.params)
    # Frame: one 8-byte slot per operand (copies in place of the arrays' data), then the shadows.
    shadow_slot = {position: operand_count + k for k, position in enumerate(duplicated)}
    frame_bytes = 8 * (operand_count + len(duplicated))
    _build_augmented(module, augmented, call.callee, specs, operand_types, duplicated, shadow_slot, frame_bytes)
    _build_reverse(module, reverse, helper, result, specs, operand_types, shadowed_arrays, float_scalars,
                   active, shadow_slot)


def _slot(builder: Builder, frame: core.Value, index: int) -> core.Value:
    return builder.gep(I64, frame, [constant_int(I64, index)])


def _build_augmented(module, augmented, callee, specs, operand_types, duplicated, shadow_slot, frame_bytes):
    builder = Builder(module).at_end(augmented.append_block("entry"))
    malloc = builder.declare("malloc", PTR, [I64])
    memcpy = builder.declare("llvm.memcpy.p0.p0.i64", VOID, [PTR, PTR, I64, I1])
    arguments = augmented.arguments
    frame = builder.call(malloc, [constant_int(I64, frame_bytes)], name="frame")
    data_positions = {s.data_parameter(): s for s in specs if s.is_array}
    for position in range(2, len(operand_types)):
        value = arguments[position]
        if position in data_positions:
            bytes_ = builder.mul(arguments[position - 2], arguments[position - 1])
            copy = builder.call(malloc, [bytes_], name="argument.copy")
            builder.call(memcpy, [copy, value, bytes_, constant_int(I1, 0)])
            value = copy
        builder.store(value, _slot(builder, frame, position))
    for k, position in enumerate(duplicated):
        builder.store(arguments[len(operand_types) + k], _slot(builder, frame, shadow_slot[position]))
    status = builder.call(callee, arguments[:len(operand_types)], name="status")
    builder.store(frame, arguments[len(operand_types) + len(duplicated)])
    builder.ret(status)


def _build_reverse(module, reverse, helper, result, specs, operand_types, shadowed_arrays, float_scalars,
                   active, shadow_slot):
    builder = Builder(module).at_end(reverse.append_block("entry"))
    free = builder.declare("free", VOID, [PTR])
    frame = reverse.arguments[0]
    result_type = _float_type(result.signature.return_type)
    operands = [builder.load(operand_types[p], _slot(builder, frame, p)) for p in range(2, len(operand_types))]
    for spec in specs:
        if spec.is_array:       # the copies are plain buffers: no MemInfo for the helper to count references on
            operands[spec.first_parameter - 2] = operands[spec.first_parameter - 1] = core.ConstantNull(PTR)
    result_shadow = builder.load(PTR, _slot(builder, frame, shadow_slot[0])) if 0 in shadow_slot else None
    cotangent = builder.load(result_type, result_shadow) if result_shadow is not None \
        else constant_float(result_type, 0.0)
    if result_shadow is not None:
        builder.store(constant_float(result_type, 0.0), result_shadow)     # consumed
    shadow_operands = []
    for spec in shadowed_arrays:
        exploded = operands[spec.first_parameter - 2:spec.first_parameter - 2 + spec.parameter_count]
        shadow = builder.load(PTR, _slot(builder, frame, shadow_slot[spec.data_parameter()]))
        shadow_operands += [core.ConstantNull(PTR), core.ConstantNull(PTR), *exploded[2:4], shadow, *exploded[5:]]
    outputs = builder.alloca(I64, "helper.result", count=constant_int(I32, max(1, len(float_scalars))))
    excinfo = builder.alloca(PTR, "helper.excinfo")
    helper_function = builder.declare(helper, I32, [PTR, PTR] + [o.type for o in operands] + [result_type]
                                      + [o.type for o in shadow_operands])
    status = builder.call(helper_function, [outputs, excinfo, *operands, cotangent, *shadow_operands], name="status")
    for k, spec in enumerate(float_scalars):
        ty = operand_types[spec.first_parameter]
        adjoint = reverse.arguments[1 + active.index(spec.first_parameter)]
        value = builder.load(DOUBLE, builder.gep(I64, outputs, [constant_int(I64, k)]))   # float64 each
        if ty != DOUBLE:
            value = builder.cast("fptrunc", value, ty)
        builder.store(builder.fadd(builder.load(ty, adjoint), value), adjoint)
    for spec in specs:
        if spec.is_array:
            builder.call(free, [operands[spec.data_parameter() - 2]])
    builder.call(free, [frame])
    builder.ret(status)


def _float_type(numba_type):
    return DOUBLE if str(numba_type) == "float64" else FLOAT


def _reverse_helper(rule, result, shadowed_arrays, float_scalars) -> str:
    """The name of a numba-compiled `helper(args..., cotangent, shadows...) -> float cotangents`
    (registered with LLVM by that name), compiled once per overload and activity."""
    import numba

    key = (result.fndesc.mangled_name, tuple(s.position for s in shadowed_arrays),
           tuple(s.position for s in float_scalars))
    if key in rule._helpers:
        return rule._helpers[key]
    names = [f"a{i}" for i in range(len(result.signature.args))]
    shadows = [f"s{s.position}" for s in shadowed_arrays]
    lines = [f"def helper({', '.join(names + ['cotangent'] + shadows)}):",
             f"    value, residuals = fwd({', '.join(names)})",
             "    cotangents = bwd(residuals, cotangent)"]
    lines += [f"    s{s.position} += cotangents[{s.position}]" for s in shadowed_arrays]
    returned = [f"float(cotangents[{s.position}])" for s in float_scalars] or ["0.0"]
    lines.append(f"    return ({', '.join(returned)},)")
    namespace = {"fwd": rule.fwd, "bwd": rule.bwd}
    exec("\n".join(lines), namespace)                     # noqa: S102 (generated from positions only)
    helper = numba.njit(namespace["helper"])
    argument_types = (*result.signature.args, result.signature.return_type,
                      *(result.signature.args[s.position] for s in shadowed_arrays))
    return _compiled_helper(rule, key, helper, argument_types, result)


# -- forward mode: the tangent function of a call

def has_tangent_rule(name: str) -> bool:
    found = rule_for(name)
    return found is not None and found[0].jvp is not None


def tangent_function(module: core.Module, call: core.Call, duplicated: tuple[int, ...], active: tuple[int, ...],
                     function: core.Function) -> None:
    """Fill in `function`, forward mode's T(operands..., shadows..., tangents...) of a call (width 1),
    with a call of the user's jvp rule."""
    rule, result = rule_for(call.callee.name)
    specs = argument_specs(result, f"custom_vjp {rule.__name__!r}: ")
    helper = _tangent_helper(rule, result, specs, duplicated, active)
    builder = Builder(module).at_end(function.append_block("entry"))
    count = len(call.operands)
    arguments = function.arguments
    shadow_of = {position: arguments[count + k] for k, position in enumerate(duplicated)}
    tangent_of = {position: arguments[count + len(duplicated) + k] for k, position in enumerate(active)}
    tangent_operands = []
    for spec in specs:
        if spec.is_array and spec.data_parameter() in shadow_of:
            exploded = arguments[spec.first_parameter:spec.first_parameter + spec.parameter_count]
            tangent_operands += [core.ConstantNull(PTR), core.ConstantNull(PTR), *exploded[2:4],
                                 shadow_of[spec.data_parameter()], *exploded[5:]]
        elif not spec.is_array and spec.first_parameter in tangent_of:
            tangent_operands.append(tangent_of[spec.first_parameter])
    result_type = _float_type(result.signature.return_type)
    pair = builder.alloca(result_type, "value.and.tangent", count=constant_int(I32, 2))
    excinfo = builder.alloca(PTR, "helper.excinfo")
    operands = list(arguments[2:count])
    helper_function = builder.declare(helper, I32, [PTR, PTR] + [o.type for o in operands + tangent_operands])
    status = builder.call(helper_function, [pair, excinfo, *operands, *tangent_operands], name="status")
    builder.store(builder.load(result_type, pair), arguments[0])
    if 0 in shadow_of:
        tangent = builder.load(result_type, builder.gep(result_type, pair, [constant_int(I64, 1)]))
        builder.store(tangent, shadow_of[0])
    builder.ret(status)


def _tangent_helper(rule, result, specs, duplicated, active) -> str:
    import numba

    with_tangent = [s for s in specs if (s.is_array and s.data_parameter() in duplicated)
                    or (not s.is_array and s.first_parameter in active)]
    key = ("jvp", result.fndesc.mangled_name, tuple(s.position for s in with_tangent))
    if key in rule._helpers:
        return rule._helpers[key]
    names = [f"a{i}" for i in range(len(result.signature.args))]
    tangent_names = [f"t{s.position}" for s in with_tangent]
    given = {s.position for s in with_tangent}
    tangents = []
    for spec in specs:
        if spec.position in given:
            tangents.append(f"t{spec.position}")
        elif spec.is_array and spec.is_float:
            tangents.append(f"np.zeros_like(a{spec.position})")
        elif spec.is_float:
            tangents.append("0.0")
        else:
            tangents.append("None")
    lines = [f"def helper({', '.join(names + tangent_names)}):",
             f"    value, tangent = jvp(({', '.join(names)},), ({', '.join(tangents)},))",
             "    return value, tangent"]
    import numpy as np
    namespace = {"jvp": rule.jvp, "np": np}
    exec("\n".join(lines), namespace)                     # noqa: S102 (generated from positions only)
    helper = numba.njit(namespace["helper"])
    argument_types = (*result.signature.args, *(result.signature.args[s.position] for s in with_tangent))
    return _compiled_helper(rule, key, helper, argument_types, result)


def _compiled_helper(rule, key, helper, argument_types, result) -> str:
    try:
        helper.compile(argument_types)
    except Exception as error:
        raise DifferentiationError(f"custom_vjp {rule.__name__!r}: numba cannot compile its rule for "
                                   f"{result.signature.args}: {str(error).splitlines()[0]}") from None
    compiled = helper.overloads[argument_types]
    address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    name = f"enzpy.custom_vjp.{next(_NUMBERS)}.{rule.__name__}"
    llvm.add_symbol(name, address)
    rule._helpers[key] = name
    rule._helpers[(key, "keep")] = helper             # the compiled code lives as long as the rule
    return name
