"""The enzpy IR: a small, mutable mirror of LLVM IR.

Values are compared by identity. Instructions keep their operands in a plain
list; blocks own instruction lists; functions own block lists. There are no
use-lists: `uses_of` computes them when a pass needs them, which keeps every
mutation a plain list edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from .types import LABEL, PTR, VOID, FunctionType, StructType, Type

FAST_MATH_FLAGS = frozenset({"fast", "nnan", "ninf", "nsz", "arcp", "contract", "afn", "reassoc"})
INTEGER_FLAGS = frozenset({"nsw", "nuw", "exact", "disjoint", "nneg", "samesign"})
GEP_FLAGS = frozenset({"inbounds", "nuw", "nusw"})
CONSTANT_EXPRESSION_OPCODES = frozenset({
    "getelementptr", "bitcast", "ptrtoint", "inttoptr", "addrspacecast", "trunc",
    "add", "sub", "mul", "xor"})


# ---------------------------------------------------------------- values

@dataclass(eq=False)
class Value:
    """Anything an instruction can use as an operand."""

    type: Type
    """The LLVM type of the value."""
    name: str = ""
    """Source name without sigil; empty for unnamed values (the writer numbers them)."""

    def __hash__(self) -> int:
        return id(self)


@dataclass(eq=False)
class Argument(Value):
    """A formal parameter of a function."""

    attributes: tuple[str, ...] = ()
    """Parameter attributes as LLVM spells them (`noalias`, `nocapture`, ...)."""
    __hash__ = Value.__hash__


class Constant(Value):
    """Base class of constants."""


@dataclass(eq=False)
class ConstantInt(Constant):
    """An integer constant; `value` is signed as the instruction text shows it."""

    value: int = 0
    """Integer value."""
    __hash__ = Value.__hash__

    def __init__(self, type: Type, value: int):
        super().__init__(type)
        self.value = value


@dataclass(eq=False)
class ConstantFloat(Constant):
    """A floating-point constant; `value` is exact (str only for x86_fp80 / fp128)."""

    value: float | str = 0.0
    """The number, or the raw LLVM hex literal for kinds Python floats cannot hold."""
    __hash__ = Value.__hash__

    def __init__(self, type: Type, value: float | str):
        super().__init__(type)
        self.value = value


class ConstantNull(Constant):
    """`null` of a pointer type."""

    def __init__(self, type: Type = PTR):
        super().__init__(type)


class Undef(Constant):
    """`undef` of any type."""

    def __init__(self, type: Type):
        super().__init__(type)


class Poison(Constant):
    """`poison` of any type."""

    def __init__(self, type: Type):
        super().__init__(type)


class ZeroInitializer(Constant):
    """`zeroinitializer` of an aggregate or vector type."""

    def __init__(self, type: Type):
        super().__init__(type)


@dataclass(eq=False)
class ConstantAggregate(Constant):
    """A struct, array or vector constant given element by element."""

    elements: list[Value] = field(default_factory=list)
    """One constant per element."""
    __hash__ = Value.__hash__

    def __init__(self, type: Type, elements: list):
        super().__init__(type)
        self.elements = list(elements)


@dataclass(eq=False)
class ConstantString(Constant):
    """An `[N x i8] c"..."` constant."""

    data: bytes = b""
    """The bytes, including any trailing NUL."""
    __hash__ = Value.__hash__

    def __init__(self, type: Type, data: bytes):
        super().__init__(type)
        self.data = data


@dataclass(eq=False)
class ConstantExpression(Constant):
    """A constant expression: `getelementptr (...)`, `ptrtoint (... to i64)`, ..."""

    opcode: str = ""
    """LLVM opcode of the expression."""
    operands: list[Value] = field(default_factory=list)
    """Constant operands."""
    flags: tuple[str, ...] = ()
    """GEP or integer flags."""
    source_type: Type | None = None
    """GEP source element type; None for other opcodes."""
    __hash__ = Value.__hash__

    def __init__(self, type, opcode, operands, flags=(), source_type=None):
        super().__init__(type)
        self.opcode, self.operands, self.flags, self.source_type = opcode, list(operands), tuple(flags), source_type


@dataclass(eq=False)
class GlobalVariable(Constant):
    """A module-level variable; as a value it is a pointer to its storage."""

    value_type: Type = VOID
    """The type of the stored value."""
    initializer: Constant | None = None
    """Initial contents; None for an external declaration."""
    constant: bool = False
    """True for `constant`, False for `global`."""
    linkage: str = ""
    """LLVM linkage keyword(s), e.g. `internal`, `external`, `linkonce_odr`; empty for default."""
    unnamed_addr: str = ""
    """`unnamed_addr`, `local_unnamed_addr` or empty."""
    align: int | None = None
    """Alignment in bytes, when given."""
    __hash__ = Value.__hash__


@dataclass(frozen=True)
class SourceLocation:
    """Where an instruction came from in the user's source (from debug info)."""

    line: int
    """1-based line number."""
    file: str | None = None
    """Path of the source file, when the debug info names it."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.file else f"line {self.line}"


# ---------------------------------------------------------------- instructions

@dataclass(eq=False, kw_only=True)
class Instruction(Value):
    """Base class of instructions; `operands` holds every value operand."""

    operands: list[Value] = field(default_factory=list)
    """Value operands in LLVM order (blocks are kept separately where an opcode has them)."""
    parent: Block | None = field(default=None, repr=False)
    """The block holding this instruction."""
    location: SourceLocation | None = None
    """Source file and line from `!dbg` metadata, when the producer emitted it."""
    opcode: str = ""
    """The LLVM opcode."""
    __hash__ = Value.__hash__

    @property
    def is_terminator(self) -> bool:
        return False

    def successors(self) -> list[Block]:
        return []


@dataclass(eq=False, kw_only=True)
class BinaryOperator(Instruction):
    """`add`, `fmul`, `shl`, ... : two operands of the result type."""

    flags: tuple[str, ...] = ()
    """Fast-math or nsw/nuw/exact/disjoint flags."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class UnaryOperator(Instruction):
    """`fneg`."""

    flags: tuple[str, ...] = ()
    """Fast-math flags."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Cast(Instruction):
    """`sext`, `fptrunc`, `sitofp`, `ptrtoint`, `bitcast`, ...: one operand to `type`."""

    flags: tuple[str, ...] = ()
    """nneg / nuw / nsw / fast-math flags."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Compare(Instruction):
    """`icmp` or `fcmp` with a predicate."""

    predicate: str = ""
    """LLVM predicate keyword, e.g. `slt`, `oeq`."""
    flags: tuple[str, ...] = ()
    """Fast-math flags (fcmp) or `samesign` (icmp)."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Select(Instruction):
    """`select cond, a, b`."""

    flags: tuple[str, ...] = ()
    """Fast-math flags."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Phi(Instruction):
    """`phi`: `operands[i]` flows in from `incoming_blocks[i]`."""

    incoming_blocks: list[Block] = field(default_factory=list)
    """Predecessor of each incoming value."""
    flags: tuple[str, ...] = ()
    """Fast-math flags."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Alloca(Instruction):
    """`alloca`: stack storage for `count` (operands[0]) values of `allocated_type`."""

    allocated_type: Type = VOID
    """Type of one allocated element."""
    align: int | None = None
    """Alignment in bytes."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Load(Instruction):
    """`load`: reads a `type` from operands[0]."""

    align: int | None = None
    """Alignment in bytes."""
    volatile: bool = False
    """True for `load volatile`."""
    ordering: str | None = None
    """Memory ordering of `load atomic` (`acquire`, `seq_cst`, ...); None for a plain load."""
    syncscope: str = ""
    """`syncscope("...")` name of an atomic load; empty for the whole system."""
    memory: str | None = None
    """Label of the one memory object the access stays inside, when known; accesses with
    different labels never overlap (the writer emits scoped-noalias metadata, see
    analysis/alias_scopes.py)."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Store(Instruction):
    """`store operands[0], ptr operands[1]`."""

    align: int | None = None
    """Alignment in bytes."""
    volatile: bool = False
    """True for `store volatile`."""
    ordering: str | None = None
    """Memory ordering of `store atomic`; None for a plain store."""
    syncscope: str = ""
    """`syncscope("...")` name of an atomic store; empty for the whole system."""
    memory: str | None = None
    """Label of the one memory object the access stays inside, when known; accesses with
    different labels never overlap (the writer emits scoped-noalias metadata, see
    analysis/alias_scopes.py)."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class GetElementPtr(Instruction):
    """`getelementptr source_type, base (operands[0]), indices (operands[1:])`."""

    source_type: Type = VOID
    """Type the first index steps over."""
    flags: tuple[str, ...] = ()
    """`inbounds`, `nuw`, `nusw`."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class ExtractValue(Instruction):
    """`extractvalue aggregate, indices`."""

    indices: tuple[int, ...] = ()
    """Constant field path."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class InsertValue(Instruction):
    """`insertvalue aggregate, element, indices`."""

    indices: tuple[int, ...] = ()
    """Constant field path."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class VectorOperation(Instruction):
    """Base class of the lane operations on vectors (and, built by hand, either of the first two)."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class ExtractElement(VectorOperation):
    """`extractelement vector (operands[0]), index (operands[1])`: one lane."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class InsertElement(VectorOperation):
    """`insertelement vector, element, index`: the vector with one lane replaced."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class ShuffleVector(VectorOperation):
    """`shufflevector a, b, mask`: lane k of the result is lane mask[k] of a ++ b.

    LLVM keeps the mask as a list of integers, not as an operand (llvmlite lists
    only a and b), so it is a field here too.
    """

    mask: tuple[int, ...] = ()
    """One entry per result lane: an index into the concatenated lanes of a and b, or -1 for poison."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class VAArg(Instruction):
    """`va_arg list (operands[0]), type`: the next variadic argument."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Freeze(Instruction):
    """`freeze`: stops poison from propagating."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Call(Instruction):
    """A call; operands are the arguments, the callee is separate."""

    callee: Value | None = None
    """A Function, or a pointer value for an indirect call."""
    function_type: FunctionType | None = None
    """The callee's signature as the call spells it."""
    tail: str = ""
    """`tail`, `musttail`, `notail` or empty."""
    flags: tuple[str, ...] = ()
    """Fast-math flags."""
    calling_convention: str = ""
    """`fastcc`, `coldcc`, ... or empty for the C convention."""
    attributes: tuple[str, ...] = ()
    """Function attributes on the call site."""
    argument_attributes: list[tuple[str, ...]] = field(default_factory=list)
    """ABI-relevant attributes (byval, sret, signext, ...) of each argument."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class AtomicRMW(Instruction):
    """`atomicrmw op ptr, value ordering`."""

    operation: str = ""
    """`add`, `sub`, `xchg`, ..."""
    ordering: str = "seq_cst"
    """Memory ordering."""
    volatile: bool = False
    """True for `atomicrmw volatile`."""
    syncscope: str = ""
    """`syncscope("...")` name; empty for the whole system."""
    align: int | None = None
    """Alignment in bytes."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class CmpXchg(Instruction):
    """`cmpxchg ptr, expected, new success_ordering failure_ordering`."""

    orderings: tuple[str, str] = ("seq_cst", "seq_cst")
    """Success and failure orderings."""
    syncscope: str = ""
    """`syncscope("...")` name; empty for the whole system."""
    weak: bool = False
    """True for `cmpxchg weak`."""
    volatile: bool = False
    """True for `cmpxchg volatile`."""
    align: int | None = None
    """Alignment in bytes."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Fence(Instruction):
    """`fence ordering`: orders memory operations between threads."""

    ordering: str = "seq_cst"
    """Memory ordering."""
    syncscope: str = ""
    """`syncscope("...")` name; empty for the whole system."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Terminator(Instruction):
    """Base class of block terminators."""
    __hash__ = Value.__hash__

    @property
    def is_terminator(self) -> bool:
        return True


@dataclass(eq=False, kw_only=True)
class Branch(Terminator):
    """`br label %target` or `br i1 cond (operands[0]), label %true, label %false`."""

    targets: list[Block] = field(default_factory=list)
    """One target, or [true_target, false_target] when there is a condition."""
    __hash__ = Value.__hash__

    def successors(self) -> list[Block]:
        return list(self.targets)


@dataclass(eq=False, kw_only=True)
class Switch(Terminator):
    """`switch value (operands[0]), default [case values -> blocks]`."""

    default: Block | None = None
    """Target when no case matches."""
    cases: list[tuple[ConstantInt, Block]] = field(default_factory=list)
    """(case value, target) pairs."""
    __hash__ = Value.__hash__

    def successors(self) -> list[Block]:
        return [self.default] + [target for _, target in self.cases]


@dataclass(eq=False, kw_only=True)
class Return(Terminator):
    """`ret` with zero or one operand."""
    __hash__ = Value.__hash__


@dataclass(eq=False, kw_only=True)
class Unreachable(Terminator):
    """`unreachable`."""
    __hash__ = Value.__hash__


# ---------------------------------------------------------------- containers

@dataclass(eq=False)
class Block(Value):
    """A basic block: phis first, one terminator last."""

    instructions: list[Instruction] = field(default_factory=list)
    """Instructions in order."""
    parent: Function | None = field(default=None, repr=False)
    """The function holding this block."""
    __hash__ = Value.__hash__

    def __init__(self, name: str = "", parent: Function | None = None):
        super().__init__(LABEL, name)
        self.instructions = []
        self.parent = parent

    @property
    def terminator(self) -> Instruction | None:
        last = self.instructions[-1] if self.instructions else None
        return last if last is not None and last.is_terminator else None

    def successors(self) -> list[Block]:
        terminator = self.terminator
        return terminator.successors() if terminator is not None else []

    def phis(self) -> list[Phi]:
        return [i for i in self.instructions if isinstance(i, Phi)]

    def append(self, instruction: Instruction) -> Instruction:
        instruction.parent = self
        self.instructions.append(instruction)
        return instruction

    def insert(self, index: int, instruction: Instruction) -> Instruction:
        instruction.parent = self
        self.instructions.insert(index, instruction)
        return instruction


@dataclass(eq=False)
class Function(Constant):
    """A function definition or declaration; as a value it is a `ptr` to its code."""

    function_type: FunctionType = field(default_factory=lambda: FunctionType(VOID, ()))
    """Return and parameter types."""
    arguments: list[Argument] = field(default_factory=list)
    """Formal parameters (named even for declarations)."""
    blocks: list[Block] = field(default_factory=list)
    """Body; empty for a declaration. The first block is the entry."""
    linkage: str = ""
    """Linkage keyword, e.g. `internal`, `linkonce_odr`; empty for external."""
    attributes: tuple[str, ...] = ()
    """Function attributes as LLVM spells them."""
    return_attributes: tuple[str, ...] = ()
    """Attributes of the return value (`noalias`, ...)."""
    calling_convention: str = ""
    """`fastcc`, ... or empty."""
    __hash__ = Value.__hash__

    def __init__(self, name: str, function_type: FunctionType, argument_names=None):
        super().__init__(PTR, name)
        self.function_type = function_type
        names = argument_names or [""] * len(function_type.params)
        self.arguments = [Argument(t, n) for t, n in zip(function_type.params, names)]
        self.blocks, self.linkage, self.attributes = [], "", ()
        self.return_attributes, self.calling_convention = (), ""

    @property
    def is_declaration(self) -> bool:
        return not self.blocks

    @property
    def entry(self) -> Block:
        return self.blocks[0]

    def instructions(self) -> Iterator[Instruction]:
        for block in self.blocks:
            yield from block.instructions

    def append_block(self, name: str = "") -> Block:
        block = Block(name, self)
        self.blocks.append(block)
        return block


@dataclass(eq=False)
class Module:
    """A whole LLVM module."""

    name: str = ""
    """Module identifier."""
    triple: str = ""
    """Target triple."""
    data_layout: str = ""
    """Target data layout string."""
    named_structs: dict[str, StructType] = field(default_factory=dict)
    """Identified struct types by name (without `%`)."""
    globals: dict[str, GlobalVariable] = field(default_factory=dict)
    """Global variables by name."""
    functions: dict[str, Function] = field(default_factory=dict)
    """Functions (definitions and declarations) by name."""

    def add_function(self, function: Function) -> Function:
        self.functions[function.name] = function
        return function

    def get_or_declare(self, name: str, function_type: FunctionType,
                       attributes: tuple[str, ...] = ()) -> Function:
        """The function called `name`, declared with `function_type` if absent."""
        existing = self.functions.get(name)
        if existing is not None:
            return existing
        function = Function(name, function_type)
        function.attributes = attributes
        return self.add_function(function)


def retarget(block: Block, old: Block, new: Block) -> bool:
    """Make `block`'s branch or switch go to `new` wherever it went to `old`; False for other terminators."""
    terminator = block.terminator
    if isinstance(terminator, Branch):
        terminator.targets = [new if t is old else t for t in terminator.targets]
    elif isinstance(terminator, Switch):
        terminator.default = new if terminator.default is old else terminator.default
        terminator.cases = [(value, new if t is old else t) for value, t in terminator.cases]
    else:
        return False
    return True


def uses_of(function: Function) -> dict[Value, list[Instruction]]:
    """Map each used value to the instructions using it (a fresh snapshot)."""
    uses: dict[Value, list[Instruction]] = {}
    for instruction in function.instructions():
        for operand in instruction.operands:
            uses.setdefault(operand, []).append(instruction)
        if isinstance(instruction, Call) and instruction.callee is not None:
            uses.setdefault(instruction.callee, []).append(instruction)
    return uses


def replace_all_uses(function: Function, old: Value, new: Value) -> None:
    """Make every instruction of `function` use `new` where it used `old`."""
    for instruction in function.instructions():
        instruction.operands = [new if op is old else op for op in instruction.operands]
        if isinstance(instruction, Call) and instruction.callee is old:
            instruction.callee = new

