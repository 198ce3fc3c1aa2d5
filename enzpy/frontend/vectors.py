"""Scalarize vector code: clang -O2/-O3 vectorizes loops before enzpy sees them.

The AD drivers differentiate scalar instructions; a vectorized loop
(`load <2 x double>`, `fmul <2 x double>`, `shufflevector` splats,
`llvm.fmuladd.v2f64`, `llvm.vector.reduce.fadd`) is rewritten here into one
scalar instruction per lane, which computes the same values in the same
order (a reduction is expanded left to right, which is the order LLVM
defines for it). The vector loop and its scalar remainder then both get
derivatives as ordinary scalar code.

What has no per-lane meaning raises UnsupportedIRError naming the function
and the instruction: gathers and scatters (vector GEPs, masked memory
intrinsics), lane indices only known at run time, and bitcasts that change
the lane count.
"""

from __future__ import annotations

import math

from ..errors import UnsupportedIRError
from ..ir import core
from ..ir.builder import INTRINSIC_SUFFIX, Builder, constant_int
from ..ir.types import I64, FloatType, VectorType

# llvm.vector.reduce.<kind> -> how two lanes combine: an opcode, or an intrinsic base name.
_REDUCTIONS = {"fadd": "fadd", "fmul": "fmul", "add": "add", "mul": "mul", "and": "and", "or": "or",
               "xor": "xor", "smax": "llvm.smax", "smin": "llvm.smin", "umax": "llvm.umax",
               "umin": "llvm.umin", "fmax": "llvm.maxnum", "fmin": "llvm.minnum",
               "fmaximum": "llvm.maximum", "fminimum": "llvm.minimum"}


def scalarize_vectors(module: core.Module, function: core.Function) -> None:
    """Rewrite every vector instruction of `function` into per-lane scalar instructions."""
    if not any(_touches_vectors(i) for i in function.instructions()):
        return
    _Scalarizer(module, function).run()


def scalarize_where_possible(module: core.Module) -> list[str]:
    """Scalarize each defined function of `module` that has vector code and can be scalarized.

    numba's optimized IR (a callee compiled before enzpy was imported) is
    vectorized; scalar code differentiates. A function with a vector construct
    that has no per-lane meaning (a gather, a lane-count-changing bitcast)
    stays as it was, rewritten on a copy first: the derivative may never reach
    it (string formatting on an error path), and where it does, the AD names
    the vector instruction. Returns the names of the functions left vectorized.
    """
    from ..ir.clone import clone_body

    kept = []
    for function in list(module.functions.values()):
        if function.is_declaration or not any(_touches_vectors(i) for i in function.instructions()):
            continue
        trial = core.Function(function.name, function.function_type, [a.name for a in function.arguments])
        clone_body(function, trial, dict(zip(function.arguments, trial.arguments)))
        try:
            _Scalarizer(module, trial).run()
        except UnsupportedIRError:
            kept.append(function.name)
            continue
        function.blocks = trial.blocks
        for block in function.blocks:
            block.parent = function
        for old, new in zip(trial.arguments, function.arguments):
            core.replace_all_uses(function, old, new)
    return kept


def _is_vector(value: core.Value) -> bool:
    return isinstance(value.type, VectorType)


def _touches_vectors(instruction: core.Instruction) -> bool:
    return _is_vector(instruction) or any(_is_vector(o) for o in instruction.operands)


def _scalar_suffix(ty) -> str:
    return INTRINSIC_SUFFIX[ty.kind] if isinstance(ty, FloatType) else f"i{ty.width}"


class _Scalarizer:
    def __init__(self, module: core.Module, function: core.Function):
        self.module, self.function = module, function
        self.lanes: dict[core.Value, list[core.Value]] = {}
        self.replaced: dict[core.Value, core.Value] = {}

    def error(self, instruction: core.Instruction, what: str) -> UnsupportedIRError:
        block = instruction.parent.name if instruction.parent else "?"
        line = f", source {instruction.location}" if instruction.location else ""
        return UnsupportedIRError(f"{what} (function @{self.function.name}, block {block!r}, "
                                  f"instruction '{instruction.opcode}' of type {instruction.type}{line})")

    def run(self) -> None:
        from ..ad.reverse import reverse_post_order

        # Definitions before uses (phis aside), so every operand's lanes exist when needed.
        vector_instructions = [i for b in reverse_post_order(self.function.entry) for i in b.instructions
                               if _touches_vectors(i)]
        phis = [i for i in vector_instructions if isinstance(i, core.Phi)]
        for phi in phis:                    # incoming values may be defined later: lanes first
            builder = Builder(self.module).before_instruction(phi)
            self.lanes[phi] = [builder.phi(phi.type.element, f"{phi.name}.lane{k}" if phi.name else "")
                               for k in range(phi.type.count)]
        for instruction in vector_instructions:
            if not isinstance(instruction, core.Phi):
                self.scalarize(instruction)
        for phi in phis:
            for lane, scalar in enumerate(self.lanes[phi]):
                scalar.operands = [self.lane(v, lane, phi) for v in phi.operands]
                scalar.incoming_blocks = list(phi.incoming_blocks)
        for instruction in vector_instructions:
            instruction.parent.instructions.remove(instruction)
        for old in self.replaced:
            new = old
            while new in self.replaced:        # an extracted lane may itself be an extracted lane
                new = self.replaced[new]
            core.replace_all_uses(self.function, old, new)

    def lane(self, value: core.Value, index: int, user: core.Instruction) -> core.Value:
        """Lane `index` of a vector value (an instruction already scalarized, or a constant)."""
        if value in self.lanes:
            return self.lanes[value][index]
        element = value.type.element
        if isinstance(value, core.ConstantAggregate):
            return value.elements[index]
        if isinstance(value, core.ZeroInitializer):
            return core.ConstantFloat(element, 0.0) if isinstance(element, FloatType) else \
                core.ConstantNull(element) if element.is_pointer else constant_int(element, 0)
        if isinstance(value, core.Undef):
            return core.Undef(element)
        if isinstance(value, core.Poison):
            return core.Poison(element)
        raise self.error(user, f"cannot split the vector value {value.name or type(value).__name__} into lanes")

    def all_lanes(self, value, count, user):
        if not _is_vector(value):
            return [value] * count          # a scalar operand (select condition, powi exponent) serves every lane
        return [self.lane(value, k, user) for k in range(value.type.count)]

    def scalarize(self, instruction: core.Instruction) -> None:
        builder = Builder(self.module).before_instruction(instruction)
        builder.location = instruction.location
        kind = type(instruction)
        count = instruction.type.count if _is_vector(instruction) else None
        if isinstance(instruction, core.Load):
            self.lanes[instruction] = self.load_lanes(builder, instruction)
        elif isinstance(instruction, core.Store):
            self.store_lanes(builder, instruction)
        elif isinstance(instruction, core.VectorOperation):
            self.vector_operation(instruction)
        elif isinstance(instruction, core.Call):
            self.call(builder, instruction)
        elif kind in (core.BinaryOperator, core.UnaryOperator, core.Compare, core.Select, core.Cast,
                      core.Freeze) and count is not None:
            if isinstance(instruction, core.Cast) and (not _is_vector(instruction.operands[0])
                                                       or instruction.operands[0].type.count != count):
                raise self.error(instruction, "a cast that changes the number of vector lanes is not supported")
            operand_lanes = [self.all_lanes(o, count, instruction) for o in instruction.operands]
            self.lanes[instruction] = [
                builder.insert(self.copy(instruction, [lanes[k] for lanes in operand_lanes], k))
                for k in range(count)]
        elif isinstance(instruction, core.GetElementPtr):
            raise self.error(instruction, "a vector of addresses (gather/scatter) is not supported; "
                             "compile with -fno-vectorize")
        else:
            raise self.error(instruction, "this vector instruction is not supported; compile with "
                             "-fno-vectorize -fno-slp-vectorize")

    def copy(self, instruction, operands, lane):
        """`instruction` on one lane: same opcode, flags and predicate, scalar type."""
        copied = type(instruction)(type=instruction.type.element, opcode=instruction.opcode,
                                   name=f"{instruction.name}.lane{lane}" if instruction.name else "",
                                   operands=list(operands))
        for field in ("flags", "predicate"):
            if hasattr(instruction, field):
                setattr(copied, field, getattr(instruction, field))
        return copied

    def element_address(self, builder, pointer, element, lane):
        if lane == 0:
            return pointer
        return builder.gep(element, pointer, [constant_int(I64, lane)], inbounds=True)

    @staticmethod
    def lane_alignment(align, element, lane):
        size = max(1, (getattr(element, "width", 64) + 7) // 8)
        return math.gcd(align, size * lane) if align and lane else (align or None)

    def load_lanes(self, builder, load):
        vector = load.type
        return [builder.load(vector.element, self.element_address(builder, load.operands[0], vector.element, k),
                             f"{load.name}.lane{k}" if load.name else "",
                             self.lane_alignment(load.align, vector.element, k))
                for k in range(vector.count)]

    def store_lanes(self, builder, store):
        value, pointer = store.operands
        vector = value.type
        for k in range(vector.count):
            builder.store(self.lane(value, k, store), self.element_address(builder, pointer, vector.element, k),
                          self.lane_alignment(store.align, vector.element, k))

    def vector_operation(self, instruction):
        if instruction.opcode == "extractelement":
            vector, index = instruction.operands
            self.replaced[instruction] = self.lane(vector, self.constant_index(index, instruction), instruction)
        elif instruction.opcode == "insertelement":
            vector, element, index = instruction.operands
            lanes = self.all_lanes(vector, instruction.type.count, instruction)
            lanes[self.constant_index(index, instruction)] = element
            self.lanes[instruction] = lanes
        elif isinstance(instruction, core.ShuffleVector):
            first, second = instruction.operands
            width = first.type.count
            element = instruction.type.element
            self.lanes[instruction] = [
                core.Poison(element) if k < 0 else
                self.lane(first, k, instruction) if k < width else self.lane(second, k - width, instruction)
                for k in instruction.mask]
        else:
            raise self.error(instruction, f"'{instruction.opcode}' is not supported")

    def constant_index(self, index, instruction) -> int:
        if not isinstance(index, core.ConstantInt):
            raise self.error(instruction, "a vector lane chosen at run time is not supported")
        return index.value

    def call(self, builder, call):
        name = getattr(call.callee, "name", "")
        if not name.startswith("llvm.") or name.startswith(("llvm.masked.", "llvm.vp.")):
            raise self.error(call, f"call to '{name or 'an indirect function'}' on vectors is not supported; "
                             "compile with -fno-vectorize -fno-slp-vectorize")
        if name.startswith("llvm.vector.reduce."):
            self.replaced[call] = self.reduction(builder, call, name.split(".")[3])
            return
        count = call.type.count if _is_vector(call) else call.operands[0].type.count
        base = ".".join(name.split(".")[:-1])                     # llvm.fmuladd.v2f64 -> llvm.fmuladd
        operand_lanes = [self.all_lanes(o, count, call) for o in call.operands]
        element = call.type.element if _is_vector(call) else call.type
        scalar_types = [lanes[0].type for lanes in operand_lanes]
        callee = builder.declare(f"{base}.{_scalar_suffix(scalar_types[0])}", element, scalar_types)
        results = [builder.call(callee, [lanes[k] for lanes in operand_lanes]) for k in range(count)]
        for result in results:
            result.flags = call.flags
        if _is_vector(call):
            self.lanes[call] = results

    def reduction(self, builder, call, kind):
        combine = _REDUCTIONS.get(kind)
        if combine is None:
            raise self.error(call, f"reduction llvm.vector.reduce.{kind} is not supported")
        *start, vector = call.operands                         # fadd/fmul take a start value first
        values = self.all_lanes(vector, vector.type.count, call)
        total = start[0] if start else values.pop(0)
        for value in values:
            if combine.startswith("llvm."):
                callee = builder.declare(f"{combine}.{_scalar_suffix(value.type)}", value.type,
                                         [value.type, value.type])
                total = builder.call(callee, [total, value])
            else:
                total = builder.insert(core.BinaryOperator(type=value.type, opcode=combine,
                                                           operands=[total, value], flags=call.flags))
        return total

