"""Type analysis: what every value holds, and what memory holds at each byte offset.

LLVM types say little about memory: a `ptr` may point at doubles, integers or
more pointers, and numba reaches array data through byte offsets into structs.
AD must know which loads, stores and copies move floats. As in Enzyme, each
value gets a *type tree*: a map from a path to a concrete type, where the path
`()` is the value itself, `(k,)` the memory `k` bytes behind it, `(k, j)` the
memory `j` bytes behind the pointer stored at offset `k`, and offset `-1`
means "at every offset" (the elements of an array). An offset below -1
encodes "at every offset from `s` on" (`every_offset_from(s)`, printed
`[s..]`): the items of a reflected list behind its integer header, learned
from a variable index into the items that starts past the header.

    %data = load ptr, ptr %field     {[]:Pointer, [-1]:Float@double}

Facts flow both ways through loads, stores, GEPs (constant byte offsets, and
array strides for variable indices), casts, phis, selects, arithmetic and
memcpy until nothing changes. Seeds come from the caller (the calling
convention knows which parameters point at float arrays). Two facts that
disagree (float and integer at one place) are a conflict: `check` raises a
DifferentiationError naming the value, unless the analysis was asked to be
loose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DifferentiationError
from ..ir import core
from ..ir.types import ArrayType, IntType, PointerType, StructType, Type, VectorType, size_in_bytes, \
    struct_layout
from .memory_types import only_reference_counted
from ..rules.calls import allocation_rule, is_memory_transfer, memory_call_rule
from ..rules.lists import MEMINFO_DATA_OFFSET, reallocation_rule
from ..rules.typed_lists import APPEND, BASE_POINTER, NEW, typed_list_operation
from ..rules.registry import scalar_rule

ANY_OFFSET = -1
"""Path key: at every offset (the elements of an array, seen from inside it)."""
_MAX_DEPTH = 5          # MemInfo -> payload -> typed list -> items -> item data: a typed list of arrays
_MAX_OFFSET = 4096      # keeps pointer-increment cycles from growing offsets forever


@dataclass(frozen=True)
class Concrete:
    """What one place holds."""

    kind: str
    """`float`, `integer` or `pointer`."""
    float_type: Type | None = None
    """For floats: `double` or `float`."""

    def __str__(self) -> str:
        return f"Float@{self.float_type}" if self.kind == "float" else self.kind.capitalize()


POINTER = Concrete("pointer")
INTEGER = Concrete("integer")

Path = tuple[int, ...]
TypeTree = dict[Path, Concrete]


def float_of(ty: Type) -> Concrete:
    return Concrete("float", ty)


def every_offset_from(start: int) -> int:
    """The path key for "at every offset from `start` on".

    From 0 on is ANY_OFFSET: a pointer to an array's start, whose elements a
    variable index reaches, is described as "every offset", as Enzyme does.
    """
    return ANY_OFFSET if start <= 0 else -(start + 2)


def _range_start(key: int) -> int | None:
    """Where a "from `s` on" key starts; None for a single offset or for ANY_OFFSET."""
    return -key - 2 if key < ANY_OFFSET else None


def _covers(key: int, offset: int) -> bool:
    """Whether path key `key` describes the byte at `offset` (>= 0)."""
    start = _range_start(key)
    return key in (offset, ANY_OFFSET) or (start is not None and offset >= start)


def _key_text(key: int) -> str:
    start = _range_start(key)
    return str(key) if start is None else f"{start}.."


def tree_text(tree: TypeTree) -> str:
    """Enzyme's spelling: `{[]:Pointer, [-1]:Float@double}`, paths sorted."""
    entries = sorted(tree.items(), key=lambda item: (len(item[0]), item[0]))
    return "{" + ", ".join(f"[{','.join(map(_key_text, p))}]:{c}" for p, c in entries) + "}"


@dataclass
class Conflict:
    """Two facts that disagree about one place."""

    value: core.Value
    """The value whose tree disagrees."""
    path: Path
    """Where in the tree."""
    first: Concrete
    second: Concrete
    instruction: core.Instruction | None = None
    """The instruction whose visit found the disagreement."""


@dataclass
class TypeAnalysis:
    """Type trees of a function's values (see the module docstring)."""

    function: core.Function
    trees: dict[core.Value, TypeTree] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)

    def tree(self, value: core.Value) -> TypeTree:
        return self.trees.get(value, {})

    def memory_float_type(self, pointer: core.Value) -> Type | None:
        """The one float type the memory behind `pointer` holds, or None if it holds no floats."""
        found = {c.float_type for p, c in self.tree(pointer).items() if len(p) == 1 and c.kind == "float"}
        if len(found) > 1:
            raise DifferentiationError(f"memory behind {_describe(pointer)} holds several float types "
                                       f"({', '.join(sorted(map(str, found)))}) (function @{self.function.name})")
        return found.pop() if found else None

    def held_at(self, pointer: core.Value) -> Concrete | None:
        """What the memory `pointer` points at holds (offset 0), if the analysis knows."""
        return _behind(self.tree(pointer), 0).get(())

    def points_at_floats(self, pointer: core.Value) -> bool:
        """Whether floats are found anywhere behind `pointer` (directly, or through stored pointers)."""
        return any(path and concrete.kind == "float" for path, concrete in self.tree(pointer).items())

    def check(self) -> None:
        """Raise for the first conflict: AD would otherwise guess what the bytes are."""
        if self.conflicts:
            c = self.conflicts[0]
            place = "the value" if not c.path else f"memory at {list(c.path)} behind it"
            where = ""
            if c.instruction is not None:
                where = f", at '{c.instruction.opcode}'"
                if c.instruction.location is not None:
                    where += f", Python source {c.instruction.location}"
            raise DifferentiationError(f"type analysis: {_describe(c.value)} holds {c.first} and {c.second} "
                                       f"in {place} (function @{self.function.name}{where})")

    def annotation(self, instruction: core.Instruction) -> str:
        tree = self.tree(instruction)
        return tree_text(tree) if tree else ""


def analyze_types(function: core.Function, seeds: dict[core.Value, TypeTree]) -> TypeAnalysis:
    """Run the analysis over `function` from the caller's `seeds` (usually its parameters)."""
    analysis = TypeAnalysis(function)
    uses = core.uses_of(function)
    runner = _Propagation(analysis, {i for i in function.instructions() if isinstance(i, (core.Phi, core.Select))
                                     and i.type.is_pointer and only_reference_counted(i, uses)})
    for value, tree in seeds.items():
        runner.merge(value, tree)
    instructions = list(function.instructions())
    for value in list(function.arguments) + instructions:
        runner.merge(value, _own_type(value))
    changed = True
    while changed:
        runner.changed = False
        for instruction in instructions:
            runner.visit(instruction)
        changed = runner.changed
    return analysis


def _own_type(value: core.Value) -> TypeTree:
    """What a value's LLVM type alone says about it."""
    ty = value.type
    if ty.is_float:
        return {(): float_of(ty)}
    if isinstance(ty, PointerType):
        return {(): POINTER}
    if isinstance(ty, IntType):
        return {(): INTEGER}
    return {}


class _Propagation:
    def __init__(self, analysis: TypeAnalysis, reference_counted: set[core.Instruction] = frozenset()):
        self.analysis = analysis
        self.reference_counted = reference_counted
        """Pointer phis and selects that only reach NRT_incref / NRT_decref: they merge nothing."""
        self.changed = False
        self.visiting: core.Instruction | None = None

    def merge(self, value: core.Value, tree: TypeTree) -> None:
        if not tree or isinstance(value, (core.Constant, core.Block)) and not isinstance(value, core.GlobalVariable):
            return
        current = self.analysis.trees.setdefault(value, {})
        for path, concrete in tree.items():
            if len(path) > _MAX_DEPTH or any(k > _MAX_OFFSET or k < -_MAX_OFFSET for k in path):
                continue
            existing = current.get(path)
            if existing is None and path and path[0] != ANY_OFFSET:
                # Covered by "every offset" or "every offset from s on"?
                covering = [c for p, c in current.items() if p and p[1:] == path[1:] and p[0] != path[0]
                            and p[0] < 0 and (path[0] >= 0 and _covers(p[0], path[0])
                                              or p[0] == ANY_OFFSET
                                              or path[0] < p[0] < ANY_OFFSET)]
                if concrete in covering:
                    continue
                existing = covering[0] if covering else None
            if existing is not None and {existing.kind, concrete.kind} == {"integer", "pointer"}:
                # Pointer-sized integers (ptrtoint, NRT's fields) carry no derivative: the pointer view wins.
                if existing.kind == "integer":
                    current[path] = POINTER
                    self.changed = True
                continue
            if existing is None:
                current[path] = concrete
                if path and path[0] < 0:
                    for narrower in [p for p, c in current.items() if p and p[1:] == path[1:] and p != path
                                     and c == concrete and p[0] != ANY_OFFSET
                                     and (p[0] >= 0 and _covers(path[0], p[0]) or path[0] == ANY_OFFSET
                                          or p[0] < path[0])]:
                        del current[narrower]
                self.changed = True
            elif existing != concrete and not any(c.value is value and c.path == path
                                                  for c in self.analysis.conflicts):
                self.analysis.conflicts.append(Conflict(value, path, existing, concrete, self.visiting))

    def tree(self, value: core.Value) -> TypeTree:
        if isinstance(value, core.ConstantFloat):
            return {(): float_of(value.type)}
        return self.analysis.trees.get(value, {})

    def visit(self, instruction: core.Instruction) -> None:
        self.visiting = instruction
        operands = instruction.operands
        if isinstance(instruction, core.Load):
            pointer = operands[0]
            if instruction.type.is_aggregate:
                # An aggregate's fields are described at their byte offsets, as memory is.
                self.merge(instruction, _memory_only(self.tree(pointer)))
                self.merge(pointer, _memory_only(self.tree(instruction)))
            else:
                self.merge(instruction, _behind(self.tree(pointer), 0))
                self.merge(pointer, _placed(self.tree(instruction), 0))
        elif isinstance(instruction, core.Store):
            value, pointer = operands
            if value.type.is_aggregate:
                self.merge(pointer, _memory_only(self.tree(value)))
                self.merge(value, _memory_only(self.tree(pointer)))
            else:
                self.merge(pointer, _placed(self.tree(value), 0))
                self.merge(value, _behind(self.tree(pointer), 0))
        elif isinstance(instruction, core.ExtractValue):
            aggregate = operands[0]
            offset = aggregate_offset(aggregate.type, instruction.indices)
            self.merge(instruction, _field_behind(self.tree(aggregate), offset, instruction.type))
            self.merge(aggregate, _field_placed(self.tree(instruction), offset, instruction.type))
        elif isinstance(instruction, core.InsertValue):
            aggregate, element = operands
            offset = aggregate_offset(instruction.type, instruction.indices)
            self.merge(instruction, _field_placed(self.tree(element), offset, element.type))
            self.merge(element, _field_behind(self.tree(instruction), offset, element.type))
            inside = _field_range(offset, element.type)
            outside = {p: c for p, c in self.tree(instruction).items() if not p or p[0] not in inside}
            self.merge(aggregate, _memory_only(outside))
            self.merge(instruction, {p: c for p, c in self.tree(aggregate).items() if p and p[0] not in inside})
        elif isinstance(instruction, core.GetElementPtr):
            self._gep(instruction)
        elif isinstance(instruction, core.Cast):
            if instruction.opcode in ("bitcast", "addrspacecast") and instruction.type.is_pointer:
                self.merge(instruction, _memory_only(self.tree(operands[0])))
                self.merge(operands[0], _memory_only(self.tree(instruction)))
            elif instruction.opcode in ("fptosi", "fptoui", "fpext", "fptrunc"):
                self.merge(operands[0], {(): float_of(operands[0].type)})
            elif instruction.opcode in ("sitofp", "uitofp", "trunc", "zext", "sext"):
                self.merge(operands[0], {(): INTEGER})
        elif isinstance(instruction, (core.Phi, core.Select)) and instruction not in self.reference_counted:
            merged = operands if isinstance(instruction, core.Phi) else operands[1:]
            for operand in merged:
                self.merge(instruction, self.tree(operand))
                self.merge(operand, self.tree(instruction))
        elif isinstance(instruction, core.BinaryOperator):
            kind = {(): float_of(instruction.type)} if instruction.type.is_float else {}
            for operand in operands:
                self.merge(operand, kind)
        elif isinstance(instruction, core.Compare) and instruction.opcode == "fcmp":
            for operand in operands:
                self.merge(operand, {(): float_of(operand.type)})
        elif isinstance(instruction, core.Call):
            self._call(instruction)

    def _gep(self, gep: core.GetElementPtr) -> None:
        base = gep.operands[0]
        offset, stride = gep_byte_offset(gep)
        if offset is None:
            return
        if stride:
            # A variable index walks an array of `stride`-byte elements: offsets repeat
            # modulo the stride, and an array of scalars holds the same at every offset.
            # A small stride over memory holding several kinds (a byte offset into a list
            # of array structs: numba's memset of a grown list) says nothing: spreading
            # each kind to every offset would only make them collide.
            if stride > 8 or _uniform(self.tree(base)):
                self.merge(gep, _modulo(_shift(self.tree(base), offset), stride))
            if stride > 8 or _uniform(self.tree(gep)):
                self.merge(base, _indexed_from(self.tree(gep), offset, stride))
        else:
            self.merge(gep, _shift(self.tree(base), offset))
            self.merge(base, _shift(self.tree(gep), -offset, start_from_gep=offset > 0))

    def _call(self, call: core.Call) -> None:
        if scalar_rule(call) is not None:
            for operand in call.operands:
                if operand.type.is_float:
                    self.merge(operand, {(): float_of(operand.type)})
        elif is_memory_transfer(call):
            destination, source = call.operands[:2]
            self.merge(destination, _memory_only(self.tree(source)))
            self.merge(source, _memory_only(self.tree(destination)))
        elif allocation_rule(call) is not None:
            self.merge(call, {(): POINTER})
        elif typed_list_operation(call) is not None:
            self._typed_list(call)
        elif reallocation_rule(call) is not None:
            # The new data pointer is the one the MemInfo keeps (and numba re-loads from it).
            meminfo = call.operands[0]
            self.merge(call, _behind(self.tree(meminfo), MEMINFO_DATA_OFFSET))
            self.merge(meminfo, _placed(self.tree(call), MEMINFO_DATA_OFFSET))
        elif (rule := memory_call_rule(call)) is not None:
            # BLAS reads and writes floats of its kind through its array and scalar operands.
            floats = [(a.position, a.float_type) for a in rule.arrays(call)] + rule.scalars(call)
            for position, float_type in floats:
                if float_type is not None:
                    self.merge(call.operands[position], {(): POINTER, (ANY_OFFSET,): float_of(float_type)})


    def _typed_list(self, call: core.Call) -> None:
        """A typed list is described as a pointer whose memory at [0] is its items' address
        (what `numba_list_base_ptr` returns), so the items' types meet at [0, -1]."""
        operation, list_pointer = typed_list_operation(call), call.operands[0]
        if operation == NEW:
            self.merge(list_pointer, {(): POINTER, (0,): POINTER})
        elif operation == BASE_POINTER:
            self.merge(call, _behind(self.tree(list_pointer), 0))
            self.merge(list_pointer, _placed(self.tree(call), 0))
        elif operation == APPEND:
            # Items are copied in: an item's byte k lands at k modulo the item size in the
            # items' memory (numba indexes it with the item struct's stride), and a float
            # item at every offset.
            item = call.operands[1]
            size = size_in_bytes(item.allocated_type) if isinstance(item, core.Alloca) else 0
            if size > 8:
                self.merge(list_pointer, {(0,) + p: c for p, c in self.tree(item).items() if p and 0 <= p[0] < size})
                self.merge(item, {p[1:]: c for p, c in self.tree(list_pointer).items()
                                  if len(p) >= 2 and p[0] == 0 and 0 <= p[1] < size})
            else:
                self.merge(list_pointer, {(0, ANY_OFFSET) + p[1:]: c for p, c in self.tree(item).items()
                                          if p and p[0] == 0})
                self.merge(item, {(0,) + p[2:]: c for p, c in self.tree(list_pointer).items()
                                  if len(p) >= 2 and p[0] == 0 and p[1] == ANY_OFFSET})


def gep_byte_offset(gep: core.GetElementPtr) -> tuple[int | None, int]:
    """(constant byte offset, stride of the variable index or 0); offset None if two indices vary."""
    offset, stride = 0, 0
    ty = gep.source_type
    for position, index in enumerate(gep.operands[1:]):
        if position == 0:
            element = ty
        elif isinstance(ty, StructType):
            offset += struct_layout(ty)[index.value]
            ty = ty.elements[index.value]
            continue
        elif isinstance(ty, (ArrayType, VectorType)):
            element = ty.element
        else:
            return None, 0
        size = size_in_bytes(element)
        if isinstance(index, core.ConstantInt):
            offset += index.value * size
        elif stride:
            return None, 0
        else:
            stride = size * _index_scale(index)
        ty = element
    return offset, stride


def _index_scale(index: core.Value) -> int:
    """The constant a variable index is a multiple of (`i * 56`, `i << 3`): byte offsets into
    arrays of structs (LLVM rewrites `gep {...}, p, i` as `gep i8, p, i * 56`)."""
    if isinstance(index, core.BinaryOperator) and isinstance(index.operands[1], core.ConstantInt):
        constant = index.operands[1].value
        if index.opcode == "mul" and constant > 0:
            return constant
        if index.opcode == "shl" and 0 <= constant < 16:
            return 1 << constant
    return 1


def aggregate_offset(ty: Type, indices) -> int:
    """Byte offset of the field that `indices` (insertvalue / extractvalue) select in `ty`."""
    offset = 0
    for index in indices:
        if isinstance(ty, StructType):
            offset += struct_layout(ty)[index]
            ty = ty.elements[index]
        else:
            ty = ty.element
            offset += index * size_in_bytes(ty)
    return offset


def _shift(tree: TypeTree, by: int, start_from_gep: bool = False) -> TypeTree:
    """The tree of `pointer + by` from that of `pointer` (memory entries only; the pointer itself stays).

    `start_from_gep`: `pointer` is a GEP `-by` bytes past the pointer wanted,
    so what it holds "at every offset" starts there (a list's items past its
    header), not before.
    """
    shifted: TypeTree = {}
    for path, concrete in tree.items():
        if not path:
            shifted[path] = concrete
        elif path[0] == ANY_OFFSET:
            shifted[(every_offset_from(-by) if start_from_gep else ANY_OFFSET,) + path[1:]] = concrete
        elif (start := _range_start(path[0])) is not None:
            shifted[(every_offset_from(start - by) if start - by >= 0 else ANY_OFFSET,) + path[1:]] = concrete
        elif path[0] - by >= 0:
            shifted[(path[0] - by,) + path[1:]] = concrete
    return shifted


def _modulo(tree: TypeTree, stride: int) -> TypeTree:
    def offset(k: int) -> int:
        if k < 0 or stride <= 8:
            return ANY_OFFSET
        return k % stride
    return {(offset(p[0]),) + p[1:] if p else p: c for p, c in tree.items()}


def _uniform(tree: TypeTree) -> bool:
    """Whether the memory a tree describes holds one kind of thing at every place it knows."""
    return len({c for p, c in tree.items() if len(p) == 1}) <= 1


def _indexed_from(tree: TypeTree, offset: int, stride: int) -> TypeTree:
    """The base's tree from that of `base + offset + i * stride` (i >= 0: numba indexes from the start).

    Structs (stride > 8) repeat their fields modulo the stride. Scalars fill
    every offset from where the indexing starts: a list's items start past
    its header, and saying "every offset" would paint the header float too.
    """
    result: TypeTree = {}
    for path, concrete in tree.items():
        if not path:
            result[path] = concrete
            continue
        key = path[0]
        start = _range_start(key)
        first = offset + (start if start is not None else 0 if key == ANY_OFFSET else key)
        if stride > 8 and key >= 0:
            result[((key + offset) % stride,) + path[1:]] = concrete
        elif stride > 8 or first < 0:
            result[(ANY_OFFSET,) + path[1:]] = concrete
        else:
            result[(every_offset_from(first),) + path[1:]] = concrete
    return result


def _behind(tree: TypeTree, offset: int) -> TypeTree:
    """What a load at `offset` gets: the subtree at that offset (or at every offset)."""
    result: TypeTree = {}
    for path, concrete in tree.items():
        if path and _covers(path[0], offset):
            result.setdefault(path[1:], concrete)
    return result


def _placed(tree: TypeTree, offset: int) -> TypeTree:
    """The pointer's tree when `tree` is stored at `offset` behind it."""
    return {(offset,) + path: concrete for path, concrete in tree.items()}


def _field_range(offset: int, field_type: Type) -> range:
    """The byte offsets of an aggregate that a field of `field_type` at `offset` covers."""
    return range(offset, offset + max(1, size_in_bytes(field_type))) if field_type.is_aggregate \
        else range(offset, offset + 1)


def _field_placed(tree: TypeTree, offset: int, field_type: Type) -> TypeTree:
    """An aggregate's tree from one field's: a scalar field sits at `offset`; an aggregate
    field's own fields (at byte offsets, as memory is) move by `offset`, one level, not nested."""
    if not field_type.is_aggregate:
        return _placed(tree, offset)
    return {(offset + p[0],) + p[1:]: c for p, c in tree.items() if p and p[0] >= 0}


def _field_behind(tree: TypeTree, offset: int, field_type: Type) -> TypeTree:
    """One field's tree from its aggregate's (the inverse of `_field_placed`)."""
    if not field_type.is_aggregate:
        return _behind(tree, offset)
    inside = _field_range(offset, field_type)
    return {(p[0] - offset,) + p[1:]: c for p, c in tree.items() if p and p[0] in inside}


def _memory_only(tree: TypeTree) -> TypeTree:
    return {path: concrete for path, concrete in tree.items() if path}


def _field_types(ty: Type, base: int):
    """(byte offset, Concrete) of each scalar field of a struct, nested structs and arrays flattened."""
    if isinstance(ty, StructType):
        for element, offset in zip(ty.elements, struct_layout(ty)):
            yield from _field_types(element, base + offset)
    elif isinstance(ty, ArrayType):
        for index in range(ty.count):
            yield from _field_types(ty.element, base + index * size_in_bytes(ty.element))
    else:
        yield base, float_of(ty) if ty.is_float else POINTER if ty.is_pointer else INTEGER


def _describe(value: core.Value) -> str:
    return f"%{value.name}" if value.name else f"an unnamed {getattr(value, 'opcode', 'value')}"


def parameter_seeds(function: core.Function, duplicated: dict[int, Type], return_type: Type | None) -> dict:
    """Seeds for a numba entry point: float arrays behind duplicated data pointers (or one struct, its
    fields where they lie: a C struct passed by value), the result slot."""
    seeds: dict[core.Value, TypeTree] = {}
    for index, element in duplicated.items():
        if isinstance(element, StructType):
            seeds[function.arguments[index]] = {(): POINTER, **{(offset,): concrete for offset, concrete
                                                                 in _field_types(element, 0)}}
            continue
        seeds[function.arguments[index]] = {(): POINTER, (ANY_OFFSET,): float_of(element)}
    if return_type is not None:
        seeds[function.arguments[0]] = {(): POINTER, (0,): float_of(return_type)}
    return seeds
