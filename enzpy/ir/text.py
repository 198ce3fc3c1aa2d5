"""A tokenizer and small recursive parsers for pieces of LLVM text.

llvmlite.binding gives the structure of a module (functions, blocks,
instructions, operand identity) but not every detail: alloca and GEP types,
fast-math flags, predicates, alignment, switch case values and aggregate
constants are only visible in the printed text of one instruction or constant.
The reader parses just those pieces with the helpers here.
"""

from __future__ import annotations

import re
from typing import Callable

from ..errors import UnsupportedIRError
from .types import (FLOAT_WIDTHS, ArrayType, FloatType, FunctionType, IntType, LabelType,
                    MetadataType, PointerType, StructType, Type, VectorType, VoidType)

_TOKEN = re.compile(r"""
    (?P<space>\s+|;[^\n]*)
  | (?P<cstring>c"[^"]*")
  | (?P<local>%(?:"[^"]*"|[-a-zA-Z$._0-9]+))
  | (?P<global>@(?:"[^"]*"|[-a-zA-Z$._0-9]+))
  | (?P<meta>!(?:"[^"]*"|[-a-zA-Z$._0-9]+)|!)
  | (?P<attrgroup>\#[0-9]+)
  | (?P<number>0x[0-9A-Fa-fKLMHR][0-9A-Fa-f]*|[-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)
  | (?P<string>"[^"]*")
  | (?P<word>[a-zA-Z_][a-zA-Z0-9_.]*(?::)?)
  | (?P<ellipsis>\.\.\.)
  | (?P<punct>[()\[\]{}<>,=*])
""", re.VERBOSE)


def tokenize(text: str) -> list[str]:
    """Split LLVM text into tokens, dropping whitespace and comments."""
    # finditer skips what matches nothing: each match must start where the last ended.
    tokens, position = [], 0
    for match in _TOKEN.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        if match.lastgroup != "space":
            tokens.append(match.group())
    if position != len(text):
        raise UnsupportedIRError(f"cannot tokenize LLVM text at {text[position:position + 40]!r}")
    return tokens


def unquote_name(token: str) -> str:
    """`%"a b"` / `@x` / `%.5` -> the bare name, with `\\XX` escapes decoded."""
    body = token[1:]
    if body.startswith('"'):
        body = re.sub(r"\\([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), body[1:-1])
    return body


class TokenStream:
    """Tokens with a cursor; parse errors quote the whole text."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.position = 0

    def peek(self, ahead: int = 0) -> str | None:
        index = self.position + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> str:
        token = self.peek()
        if token is None:
            self.fail("unexpected end")
        self.position += 1
        return token

    def accept(self, *options: str) -> str | None:
        if self.peek() in options:
            return self.next()
        return None

    def expect(self, token: str) -> None:
        got = self.next()
        if got != token:
            self.fail(f"expected {token!r}, got {got!r}")

    def at_end(self) -> bool:
        return self.position >= len(self.tokens)

    def fail(self, why: str):
        raise UnsupportedIRError(f"cannot parse LLVM text ({why}): {self.text.strip()[:300]}")


def parse_type(stream: TokenStream, named_structs: dict[str, StructType]) -> Type:
    """Parse one type, including function types `ret (params)` and legacy `T*`."""
    token = stream.next()
    if token == "void":
        base: Type = VoidType()
    elif re.fullmatch(r"i[0-9]+", token):
        base = IntType(int(token[1:]))
    elif token in FLOAT_WIDTHS:
        base = FloatType(token)
    elif token == "ptr":
        base = PointerType()
        if stream.accept("addrspace"):
            stream.expect("(")
            base = PointerType(int(stream.next()))
            stream.expect(")")
    elif token == "label":
        base = LabelType()
    elif token == "metadata":
        base = MetadataType()
    elif token in ("[", "<"):
        if token == "<" and stream.peek() == "{":
            base = _parse_struct_body(stream, named_structs, packed=True)
            stream.expect(">")
        else:
            count = int(stream.next())
            stream.expect("x")
            element = parse_type(stream, named_structs)
            stream.expect("]" if token == "[" else ">")
            base = ArrayType(count, element) if token == "[" else VectorType(count, element)
    elif token == "{":
        stream.position -= 1
        base = _parse_struct_body(stream, named_structs, packed=False)
    elif token.startswith("%"):
        name = unquote_name(token)
        if name not in named_structs:
            stream.fail(f"unknown named type %{name}")
        base = named_structs[name]
    else:
        stream.fail(f"unknown type {token!r}")
    while True:
        if stream.accept("*"):        # typed-pointer spelling from llvmlite.ir text
            base = PointerType()
        elif stream.peek() == "(" and not isinstance(base, LabelType):
            base = _parse_function_params(stream, named_structs, base)
        else:
            return base


def _parse_struct_body(stream: TokenStream, named_structs, packed: bool) -> StructType:
    stream.expect("{")
    elements = []
    while not stream.accept("}"):
        elements.append(parse_type(stream, named_structs))
        stream.accept(",")
    return StructType(tuple(elements), packed)


def _parse_function_params(stream: TokenStream, named_structs, return_type: Type) -> FunctionType:
    stream.expect("(")
    params, vararg = [], False
    while not stream.accept(")"):
        if stream.accept("..."):
            vararg = True
        else:
            params.append(parse_type(stream, named_structs))
        stream.accept(",")
    return FunctionType(return_type, tuple(params), vararg)


def parse_type_text(text: str, named_structs: dict[str, StructType]) -> Type:
    """A type as llvmlite prints it. A named struct prints as its definition
    (`%struct.P = type { double, double }`): the name before ` = type ` is the type."""
    if text.startswith("%") and " = type " in text:
        text = text.split(" = type ", 1)[0]
    stream = TokenStream(text)
    ty = parse_type(stream, named_structs)
    if not stream.at_end():
        stream.fail("trailing tokens after type")
    return ty


# A callback the constant parser uses for `@name` references.
GlobalResolver = Callable[[str], object]


def parse_typed_constant(stream: TokenStream, named_structs, resolve_global: GlobalResolver):
    """Parse `<type> <constant>` and return an enzpy constant (see ir.core)."""
    ty = parse_type(stream, named_structs)
    return parse_constant(stream, ty, named_structs, resolve_global)


def parse_constant(stream: TokenStream, ty: Type, named_structs, resolve_global: GlobalResolver):
    """Parse the constant that follows its type `ty`."""
    from . import core  # core imports nothing from here; the cycle is only at call time

    token = stream.next()
    if token in ("true", "false") and isinstance(ty, IntType):
        return core.ConstantInt(ty, 1 if token == "true" else 0)
    if isinstance(ty, IntType) and re.fullmatch(r"[-+]?[0-9]+", token):
        return core.ConstantInt(ty, int(token))
    if isinstance(ty, FloatType) and (token[0].isdigit() or token[0] in "+-" or token in ("inf", "nan")):
        return core.ConstantFloat(ty, decode_float_literal(token, ty, stream))
    if token == "null":
        return core.ConstantNull(ty)
    if token == "undef":
        return core.Undef(ty)
    if token == "poison":
        return core.Poison(ty)
    if token == "zeroinitializer":
        return core.ZeroInitializer(ty)
    if token.startswith("@"):
        return resolve_global(unquote_name(token))
    if token.startswith('c"'):
        return core.ConstantString(ty, decode_c_string(token[2:-1]))
    if token == "splat":
        stream.expect("(")
        element = parse_typed_constant(stream, named_structs, resolve_global)
        stream.expect(")")
        return core.ConstantAggregate(ty, [element] * ty.count)
    if token in ("[", "{", "<"):
        closing = {"[": "]", "{": "}", "<": ">"}[token]
        if token == "<" and stream.accept("{"):
            closing = "}"
        elements = []
        while not stream.accept(closing):
            elements.append(parse_typed_constant(stream, named_structs, resolve_global))
            stream.accept(",")
        if closing == "}" and token == "<":
            stream.expect(">")
        return core.ConstantAggregate(ty, elements)
    if token in core.CONSTANT_EXPRESSION_OPCODES:
        return _parse_constant_expression(stream, token, ty, named_structs, resolve_global)
    stream.fail(f"unsupported constant {token!r} of type {ty}")


def _parse_constant_expression(stream, opcode, ty, named_structs, resolve_global):
    from . import core

    flags = []
    while stream.peek() in core.GEP_FLAGS | core.INTEGER_FLAGS:
        flags.append(stream.next())
    stream.expect("(")
    source_type = None
    if opcode == "getelementptr":
        source_type = parse_type(stream, named_structs)
        stream.expect(",")
    operands = [parse_typed_constant(stream, named_structs, resolve_global)]
    destination = None
    while not stream.accept(")"):
        if stream.accept("to"):
            destination = parse_type(stream, named_structs)
        else:
            stream.accept(",")
            stream.accept("inrange")
            operands.append(parse_typed_constant(stream, named_structs, resolve_global))
    return core.ConstantExpression(destination or ty, opcode, operands, tuple(flags), source_type)


def decode_float_literal(token: str, ty: FloatType, stream: TokenStream | None = None) -> float | str:
    """A float literal as a Python float (exact), or its raw hex text for exotic kinds."""
    import struct

    if token.startswith("0x"):
        if token[2] in "KLMHR":
            if token[2] == "H" and ty.kind == "half":
                import numpy as np
                return float(np.frombuffer(int(token[3:], 16).to_bytes(2, "little"), np.float16)[0])
            return token             # x86_fp80 / fp128 / bfloat: carried verbatim
        return struct.unpack("<d", int(token[2:], 16).to_bytes(8, "little"))[0]
    return float(token)


def encode_float_literal(value: float | str, ty: FloatType) -> str:
    """Exact LLVM spelling of a float constant (hex of the double for float/double)."""
    import struct

    if isinstance(value, str):
        return value
    if ty.kind == "half":
        import numpy as np
        return "0xH%04X" % int(np.array(value, np.float16).view(np.uint16))
    return "0x%016X" % int.from_bytes(struct.pack("<d", value), "little")


def decode_c_string(body: str) -> bytes:
    out, index = bytearray(), 0
    while index < len(body):
        if body[index] == "\\":
            if body[index + 1] == "\\":
                out.append(0x5C)
                index += 2
            else:
                out.append(int(body[index + 1:index + 3], 16))
                index += 3
        else:
            out.extend(body[index].encode("latin-1"))
            index += 1
    return bytes(out)


def encode_c_string(data: bytes) -> str:
    return 'c"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else "\\%02X" % b
                          for b in data) + '"'
