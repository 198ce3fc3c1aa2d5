"""Builder: creates instructions at an insertion point, declaring intrinsics as needed.

    b = Builder(module).at_end(block)
    y = b.fmul(x, b.call_intrinsic("llvm.cos", x))

Constants are folded only where it is free and exact (adding a literal zero,
multiplying by a literal one), so generated code stays readable.
"""

from __future__ import annotations

import numpy as np

from . import core
from .types import I1, I32, PTR, VOID, FloatType, FunctionType, IntType, Type, VectorType

# LLVM's type suffix for an overloaded intrinsic, by float kind.
INTRINSIC_SUFFIX = {"half": "f16", "bfloat": "bf16", "float": "f32", "double": "f64",
                    "x86_fp80": "f80", "fp128": "f128"}


def constant_float(ty: Type, value: float) -> core.ConstantFloat:
    """A float constant, rounded to `ty` first (LLVM rejects inexact `float` literals)."""
    if isinstance(ty, FloatType) and ty.kind == "float":
        value = float(np.float32(value))
    return core.ConstantFloat(ty, float(value))


def constant_int(ty: IntType, value: int) -> core.ConstantInt:
    return core.ConstantInt(ty, int(value))


def is_constant_value(value: core.Value, number: float) -> bool:
    return isinstance(value, (core.ConstantFloat, core.ConstantInt)) and value.value == number


class Builder:
    """Inserts new instructions into a block, before `before` or at the end."""

    def __init__(self, module: core.Module, block: core.Block | None = None,
                 before: core.Instruction | None = None):
        self.module = module
        self.block = block
        self.before = before
        self.location: core.SourceLocation | None = None
        """Given to every instruction inserted without a location of its own."""

    # -- positioning

    def at_end(self, block: core.Block) -> "Builder":
        self.block, self.before = block, None
        return self

    def before_instruction(self, instruction: core.Instruction) -> "Builder":
        self.block, self.before = instruction.parent, instruction
        return self

    def insert(self, instruction: core.Instruction) -> core.Instruction:
        if instruction.location is None:
            instruction.location = self.location
        if self.before is None:
            return self.block.append(instruction)
        return self.block.insert(self.block.instructions.index(self.before), instruction)

    # -- arithmetic

    def binary(self, opcode: str, lhs: core.Value, rhs: core.Value, name: str = "",
               flags: tuple[str, ...] = ()) -> core.Value:
        return self.insert(core.BinaryOperator(type=lhs.type, name=name, opcode=opcode,
                                               operands=[lhs, rhs], flags=flags))

    def fadd(self, lhs, rhs, name="", flags: tuple[str, ...] = ()):
        if is_constant_value(lhs, 0.0):
            return rhs
        if is_constant_value(rhs, 0.0):
            return lhs
        return self.binary("fadd", lhs, rhs, name, flags)

    def fsub(self, lhs, rhs, name=""):
        if is_constant_value(rhs, 0.0):
            return lhs
        return self.binary("fsub", lhs, rhs, name)

    def fmul(self, lhs, rhs, name=""):
        if is_constant_value(lhs, 1.0):
            return rhs
        if is_constant_value(rhs, 1.0):
            return lhs
        return self.binary("fmul", lhs, rhs, name)

    def fdiv(self, lhs, rhs, name=""):
        if is_constant_value(rhs, 1.0):
            return lhs
        return self.binary("fdiv", lhs, rhs, name)

    def fneg(self, value, name=""):
        return self.insert(core.UnaryOperator(type=value.type, name=name, opcode="fneg", operands=[value]))

    def add(self, lhs, rhs, name=""):
        return self.binary("add", lhs, rhs, name)

    def sub(self, lhs, rhs, name=""):
        return self.binary("sub", lhs, rhs, name)

    def mul(self, lhs, rhs, name=""):
        return self.binary("mul", lhs, rhs, name)

    def fcmp(self, predicate: str, lhs, rhs, name=""):
        return self.insert(core.Compare(type=_comparison_type(lhs), name=name, opcode="fcmp", predicate=predicate,
                                        operands=[lhs, rhs]))

    def icmp(self, predicate: str, lhs, rhs, name=""):
        return self.insert(core.Compare(type=_comparison_type(lhs), name=name, opcode="icmp", predicate=predicate,
                                        operands=[lhs, rhs]))

    def select(self, condition, if_true, if_false, name=""):
        return self.insert(core.Select(type=if_true.type, name=name, opcode="select",
                                       operands=[condition, if_true, if_false]))

    def cast(self, opcode: str, value, to: Type, name=""):
        if value.type == to and opcode in ("bitcast", "fpext", "fptrunc", "sext", "zext", "trunc"):
            return value
        return self.insert(core.Cast(type=to, name=name, opcode=opcode, operands=[value]))

    def float_constant(self, like: core.Value | Type, value: float) -> core.ConstantFloat:
        return constant_float(like if isinstance(like, Type) else like.type, value)

    # -- memory

    def alloca(self, ty: Type, name="", align: int | None = None, count: core.Value | None = None) -> core.Value:
        return self.insert(core.Alloca(type=PTR, name=name, opcode="alloca", allocated_type=ty,
                                       operands=[count if count is not None else constant_int(I32, 1)],
                                       align=align))

    def load(self, ty: Type, pointer, name="", align: int | None = None):
        return self.insert(core.Load(type=ty, name=name, opcode="load", operands=[pointer], align=align))

    def store(self, value, pointer, align: int | None = None):
        return self.insert(core.Store(type=VOID, opcode="store", operands=[value, pointer], align=align))

    def gep(self, source_type: Type, base, indices, name="", inbounds: bool = False):
        return self.insert(core.GetElementPtr(type=PTR, name=name, opcode="getelementptr",
                                              source_type=source_type, operands=[base, *indices],
                                              flags=("inbounds",) if inbounds else ()))

    # -- calls

    def call(self, callee: core.Function, arguments, name="") -> core.Value:
        function_type = callee.function_type
        return self.insert(core.Call(type=function_type.return_type, name=name, opcode="call",
                                     callee=callee, operands=list(arguments), function_type=function_type,
                                     argument_attributes=[() for _ in arguments]))

    def declare(self, name: str, return_type: Type, parameter_types, vararg: bool = False,
                attributes: tuple[str, ...] = ()) -> core.Function:
        return self.module.get_or_declare(name, FunctionType(return_type, tuple(parameter_types), vararg),
                                          attributes)

    def call_intrinsic(self, base_name: str, *arguments, name="") -> core.Value:
        """`llvm.cos` on a double calls `llvm.cos.f64`, declared on first use."""
        ty = arguments[0].type
        full_name = f"{base_name}.{INTRINSIC_SUFFIX[ty.kind]}"
        callee = self.declare(full_name, ty, [a.type for a in arguments])
        return self.call(callee, arguments, name)

    def call_libm(self, function_name: str, *arguments, name="") -> core.Value:
        """A C math library function on doubles (`cosh`) or floats (`coshf`)."""
        ty = arguments[0].type
        symbol = function_name + ("f" if ty == FloatType("float") else "")
        callee = self.declare(symbol, ty, [a.type for a in arguments])
        return self.call(callee, arguments, name)

    # -- control flow

    def phi(self, ty: Type, name="") -> core.Phi:
        return self.insert(core.Phi(type=ty, name=name, opcode="phi"))

    def br(self, target: core.Block):
        return self.insert(core.Branch(type=VOID, opcode="br", targets=[target]))

    def cond_br(self, condition, if_true: core.Block, if_false: core.Block):
        return self.insert(core.Branch(type=VOID, opcode="br", operands=[condition], targets=[if_true, if_false]))

    def switch(self, value, default: core.Block, cases):
        return self.insert(core.Switch(type=VOID, opcode="switch", operands=[value], default=default,
                                       cases=[(constant_int(value.type, v), b) for v, b in cases]))

    def ret(self, value=None):
        return self.insert(core.Return(type=VOID, opcode="ret", operands=[] if value is None else [value]))

    def unreachable(self):
        return self.insert(core.Unreachable(type=VOID, opcode="unreachable"))


def _comparison_type(operand) -> Type:
    """i1, or <n x i1> for vectors of n lanes."""
    return VectorType(operand.type.count, I1) if isinstance(operand.type, VectorType) else I1
