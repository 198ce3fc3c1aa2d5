"""llvmlite.binding ModuleRef -> enzpy IR.

The binding gives the structure (functions, blocks, instructions, and which
value each operand is); the few details it hides (types on alloca and GEP,
flags, predicates, alignment, switch cases, aggregate constants) are parsed
from the printed text of the single instruction or constant with `ir.text`.
Anything enzpy cannot represent raises UnsupportedIRError naming it.
"""

from __future__ import annotations

import contextlib
import ctypes
import re

import llvmlite.binding as llvm

from ..errors import UnsupportedIRError
from . import core
from .text import TokenStream, parse_constant, parse_type, parse_type_text, parse_typed_constant, unquote_name
from .types import FunctionType, PointerType, StructType, Type

BINARY_OPCODES = frozenset({"add", "sub", "mul", "udiv", "sdiv", "urem", "srem", "shl", "lshr", "ashr",
                            "and", "or", "xor", "fadd", "fsub", "fmul", "fdiv", "frem"})
CAST_OPCODES = frozenset({"trunc", "zext", "sext", "fptrunc", "fpext", "fptoui", "fptosi", "uitofp",
                          "sitofp", "ptrtoint", "ptrtoaddr", "inttoptr", "bitcast", "addrspacecast"})
# Linkage enum names from llvmlite -> LLVM keywords ("" is the default, external).
_LINKAGE_KEYWORDS = {"external": "", "available_externally": "available_externally",
                     "linkonce_any": "linkonce", "linkonce_odr": "linkonce_odr", "weak_any": "weak",
                     "weak_odr": "weak_odr", "appending": "appending", "internal": "internal",
                     "private": "private", "external_weak": "extern_weak", "common": "common"}
# Call-site parameter attributes that change the ABI and so must be kept.
ABI_PARAMETER_ATTRIBUTES = ("byval", "sret", "inreg", "zeroext", "signext", "inalloca",
                            "preallocated", "elementtype", "byref", "swiftself", "swifterror")
_DEBUG_NODE = re.compile(r"^!(\d+) = (?:distinct )?!(DILocation|DISubprogram|DILexicalBlock|DILexicalBlockFile|DIFile)"
                         r"\((.*)\)$", re.M)
_DEBUG_FIELD = re.compile(r'(\w+): (!\d+|"(?:[^"\\]|\\.)*"|\d+)')
_DEFINED_NAME = re.compile(r'@("[^"]+"|[-a-zA-Z$._0-9]+)\(')
_ATTRIBUTE_GROUP = re.compile(r"^attributes (#[0-9]+) = \{ (.*) \}$", re.M)
_NAMED_STRUCT = re.compile(r'^%("[^"]*"|[-a-zA-Z$._0-9]+) = type (.*)$', re.M)
_TYPE_NAME = re.compile(r'%("(?:[^"\\]|\\.)*"|[-a-zA-Z$._0-9]+)')
_UNKNOWN_NAMED_TYPE = re.compile(r"unknown named type %(.+?)\)")


def _mentioned_types(body: str) -> list[str]:
    """The named types a struct body mentions (`{ %struct.Inner, [2 x %"class.std::x"] }`), in order."""
    return [unquote_name("%" + name) for name in _TYPE_NAME.findall(body)] if "%" in body else []


def debug_locations(text: str) -> dict[int, core.SourceLocation]:
    """Metadata id of every `!DILocation` in a module's text -> its file and line.

    The file is found through the location's scope (subprogram or lexical
    block) to its `!DIFile`; for an inlined callee that is the callee's file.
    """
    nodes = {int(number): (kind, dict(_DEBUG_FIELD.findall(fields)))
             for number, kind, fields in _DEBUG_NODE.findall(text)}

    def file_of(reference: str | None, depth: int = 0) -> str | None:
        node = nodes.get(int(reference[1:])) if reference and reference.startswith("!") else None
        if node is None or depth > 64:
            return None
        kind, fields = node
        if kind == "DIFile":
            name = fields.get("filename", '""')[1:-1]
            directory = fields.get("directory", '""')[1:-1]
            return f"{directory}/{name}" if directory and not name.startswith("/") else name or None
        return file_of(fields.get("file") or fields.get("scope"), depth + 1)

    return {number: core.SourceLocation(int(fields["line"]), file_of(fields.get("scope")))
            for number, (kind, fields) in nodes.items()
            if kind == "DILocation" and int(fields.get("line", 0)) > 0}


def address(ref) -> int:
    """Identity of an LLVM value behind a llvmlite ValueRef."""
    return ctypes.cast(ref._ptr, ctypes.c_void_p).value


def read_module(module_ref: llvm.ModuleRef, roots=None) -> core.Module:
    """Convert a parsed (and verified) llvmlite module into an enzpy Module.

    With `roots` (function names), only the functions and globals they reach
    (through calls, references and global initializers) are read; the rest is
    left out unread, so a construct enzpy cannot represent in a function
    nobody calls (a helper linked in with its whole library) refuses nothing.
    """
    with _without_lock_callbacks():
        return _ModuleReader(module_ref, roots).read()


@contextlib.contextmanager
def _without_lock_callbacks():
    """Run without the callbacks llvmlite calls around each C call (the lock stays).

    numba registers a pair that records a `numba:llvm_lock` event for its
    profiler; reading a module makes about a dozen C calls per instruction,
    and those events were half of the reading time. The list is swapped, not
    emptied, so a thread inside a call still finds the callbacks it entered with.
    """
    lock = getattr(llvm.ffi.lib, "_lock", None)
    callbacks = getattr(lock, "_cblist", None)
    if not isinstance(callbacks, list):
        yield                                   # another llvmlite: leave it alone
        return
    lock._cblist = []
    try:
        yield
    finally:
        lock._cblist = callbacks


def parse_module(text: str) -> core.Module:
    """Parse LLVM text with LLVM itself, verify it, and read it.

    A fresh LLVM context keeps named struct types from being renamed
    (`%pair` -> `%pair.1`) because another module already used the name.
    """
    context = llvm.create_context()
    module_ref = llvm.parse_assembly(text, context=context)
    try:
        module_ref.verify()
        return read_module(module_ref)
    finally:
        # The module must die before its context; garbage collection picks no order.
        module_ref.close()
        context.close()


class _ModuleReader:
    def __init__(self, module_ref: llvm.ModuleRef, roots=None):
        self.ref = module_ref
        self.text = str(module_ref)
        self.module = core.Module(name=module_ref.name, triple=module_ref.triple,
                                  data_layout=module_ref.data_layout)
        self.locations = debug_locations(self.text)
        self.attribute_groups = dict(_ATTRIBUTE_GROUP.findall(self.text))
        self.locals: dict[int, core.Value] = {}
        self.reached = None if roots is None else reachable_symbols(self.text, roots)
        self._lines_cache: dict[str, list[str]] | None = None
        self._types_by_address: dict[int, Type] = {}

    # -- module level

    def read(self) -> core.Module:
        self._read_named_structs()
        try:
            return self._read_symbols()
        except UnsupportedIRError as error:
            opaque = _UNKNOWN_NAMED_TYPE.search(str(error))
            if opaque is None or opaque.group(1) not in self.opaque_structs:
                raise
            raise UnsupportedIRError(f"opaque struct type %{opaque.group(1)} is not supported (used in: "
                                     f"{str(error)})") from None

    def _read_symbols(self) -> core.Module:
        kept = (lambda ref: True) if self.reached is None else (lambda ref: ref.name in self.reached)
        global_refs = [gv for gv in self.ref.global_variables if kept(gv)]
        for gv in global_refs:
            self.module.globals[gv.name] = core.GlobalVariable(
                PointerType(), gv.name, value_type=self.type_of(str(gv.global_value_type)),
                linkage=_LINKAGE_KEYWORDS.get(gv.linkage.name, gv.linkage.name))
        function_refs = [fn for fn in self.ref.functions if kept(fn)]
        for fn in function_refs:
            self.module.add_function(self._declare(fn))
        for gv in global_refs:
            self._read_global_details(gv, self.module.globals[gv.name])
        for fn in function_refs:
            if not fn.is_declaration:
                self._read_body(fn, self.module.functions[fn.name])
        return self.module

    def _read_named_structs(self) -> None:
        """Every named struct the module defines, whatever its spelling and wherever LLVM prints it.

        LLVM prints a struct before the structs it holds (`%"class.std::basic_ios"
        = type { %"class.std::ios_base", ... }` comes first, C++ headers nest many
        levels), so each body is read after the named types it mentions. Opaque
        types are not read: a C++ header declares some the differentiated code
        never touches, so they are refused where a read global or instruction
        uses one (`read`), not for being declared.
        """
        bodies = {unquote_name("%" + n): body.strip() for n, body in _NAMED_STRUCT.findall(self.text)}
        self.opaque_structs = {name for name, body in bodies.items() if body == "opaque"}
        named = self.module.named_structs
        for root in bodies:
            if root in named or root in self.opaque_structs:
                continue
            # Depth first over the bodies' mentions, without Python recursion (Eigen nests deeply).
            stack, on_stack = [root], {root}
            while stack:
                name = stack[-1]
                waiting = next((m for m in _mentioned_types(bodies[name])
                                if m in bodies and m not in named and m not in self.opaque_structs), None)
                if waiting is not None:
                    # One at a time, so that the stack is a chain of bodies each holding the next.
                    if waiting in on_stack:
                        raise UnsupportedIRError(f"struct type %{name} holds itself (through %{waiting})")
                    stack.append(waiting)
                    on_stack.add(waiting)
                    continue
                literal = parse_type_text(bodies[name], named)
                named[name] = StructType(literal.elements, literal.packed, name)
                stack.pop()
                on_stack.discard(name)

    def type_of(self, text: str) -> Type:
        return parse_type_text(text, self.module.named_structs)

    def resolve_global(self, name: str) -> core.Value:
        if name in self.module.globals:
            return self.module.globals[name]
        if name in self.module.functions:
            return self.module.functions[name]
        raise UnsupportedIRError(f"reference to unknown global @{name}")

    def _declare(self, fn) -> core.Function:
        function_type = self.type_of(str(fn.global_value_type))
        function = core.Function(fn.name, function_type, [a.name for a in fn.arguments])
        for argument, ref in zip(function.arguments, fn.arguments):
            argument.attributes = tuple(a.decode() for a in ref.attributes)
        function.linkage = _LINKAGE_KEYWORDS.get(fn.linkage.name, fn.linkage.name)
        header = next(line for line in str(fn).splitlines() if line.startswith(("define", "declare")))
        (function.calling_convention, function.return_attributes,
         function.attributes) = _header_details(header, self.attribute_groups)
        return function

    def _read_global_details(self, ref, gv: core.GlobalVariable) -> None:
        stream = TokenStream(str(ref).split("\n")[0])
        stream.next(), stream.expect("=")
        while (token := stream.next()) not in ("global", "constant"):
            if token in ("unnamed_addr", "local_unnamed_addr"):
                gv.unnamed_addr = token
            elif token in ("thread_local", "section", "comdat", "addrspace"):
                raise UnsupportedIRError(f"global @{gv.name}: '{token}' is not supported")
        gv.constant = token == "constant"
        parse_type(stream, self.module.named_structs)
        if not stream.at_end() and stream.peek() != ",":
            gv.initializer = parse_constant(stream, gv.value_type, self.module.named_structs,
                                            self.resolve_global)
        while stream.accept(","):
            if stream.accept("align"):
                gv.align = int(stream.next())
            else:
                stream.fail(f"unsupported global attribute {stream.peek()!r}")

    # -- function bodies

    def _read_body(self, ref, function: core.Function) -> None:
        self.locals = {address(a): arg for a, arg in zip(ref.arguments, function.arguments)}
        pairs = []
        # Each instruction's text comes from the module's text, printed once: printing one
        # instruction alone makes LLVM number the whole module's values again (quadratic),
        # and renumbers its metadata.
        lines = iter(self._instruction_lines().get(function.name, ()))
        for block_ref in ref.blocks:
            block = function.append_block(block_ref.name)
            self.locals[address(block_ref)] = block
            for inst_ref in block_ref.instructions:
                line = next(lines, None)
                if line is None:
                    raise UnsupportedIRError(f"function @{function.name}: the module's text has fewer "
                                             "instructions than the module")
                instruction = self._shell(inst_ref, function, line)
                if instruction is None:
                    continue
                debug = _DEBUG_ATTACHMENT.search(line)
                instruction.location = self.locations.get(int(debug.group(1))) if debug else None
                block.append(instruction)
                self.locals[address(inst_ref)] = instruction
                pairs.append((inst_ref, instruction, line))
        for inst_ref, instruction, line in pairs:
            self._fill(inst_ref, instruction, function, line)

    def _shell(self, ref, function: core.Function, line: str) -> core.Instruction | None:
        """Create the instruction object (operands come later: phis refer forward).

        Name and opcode come from the instruction's text (each C call costs more than
        reading them there); an unnamed value (`%7 = ...`) gets no name, as llvmlite gives it.
        """
        head = _INSTRUCTION_HEAD.match(line)
        opcode = head.group("opcode") if head is not None else ref.opcode
        kind = _INSTRUCTION_CLASSES.get(opcode)
        if kind is None:
            raise UnsupportedIRError(
                f"instruction '{opcode}' is not supported (function @{function.name}): {line.strip()}")
        if opcode == "call" and "@llvm." in line and _is_debug_intrinsic(ref):
            return None
        name = head.group("name") if head is not None else None
        name = "" if name is None or name[1:].isdigit() else unquote_name(name)
        return kind(type=self._type_of_ref(ref.type), name=name, opcode=opcode)

    def _type_of_ref(self, type_ref) -> Type:
        """The enzpy type of a llvmlite TypeRef; a module has few distinct types, so each is printed once."""
        key = address(type_ref)
        found = self._types_by_address.get(key)
        if found is None:
            found = self._types_by_address[key] = self.type_of(str(type_ref))
        return found

    def _instruction_lines(self) -> dict[str, list[str]]:
        """Per defined function, the text of each instruction of its body, in order."""
        if self._lines_cache is None:
            self._lines_cache = instruction_lines(self.text)
        return self._lines_cache

    def operand(self, ref, function: core.Function) -> core.Value:
        kind = ref.value_kind.name
        if kind in ("instruction", "argument", "basic_block"):
            return self.locals[address(ref)]
        if kind in ("function", "global_variable"):
            return self.resolve_global(ref.name)
        if kind.startswith("constant") or kind in ("undef_value", "poison_value"):
            stream = TokenStream(str(ref))
            value = parse_typed_constant(stream, self.module.named_structs, self.resolve_global)
            if not stream.at_end():
                stream.fail("trailing tokens after constant")
            return value
        raise UnsupportedIRError(f"operand kind '{kind}' is not supported (function @{function.name})")

    def _fill(self, ref, instruction: core.Instruction, function: core.Function, text: str) -> None:
        operands = [self.operand(o, function) for o in ref.operands]
        stream = _instruction_stream(text)
        prefix = []                                            # `tail` before `call`
        while (token := stream.next()) != instruction.opcode:
            prefix.append(token)
        stream.prefix = prefix
        fill = _FILLERS.get(type(instruction))
        try:
            if fill is not None:
                fill(self, instruction, operands, stream, ref)
            else:
                instruction.operands = operands
        except UnsupportedIRError as error:
            raise UnsupportedIRError(f"{error} (function @{function.name})") from None


_DEBUG_ATTACHMENT = re.compile(r"!dbg !(\d+)")
_INSTRUCTION_HEAD = re.compile(r'\s*(?:(?P<name>%"(?:[^"\\]|\\.)*"|%[-a-zA-Z$._0-9]+) = )?'
                               r"(?:(?:tail|musttail|notail) )?(?P<opcode>[a-z_]+)\b")


def instruction_lines(text: str) -> dict[str, list[str]]:
    """Per function defined in a module's text, its instructions' texts in order.

    Body lines that are no instruction are skipped: block labels, comments and
    debug records (`#dbg_value(...)`). A switch spans several lines (its cases,
    then `]` and its metadata); they are joined into one.
    """
    bodies: dict[str, list[str]] = {}
    current: list[str] | None = None
    open_switch: list[str] | None = None
    for line in text.splitlines():
        if current is None:
            if line.startswith("define "):
                found = _DEFINED_NAME.search(line)
                current = bodies.setdefault(unquote_name("@" + found.group(1)), [])
            continue
        if open_switch is not None:
            open_switch.append(line.strip())
            if line.startswith("  ]"):                   # `]`, then maybe `, !dbg !7`
                current.append(" ".join(open_switch))
                open_switch = None
        elif line.startswith("}"):
            current = None
        elif line.startswith("  ") and not line.startswith("   "):
            stripped = line.lstrip()
            if stripped.startswith(("#dbg_", ";")):
                continue
            if stripped.startswith("switch ") or " = switch " in stripped:
                open_switch = [line]
            else:
                current.append(line)
    return bodies


_GLOBAL_NAME = r'@("(?:[^"\\]|\\.)*"|[-a-zA-Z$._0-9]+)'
_GLOBAL_REFERENCE = re.compile(_GLOBAL_NAME)
_GLOBAL_DEFINITION = re.compile(rf"^{_GLOBAL_NAME} = ", re.M)


def reachable_symbols(text: str, roots) -> set[str]:
    """Names of the functions and globals that `roots` reach in a module's text.

    A function reaches every `@name` its body mentions (callees, stored function
    pointers, globals); a global reaches what its initializer mentions. Appending
    globals (`@llvm.used`, `@llvm.global_ctors`) are roots of their own.
    """
    mentions: dict[str, set[str]] = {}
    appending = set()
    current: set[str] | None = None
    for line in text.splitlines():
        if line.startswith("define "):
            name = unquote_name("@" + _DEFINED_NAME.search(line).group(1))
            current = mentions.setdefault(name, set())
            # Personality / prefix data on the header line count; the name itself does not.
            current.update(unquote_name(m.group(0)) for m in _GLOBAL_REFERENCE.finditer(line.split("(", 1)[1]))
        elif line.startswith("}"):
            current = None
        elif current is not None:
            if not line.lstrip().startswith(";"):
                current.update(unquote_name(m.group(0)) for m in _GLOBAL_REFERENCE.finditer(line))
        elif (found := _GLOBAL_DEFINITION.match(line)) is not None:
            name = unquote_name("@" + found.group(1))
            rest = line[found.end():]
            mentions[name] = {unquote_name(m.group(0)) for m in _GLOBAL_REFERENCE.finditer(rest)}
            if rest.split(" ", 1)[0] == "appending":
                appending.add(name)
    reached, pending = set(), [*roots, *appending]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(mentions.get(name, ()))
    return reached


def _is_calling_convention(token: str) -> bool:
    """`fastcc`, `coldcc`, `x86_vectorcallcc`, ...: every named LLVM convention ends in `cc`."""
    return token.endswith("cc") and token != "cc"


def _split_header(header: str) -> tuple[str, str]:
    """`define <prefix> @name(<params>) <suffix> {` -> (prefix, suffix)."""
    at = header.index("@")
    prefix, rest = header[:at], header[at + 1:]
    index = rest.index('"', 1) + 1 if rest.startswith('"') else 0
    index = rest.index("(", index)
    depth = 0
    for position in range(index, len(rest)):
        depth += {"(": 1, ")": -1}.get(rest[position], 0)
        if depth == 0:
            return prefix, rest[position + 1:].rstrip(" {")
    raise UnsupportedIRError(f"cannot parse function header: {header}")


def _header_details(header: str, attribute_groups: dict[str, str]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Calling convention, ABI return attributes and function attributes of a header."""
    prefix, suffix = _split_header(header)
    tokens = prefix.split()[1:]
    calling_convention = next((t for t in tokens if _is_calling_convention(t)), "")
    # Return attributes like noalias/range/nonnull are hints; only the ABI ones must be kept.
    return_attributes = tuple(t for t in tokens if t in ("zeroext", "signext", "inreg"))
    attributes = []
    suffix = re.sub(r"![-a-zA-Z$._0-9]+ !\d+", "", suffix)         # metadata attachments (!dbg !3)
    for part in re.findall(r'#[0-9]+|"[^"]*"(?:="[^"]*")?|[a-z_]+(?:\([^)]*\))?', suffix):
        attributes.append(attribute_groups.get(part, part) if part.startswith("#") else part)
    return calling_convention, return_attributes, tuple(a for a in attributes if a)


# Intrinsics whose only operands are metadata hints; enzpy carries no
# metadata, so they are dropped (debug info and alias-scope declarations).
_METADATA_ONLY_INTRINSICS = ("llvm.dbg.", "llvm.experimental.noalias.scope.decl")


def _is_debug_intrinsic(ref) -> bool:
    operands = list(ref.operands)
    return bool(operands) and operands[-1].name.startswith(_METADATA_ONLY_INTRINSICS)


def _instruction_stream(text: str) -> TokenStream:
    """Tokens of one instruction with `%x =`, metadata attachments and debug records removed."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("#dbg_")]
    body = re.split(r",\s*![a-zA-Z_.]", "\n".join(lines), maxsplit=1)[0]
    stream = TokenStream(body)
    if stream.peek(1) == "=":
        stream.position = 2
    return stream


def _take_flags(stream: TokenStream, allowed) -> tuple[str, ...]:
    flags = []
    while stream.peek() in allowed:
        flags.append(stream.next())
    return tuple(flags)


def _trailing_alignment(stream: TokenStream) -> int | None:
    tokens = stream.tokens
    if len(tokens) >= 2 and tokens[-2] == "align":
        return int(tokens[-1])
    return None


def _trailing_indices(stream: TokenStream) -> tuple[int, ...]:
    tokens, indices, index = stream.tokens, [], len(stream.tokens) - 1
    while index >= 1 and tokens[index].isdigit() and tokens[index - 1] == ",":
        indices.append(int(tokens[index]))
        index -= 2
    return tuple(reversed(indices))


_ALL_FLAGS = core.FAST_MATH_FLAGS | core.INTEGER_FLAGS


def _fill_flagged(reader, inst, operands, stream, ref):
    inst.operands = operands
    inst.flags = _take_flags(stream, _ALL_FLAGS)


def _fill_compare(reader, inst, operands, stream, ref):
    inst.operands = operands
    inst.flags = _take_flags(stream, _ALL_FLAGS)
    inst.predicate = stream.next()


def _fill_phi(reader, inst, operands, stream, ref):
    inst.operands = operands
    inst.flags = _take_flags(stream, core.FAST_MATH_FLAGS)
    inst.incoming_blocks = [reader.locals[address(b)] for b in ref.incoming_blocks]


def _fill_alloca(reader, inst, operands, stream, ref):
    if stream.accept("inalloca") is not None:
        raise UnsupportedIRError("alloca inalloca is not supported")
    inst.allocated_type = parse_type(stream, reader.module.named_structs)
    inst.operands = operands
    inst.align = _trailing_alignment(stream)


def _fill_memory_access(reader, inst, operands, stream, ref):
    atomic = stream.accept("atomic") is not None
    inst.volatile = stream.accept("volatile") is not None
    inst.operands = operands
    inst.align = _trailing_alignment(stream)
    if atomic:
        inst.syncscope = _syncscope(stream)
        inst.ordering = _orderings(stream)[-1]


def _fill_gep(reader, inst, operands, stream, ref):
    inst.flags = _take_flags(stream, core.GEP_FLAGS)
    inst.source_type = parse_type(stream, reader.module.named_structs)
    inst.operands = operands


def _fill_aggregate(reader, inst, operands, stream, ref):
    inst.operands = operands
    inst.indices = _trailing_indices(stream)


def _fill_shufflevector(reader, inst, operands, stream, ref):
    """The mask is no operand in LLVM: parse it from the text, after the two vectors."""
    inst.operands = operands
    for _ in range(2):
        _skip_typed_value(reader, stream)
        stream.expect(",")
    mask = parse_typed_constant(stream, reader.module.named_structs, reader.resolve_global)
    count = mask.type.count
    if isinstance(mask, core.ConstantAggregate):
        inst.mask = tuple(e.value if isinstance(e, core.ConstantInt) else -1 for e in mask.elements)
    elif isinstance(mask, core.ZeroInitializer):
        inst.mask = (0,) * count
    else:                                           # poison / undef: every lane is poison
        inst.mask = (-1,) * count


def _skip_typed_value(reader, stream: TokenStream) -> None:
    """Step over `<type> <value>`: a local name, or a constant (which may span many tokens)."""
    ty = parse_type(stream, reader.module.named_structs)
    if stream.peek() is not None and stream.peek().startswith("%"):
        stream.next()
    else:
        parse_constant(stream, ty, reader.module.named_structs, reader.resolve_global)


def _fill_call(reader, inst, operands, stream, ref):
    inst.tail = " ".join(stream.prefix)
    inst.flags = _take_flags(stream, core.FAST_MATH_FLAGS)
    token = stream.peek()
    if token and _is_calling_convention(token):
        inst.calling_convention = stream.next()
    callee, arguments = operands[-1], operands[:-1]
    if ref.operands and list(ref.operands)[-1].value_kind.name == "inline_asm":
        raise UnsupportedIRError("inline assembly is not supported")
    inst.callee, inst.operands = callee, arguments
    if isinstance(callee, core.Function):
        inst.function_type = callee.function_type
        inst.argument_attributes = [
            tuple(a for a in argument.attributes if a.split("(")[0].split(" ")[0] in ABI_PARAMETER_ATTRIBUTES)
            for argument in callee.arguments] + [()] * max(0, len(arguments) - len(callee.arguments))
    else:
        inst.function_type = FunctionType(inst.type, tuple(a.type for a in arguments))
        inst.argument_attributes = [()] * len(arguments)
    inst.attributes = tuple(a.decode() for a in ref.attributes if a)


def _fill_branch(reader, inst, operands, stream, ref):
    if len(operands) == 1:
        inst.targets = [operands[0]]
    else:                                  # LLVM order is [condition, false, true]
        inst.operands = [operands[0]]
        inst.targets = [operands[2], operands[1]]


def _fill_switch(reader, inst, operands, stream, ref):
    inst.operands = [operands[0]]
    inst.default = operands[1]
    tokens = stream.tokens
    stream.position = tokens.index("[") + 1
    values = []
    while not stream.accept("]"):
        values.append(parse_typed_constant(stream, reader.module.named_structs, reader.resolve_global))
        stream.expect(",")
        stream.expect("label")
        stream.next()
    inst.cases = list(zip(values, operands[2:]))


def _fill_atomicrmw(reader, inst, operands, stream, ref):
    inst.volatile = stream.accept("volatile") is not None
    inst.operation = stream.next()
    inst.operands = operands
    inst.syncscope = _syncscope(stream)
    inst.ordering = _orderings(stream)[-1]
    inst.align = _trailing_alignment(stream)


def _fill_cmpxchg(reader, inst, operands, stream, ref):
    inst.weak = stream.accept("weak") is not None
    inst.volatile = stream.accept("volatile") is not None
    inst.operands = operands
    inst.syncscope = _syncscope(stream)
    inst.orderings = tuple(_orderings(stream)[-2:])
    inst.align = _trailing_alignment(stream)


_ORDERINGS = {"unordered", "monotonic", "acquire", "release", "acq_rel", "seq_cst"}


def _orderings(stream: TokenStream) -> list[str]:
    """The ordering keywords of an atomic instruction (they come after every operand)."""
    return [t for t in stream.tokens if t in _ORDERINGS]


def _syncscope(stream: TokenStream) -> str:
    """The name in `syncscope("name")`, or "" (the whole system) when there is none."""
    tokens = stream.tokens
    if "syncscope" not in tokens:
        return ""
    index = tokens.index("syncscope")
    return tokens[index + 2][1:-1]


def _fill_fence(reader, inst, operands, stream, ref):
    inst.syncscope = _syncscope(stream)
    inst.ordering = _orderings(stream)[-1]


def _fill_plain(reader, inst, operands, stream, ref):
    inst.operands = operands


_INSTRUCTION_CLASSES: dict[str, type] = {
    **{op: core.BinaryOperator for op in BINARY_OPCODES},
    **{op: core.Cast for op in CAST_OPCODES},
    "fneg": core.UnaryOperator, "icmp": core.Compare, "fcmp": core.Compare,
    "select": core.Select, "phi": core.Phi, "alloca": core.Alloca, "load": core.Load,
    "store": core.Store, "getelementptr": core.GetElementPtr,
    "extractvalue": core.ExtractValue, "insertvalue": core.InsertValue,
    "extractelement": core.ExtractElement, "insertelement": core.InsertElement,
    "shufflevector": core.ShuffleVector, "freeze": core.Freeze, "va_arg": core.VAArg, "call": core.Call,
    "atomicrmw": core.AtomicRMW, "fence": core.Fence, "cmpxchg": core.CmpXchg, "br": core.Branch,
    "switch": core.Switch, "ret": core.Return, "unreachable": core.Unreachable,
}

_FILLERS = {
    core.BinaryOperator: _fill_flagged, core.UnaryOperator: _fill_flagged, core.Cast: _fill_flagged,
    core.Select: _fill_flagged, core.Compare: _fill_compare, core.Phi: _fill_phi,
    core.Alloca: _fill_alloca, core.Load: _fill_memory_access, core.Store: _fill_memory_access,
    core.GetElementPtr: _fill_gep, core.ExtractValue: _fill_aggregate,
    core.InsertValue: _fill_aggregate, core.ExtractElement: _fill_plain, core.InsertElement: _fill_plain,
    core.ShuffleVector: _fill_shufflevector, core.VAArg: _fill_plain, core.Call: _fill_call,
    core.Branch: _fill_branch, core.Switch: _fill_switch, core.AtomicRMW: _fill_atomicrmw,
    core.CmpXchg: _fill_cmpxchg, core.Fence: _fill_fence, core.Freeze: _fill_plain, core.Return: _fill_plain,
    core.Unreachable: _fill_plain,
}
