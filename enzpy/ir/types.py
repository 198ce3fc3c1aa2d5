"""LLVM types as small frozen dataclasses; `str(t)` is the LLVM spelling.

Pointers are opaque (`ptr`), as in every LLVM since 17: the pointee type lives
on the instruction that uses the pointer (load, store, GEP, alloca).
"""

from __future__ import annotations

from dataclasses import dataclass


class Type:
    """Base class of all enzpy IR types."""

    @property
    def is_float(self) -> bool:
        return isinstance(self, FloatType)

    @property
    def is_integer(self) -> bool:
        return isinstance(self, IntType)

    @property
    def is_pointer(self) -> bool:
        return isinstance(self, PointerType)

    @property
    def is_aggregate(self) -> bool:
        return isinstance(self, (StructType, ArrayType))


@dataclass(frozen=True)
class VoidType(Type):
    """The type of instructions and functions that produce nothing."""

    def __str__(self) -> str:
        return "void"


@dataclass(frozen=True)
class IntType(Type):
    """An integer of `width` bits; signedness lives on the operations."""

    width: int
    """Bit width, 1 for booleans."""

    def __str__(self) -> str:
        return f"i{self.width}"


# LLVM spelling -> bit width, for the floating-point kinds enzpy carries.
FLOAT_WIDTHS = {"half": 16, "bfloat": 16, "float": 32, "double": 64,
                "x86_fp80": 80, "fp128": 128, "ppc_fp128": 128}


@dataclass(frozen=True)
class FloatType(Type):
    """An IEEE (or x86/PPC extended) floating-point type."""

    kind: str
    """LLVM spelling: half, bfloat, float, double, x86_fp80, fp128, ppc_fp128."""

    @property
    def width(self) -> int:
        return FLOAT_WIDTHS[self.kind]

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class PointerType(Type):
    """An opaque pointer."""

    address_space: int = 0
    """LLVM address space; 0 is ordinary memory."""

    def __str__(self) -> str:
        return "ptr" if self.address_space == 0 else f"ptr addrspace({self.address_space})"


@dataclass(frozen=True)
class ArrayType(Type):
    """A fixed-length array `[count x element]`."""

    count: int
    """Number of elements."""
    element: Type
    """Element type."""

    def __str__(self) -> str:
        return f"[{self.count} x {self.element}]"


@dataclass(frozen=True)
class VectorType(Type):
    """A SIMD vector `<count x element>`."""

    count: int
    """Number of lanes."""
    element: Type
    """Lane type."""

    def __str__(self) -> str:
        return f"<{self.count} x {self.element}>"


@dataclass(frozen=True)
class StructType(Type):
    """A literal struct `{a, b}` (or packed `<{a, b}>`), or a named one `%name`."""

    elements: tuple[Type, ...]
    """Field types, in order."""
    packed: bool = False
    """True for `<{...}>`: no padding between fields."""
    name: str | None = None
    """Identified struct name (without `%`); None for a literal struct."""

    def __str__(self) -> str:
        if self.name is not None:
            return "%" + quote_name(self.name)
        return self.body()

    def body(self) -> str:
        """The literal spelling, also used in `%name = type <body>`."""
        inner = ", ".join(str(e) for e in self.elements)
        text = "{ " + inner + " }" if inner else "{}"
        return "<" + text + ">" if self.packed else text


@dataclass(frozen=True)
class FunctionType(Type):
    """A function signature; values of function type are always behind a `ptr`."""

    return_type: Type
    """What the function returns (VoidType for nothing)."""
    params: tuple[Type, ...]
    """Parameter types."""
    vararg: bool = False
    """True when the function takes `...`."""

    def __str__(self) -> str:
        params = [str(p) for p in self.params] + (["..."] if self.vararg else [])
        return f"{self.return_type} ({', '.join(params)})"


@dataclass(frozen=True)
class LabelType(Type):
    """The type of basic blocks used as values."""

    def __str__(self) -> str:
        return "label"


@dataclass(frozen=True)
class MetadataType(Type):
    """The type of metadata operands; enzpy never carries metadata values."""

    def __str__(self) -> str:
        return "metadata"


VOID = VoidType()
I1 = IntType(1)
I8 = IntType(8)
I32 = IntType(32)
I64 = IntType(64)
FLOAT = FloatType("float")
DOUBLE = FloatType("double")
PTR = PointerType()
LABEL = LabelType()


_PLAIN_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-$._")


def quote_name(name: str) -> str:
    """A value/global/type name as LLVM text accepts it (quoted when needed)."""
    if name and all(c in _PLAIN_NAME_CHARS for c in name) and not name[0].isdigit():
        return name
    escaped = "".join(c if (c.isprintable() and c not in '"\\') else "\\%02X" % ord(c)
                      for c in name)
    return f'"{escaped}"'


def size_in_bytes(ty: Type) -> int:
    """ABI size of `ty` on x86-64 (the only data layout numba and clang give us here)."""
    if isinstance(ty, IntType):
        return max(1, (ty.width + 7) // 8) if ty.width <= 8 else _round_up((ty.width + 7) // 8, alignment_of(ty))
    if isinstance(ty, FloatType):
        return {16: 2, 32: 4, 64: 8, 80: 16, 128: 16}[ty.width]
    if isinstance(ty, PointerType):
        return 8
    if isinstance(ty, ArrayType):
        return ty.count * size_in_bytes(ty.element)
    if isinstance(ty, VectorType):
        return _round_up(ty.count * size_in_bytes(ty.element), alignment_of(ty))
    if isinstance(ty, StructType):
        return struct_layout(ty)[-1]
    raise TypeError(f"type {ty} has no size")


def alignment_of(ty: Type) -> int:
    """ABI alignment of `ty` on x86-64."""
    if isinstance(ty, IntType):
        return 1 if ty.width <= 8 else min(16, 1 << ((ty.width + 7) // 8 - 1).bit_length())
    if isinstance(ty, (FloatType, PointerType)):
        return min(16, size_in_bytes(ty))
    if isinstance(ty, ArrayType):
        return alignment_of(ty.element)
    if isinstance(ty, VectorType):
        return min(64, 1 << (ty.count * size_in_bytes(ty.element) - 1).bit_length())
    if isinstance(ty, StructType):
        return 1 if ty.packed else max((alignment_of(e) for e in ty.elements), default=1)
    raise TypeError(f"type {ty} has no alignment")


def struct_layout(ty: StructType) -> list[int]:
    """Byte offset of each field of `ty`, followed by the total size."""
    offsets, offset = [], 0
    for element in ty.elements:
        if not ty.packed:
            offset = _round_up(offset, alignment_of(element))
        offsets.append(offset)
        offset += size_in_bytes(element)
    total = offset if ty.packed else _round_up(offset, alignment_of(ty))
    return offsets + [total]


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def float_leaf_type(ty: Type) -> Type | None:
    """The float type of a scalar, or of the float fields of a struct or array (None: no float);
    several float types in one struct are refused where that matters (one shadow type per memory)."""
    if isinstance(ty, StructType):
        found = {leaf for element in ty.elements if (leaf := float_leaf_type(element)) is not None}
        if len(found) > 1:
            raise TypeError(f"{ty} holds several float types ({', '.join(sorted(map(str, found)))})")
        return found.pop() if found else None
    if isinstance(ty, (ArrayType, VectorType)):
        return float_leaf_type(ty.element)
    return ty if ty.is_float else None
