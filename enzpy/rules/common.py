"""Small IR helpers the rule modules share (kept here until the Builder offers them)."""

from __future__ import annotations

from ..ir import core
from ..ir.builder import INTRINSIC_SUFFIX, constant_float
from ..ir.types import Type


def constant(builder, like: core.Value | Type, value: float) -> core.ConstantFloat:
    """A float literal of `like`'s type (constant_float rounds it to that type)."""
    return constant_float(like if isinstance(like, Type) else like.type, value)


def call_float_integer_intrinsic(builder, base_name: str, value: core.Value, integer: core.Value) -> core.Value:
    """Call an intrinsic overloaded on a float and an integer type (`llvm.powi.f64.i32`).

    Builder.call_intrinsic mangles only the first argument's type, which names
    these two-type intrinsics wrongly.
    """
    name = f"{base_name}.{INTRINSIC_SUFFIX[value.type.kind]}.i{integer.type.width}"
    callee = builder.declare(name, value.type, [value.type, integer.type])
    return builder.call(callee, [value, integer])
