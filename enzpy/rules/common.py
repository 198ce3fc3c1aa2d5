"""Small IR helpers the rule modules share (kept here until the Builder offers them)."""

from __future__ import annotations

import struct

from ..ir import core
from ..ir.builder import constant_float
from ..ir.types import Type

# LLVM's type suffix for an overloaded intrinsic, by float kind.
INTRINSIC_SUFFIX = {"half": "f16", "bfloat": "bf16", "float": "f32", "double": "f64",
                    "x86_fp80": "f80", "fp128": "f128"}


def constant(builder, like: core.Value | Type, value: float) -> core.ConstantFloat:
    """A float literal of `like`'s type, rounded to that type.

    LLVM rejects a `float` literal that is not exactly a float (ln 2, 1/3), and
    Builder.float_constant does not round, so constants like ln 2 go through here.
    """
    float_type = like if isinstance(like, Type) else like.type
    if float_type.kind == "float":
        value = struct.unpack("<f", struct.pack("<f", value))[0]
    return constant_float(float_type, value)


def call_float_integer_intrinsic(builder, base_name: str, value: core.Value, integer: core.Value) -> core.Value:
    """Call an intrinsic overloaded on a float and an integer type (`llvm.powi.f64.i32`).

    Builder.call_intrinsic mangles only the first argument's type, which names
    these two-type intrinsics wrongly.
    """
    name = f"{base_name}.{INTRINSIC_SUFFIX[value.type.kind]}.i{integer.type.width}"
    callee = builder.declare(name, value.type, [value.type, integer.type])
    return builder.call(callee, [value, integer])
