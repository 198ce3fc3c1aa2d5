"""enzpy IR -> LLVM text that `llvmlite.binding.parse_assembly` accepts.

Every local value gets a name: its own if it has one (made unique), or a fresh
`_N`. Float constants are written as the hex of their double, which is exact.
Metadata is not carried, except two kinds enzpy makes itself: source
locations (where instructions have one, a minimal line table, `_LineTable`,
is written so that they survive LLVM's passes and read back) and memory
labels of loads and stores (written as scoped-noalias metadata,
`_AliasScopes`).
"""

from __future__ import annotations

from . import core
from .text import encode_c_string, encode_float_literal
from .types import StructType, VectorType, quote_name


def write_module(module: core.Module) -> str:
    """The whole module as LLVM text."""
    lines = []
    if module.name:
        lines.append(f"; ModuleID = '{module.name}'")
    if module.data_layout:
        lines.append(f'target datalayout = "{module.data_layout}"')
    if module.triple:
        lines.append(f'target triple = "{module.triple}"')
    lines.append("")
    for name, struct in module.named_structs.items():
        lines.append(f"%{quote_name(name)} = type {struct.body()}")
    for gv in module.globals.values():
        lines.append(_global_text(gv))
    lines.append("")
    nodes = _MetadataNodes()
    line_table = _LineTable(nodes)
    alias_scopes = _AliasScopes(module, nodes)
    for function in module.functions.values():
        lines.append(write_function(function, line_table, alias_scopes))
    lines.extend(line_table.module_lines())
    lines.extend(nodes.lines())
    return "\n".join(lines) + "\n"


def constant_text(value: core.Value) -> str:
    """A constant (or a global reference) without its type."""
    if isinstance(value, (core.GlobalVariable, core.Function)):
        return "@" + quote_name(value.name)
    if isinstance(value, core.ConstantInt):
        if value.type.width == 1:
            return "true" if value.value & 1 else "false"
        return str(value.value)
    if isinstance(value, core.ConstantFloat):
        return encode_float_literal(value.value, value.type)
    if isinstance(value, core.ConstantNull):
        return "null"
    if isinstance(value, core.Undef):
        return "undef"
    if isinstance(value, core.Poison):
        return "poison"
    if isinstance(value, core.ZeroInitializer):
        return "zeroinitializer"
    if isinstance(value, core.ConstantString):
        return encode_c_string(value.data)
    if isinstance(value, core.ConstantAggregate):
        inner = ", ".join(typed_constant_text(e) for e in value.elements)
        ty = value.type
        if isinstance(ty, StructType):
            return ("<{ " + inner + " }>") if ty.packed else ("{ " + inner + " }")
        return ("<" + inner + ">") if isinstance(ty, VectorType) else ("[" + inner + "]")
    if isinstance(value, core.ConstantExpression):
        flags = "".join(f" {f}" for f in value.flags)
        parts = [typed_constant_text(o) for o in value.operands]
        if value.opcode == "getelementptr":
            return f"getelementptr{flags} ({value.source_type}, {', '.join(parts)})"
        if value.opcode in ("bitcast", "ptrtoint", "inttoptr", "addrspacecast", "trunc"):
            return f"{value.opcode} ({parts[0]} to {value.type})"
        return f"{value.opcode}{flags} ({', '.join(parts)})"
    raise TypeError(f"not a constant: {value!r}")


def typed_constant_text(value: core.Value) -> str:
    return f"{value.type} {constant_text(value)}"


def _global_text(gv: core.GlobalVariable) -> str:
    parts = [f"@{quote_name(gv.name)} ="]
    linkage = gv.linkage or ("external" if gv.initializer is None else "")
    if linkage:
        parts.append(linkage)
    if gv.unnamed_addr:
        parts.append(gv.unnamed_addr)
    parts.append("constant" if gv.constant else "global")
    parts.append(str(gv.value_type))
    if gv.initializer is not None:
        parts.append(constant_text(gv.initializer))
    text = " ".join(parts)
    return text + (f", align {gv.align}" if gv.align else "")


class _Namer:
    """Gives each local value and block of one function a unique LLVM name."""

    def __init__(self, function: core.Function):
        self.names: dict[core.Value, str] = {}
        self.used: set[str] = set()
        self.counter = 0
        for argument in function.arguments:
            self._assign(argument)
        for block in function.blocks:
            self._assign(block)
            for instruction in block.instructions:
                if str(instruction.type) != "void":
                    self._assign(instruction)

    def _assign(self, value: core.Value) -> None:
        name = value.name
        if not name or name in self.used or name.isdigit():
            base = name or "_"
            while True:
                self.counter += 1
                candidate = f"{base}.{self.counter}" if name else f"_{self.counter}"
                if candidate not in self.used:
                    name = candidate
                    break
        self.used.add(name)
        self.names[value] = "%" + quote_name(name)

    def ref(self, value: core.Value) -> str:
        """A value as an operand, without its type."""
        if value in self.names:
            return self.names[value]
        if isinstance(value, core.Constant):
            return constant_text(value)
        raise ValueError(f"value {value!r} is not defined in this function")

    def typed(self, value: core.Value) -> str:
        return f"{value.type} {self.ref(value)}"

    def label(self, block: core.Block) -> str:
        return f"label {self.names[block]}"


def write_function(function: core.Function, line_table: "_LineTable | None" = None,
                   alias_scopes: "_AliasScopes | None" = None) -> str:
    """One function definition or declaration."""
    head = ["define" if function.blocks else "declare"]
    if function.linkage:
        head.append(function.linkage)
    if function.calling_convention:
        head.append(function.calling_convention)
    head.extend(function.return_attributes)
    head.append(str(function.function_type.return_type))
    namer = _Namer(function)
    params = []
    for argument in function.arguments:
        attrs = "".join(f"{a} " for a in argument.attributes)
        params.append(f"{argument.type} {attrs}{namer.ref(argument)}")
    if function.function_type.vararg:
        params.append("...")
    signature = f"{' '.join(head)} @{quote_name(function.name)}({', '.join(params)})"
    # LLVM gives intrinsics their own attributes; writing others would not round-trip.
    if function.attributes and not function.name.startswith("llvm."):
        signature += " " + " ".join(function.attributes)
    if not function.blocks:
        return signature + "\n"
    subprogram = line_table.subprogram(function) if line_table is not None else None
    if subprogram is not None:
        signature += f" !dbg {subprogram}"
    lines = [signature + " {"]
    for block in function.blocks:
        lines.append(namer.names[block][1:] + ":")
        for instruction in block.instructions:
            text = "  " + instruction_text(instruction, namer)
            if subprogram is not None and (instruction.location is not None or isinstance(instruction, core.Call)):
                # LLVM's verifier wants a location on every call in a function with
                # debug info; line 0 means "no source line".
                text += f", !dbg {line_table.location(function, instruction.location)}"
            if alias_scopes is not None and getattr(instruction, "memory", None) is not None:
                text += alias_scopes.attachment(instruction.memory)
            lines.append(text)
    lines.append("}\n")
    return "\n".join(lines)


def _metadata_string(text: str) -> str:
    """A metadata string body: printable ASCII as is, anything else as \\XX escapes."""
    return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else "\\%02X" % b for b in text.encode())


def instruction_texts(function: core.Function) -> dict[core.Instruction, str]:
    """Each instruction of `function` as the writer prints it (names as in `write_function`)."""
    namer = _Namer(function)
    return {i: instruction_text(i, namer) for b in function.blocks for i in b.instructions}


def annotated_function(function: core.Function, annotation) -> str:
    """`function` as LLVM text with `; annotation(instruction)` after each instruction that has one."""
    namer = _Namer(function)
    params = ", ".join(f"{a.type} {namer.ref(a)}" for a in function.arguments)
    lines = [f"define {function.function_type.return_type} @{quote_name(function.name)}({params}) {{"]
    for block in function.blocks:
        lines.append(namer.names[block][1:] + ":")
        for instruction in block.instructions:
            text = "  " + instruction_text(instruction, namer)
            note = annotation(instruction)
            lines.append(f"{text}  ; {note}" if note else text)
    lines.append("}")
    return "\n".join(lines) + "\n"


class _MetadataNodes:
    """The module's numbered metadata nodes (`!N = ...`), shared by the tables below."""

    def __init__(self):
        self.texts: list[str] = []

    def node(self, text: str) -> str:
        """Add a node; `!SELF` in `text` stands for its own number (distinct self-references)."""
        reference = f"!{len(self.texts)}"
        self.texts.append(text.replace("!SELF", reference))
        return reference

    def lines(self) -> list[str]:
        return [f"!{number} = {text}" for number, text in enumerate(self.texts)]


class _AliasScopes:
    """Scoped-noalias metadata for memory labels: one scope per label, in one domain.

    An access labelled L gets `!alias.scope !{L}` and `!noalias` with every
    other label of the module, so LLVM treats accesses with different labels
    as disjoint and assumes nothing about unlabelled ones.
    """

    def __init__(self, module: core.Module, nodes: _MetadataNodes):
        labels = sorted({i.memory for f in module.functions.values() for b in f.blocks for i in b.instructions
                         if isinstance(i, (core.Load, core.Store)) and i.memory is not None})
        self.attachments: dict[str, str] = {}
        if len(labels) < 2:
            return                   # one label: nothing to tell apart
        domain = nodes.node('distinct !{!SELF, !"enzpy memory"}')
        scopes = {label: nodes.node(f'distinct !{{!SELF, {domain}, !"{_metadata_string(label)}"}}')
                  for label in labels}
        for label in labels:
            own = nodes.node(f"!{{{scopes[label]}}}")
            others = nodes.node("!{" + ", ".join(scopes[other] for other in labels if other != label) + "}")
            self.attachments[label] = f", !alias.scope {own}, !noalias {others}"

    def attachment(self, label: str) -> str:
        return self.attachments.get(label, "")


class _LineTable:
    """The least debug info LLVM accepts: files, one subprogram per function, locations."""

    def __init__(self, nodes: _MetadataNodes | None = None):
        self.metadata = nodes or _MetadataNodes()
        self.unit: str | None = None
        self.files: dict[str, str] = {}
        self.subprograms: dict[core.Function, tuple[str, str | None]] = {}
        self.scopes: dict[tuple[core.Function, str | None], str] = {}
        self.locations: dict[tuple[str, int], str] = {}

    def _node(self, text: str) -> str:
        return self.metadata.node(text)

    def _file(self, path: str | None) -> str:
        path = path or "<unknown>"
        if path not in self.files:
            directory, _, name = path.rpartition("/")
            self.files[path] = self._node(f'!DIFile(filename: "{_metadata_string(name)}", '
                                          f'directory: "{_metadata_string(directory)}")')
        return self.files[path]

    def subprogram(self, function: core.Function) -> str | None:
        """The function's `!DISubprogram`, or None when no instruction has a location."""
        located = [i.location for b in function.blocks for i in b.instructions if i.location is not None]
        if not located:
            return None
        if self.unit is None:
            self.unit = self._node(f'distinct !DICompileUnit(language: DW_LANG_Python, file: '
                                   f'{self._file(located[0].file)}, producer: "enzpy", isOptimized: true, '
                                   'runtimeVersion: 0, emissionKind: LineTablesOnly)')
            self.no_types = self._node("!DISubroutineType(types: !{})")
        home = located[0].file
        subprogram = self._node(f'distinct !DISubprogram(name: "{_metadata_string(function.name)}", '
                                f"scope: {self._file(home)}, file: {self._file(home)}, "
                                f"line: {min(l.line for l in located)}, type: {self.no_types}, "
                                f"spFlags: DISPFlagDefinition | DISPFlagOptimized, unit: {self.unit})")
        self.subprograms[function] = (subprogram, home)
        return subprogram

    def location(self, function: core.Function, location: core.SourceLocation | None) -> str:
        subprogram, home = self.subprograms[function]
        file = location.file if location is not None else home
        scope = self.scopes.get((function, file))
        if scope is None:
            # Lines of an inlined callee's file stay inside this subprogram.
            scope = subprogram if file == home else self._node(
                f"!DILexicalBlockFile(scope: {subprogram}, file: {self._file(file)}, discriminator: 0)")
            self.scopes[(function, file)] = scope
        line = location.line if location is not None else 0
        key = (scope, line)
        if key not in self.locations:
            self.locations[key] = self._node(f"!DILocation(line: {line}, column: 0, scope: {scope})")
        return self.locations[key]

    def module_lines(self) -> list[str]:
        if self.unit is None:
            return []
        flags = self._node('!{i32 2, !"Debug Info Version", i32 3}')
        return ["", f"!llvm.dbg.cu = !{{{self.unit}}}", f"!llvm.module.flags = !{{{flags}}}"]


def instruction_text(inst: core.Instruction, namer: _Namer) -> str:
    body = _FORMATTERS[type(inst)](inst, namer)
    if str(inst.type) != "void" and not isinstance(inst, core.Store):
        return f"{namer.ref(inst)} = {body}"
    return body


def _flags(inst) -> str:
    return "".join(f" {f}" for f in getattr(inst, "flags", ()))


def _align(inst) -> str:
    return f", align {inst.align}" if inst.align else ""


def _binary(inst, n):
    lhs, rhs = inst.operands
    return f"{inst.opcode}{_flags(inst)} {n.typed(lhs)}, {n.ref(rhs)}"


def _unary(inst, n):
    return f"{inst.opcode}{_flags(inst)} {n.typed(inst.operands[0])}"


def _cast(inst, n):
    return f"{inst.opcode}{_flags(inst)} {n.typed(inst.operands[0])} to {inst.type}"


def _compare(inst, n):
    lhs, rhs = inst.operands
    return f"{inst.opcode}{_flags(inst)} {inst.predicate} {n.typed(lhs)}, {n.ref(rhs)}"


def _select(inst, n):
    return f"select{_flags(inst)} " + ", ".join(n.typed(o) for o in inst.operands)


def _phi(inst, n):
    incoming = ", ".join(f"[ {n.ref(v)}, {n.names[b]} ]" for v, b in zip(inst.operands, inst.incoming_blocks))
    return f"phi{_flags(inst)} {inst.type} {incoming}"


def _alloca(inst, n):
    count = f", {n.typed(inst.operands[0])}" if inst.operands else ""
    return f"alloca {inst.allocated_type}{count}{_align(inst)}"


def _scope(inst) -> str:
    return f' syncscope("{inst.syncscope}")' if inst.syncscope else ""


def _load(inst, n):
    atomic = " atomic" if inst.ordering else ""
    volatile = " volatile" if inst.volatile else ""
    ordering = f"{_scope(inst)} {inst.ordering}" if inst.ordering else ""
    return f"load{atomic}{volatile} {inst.type}, {n.typed(inst.operands[0])}{ordering}{_align(inst)}"


def _store(inst, n):
    atomic = " atomic" if inst.ordering else ""
    volatile = " volatile" if inst.volatile else ""
    ordering = f"{_scope(inst)} {inst.ordering}" if inst.ordering else ""
    value, pointer = inst.operands
    return f"store{atomic}{volatile} {n.typed(value)}, {n.typed(pointer)}{ordering}{_align(inst)}"


def _gep(inst, n):
    operands = ", ".join(n.typed(o) for o in inst.operands)
    return f"getelementptr{_flags(inst)} {inst.source_type}, {operands}"


def _extractvalue(inst, n):
    return f"extractvalue {n.typed(inst.operands[0])}, " + ", ".join(map(str, inst.indices))


def _insertvalue(inst, n):
    aggregate, element = inst.operands
    return f"insertvalue {n.typed(aggregate)}, {n.typed(element)}, " + ", ".join(map(str, inst.indices))


def _vector(inst, n):
    return f"{inst.opcode} " + ", ".join(n.typed(o) for o in inst.operands)


def _shufflevector(inst, n):
    lanes = ", ".join("i32 poison" if k < 0 else f"i32 {k}" for k in inst.mask)
    a, b = inst.operands
    return f"shufflevector {n.typed(a)}, {n.typed(b)}, <{len(inst.mask)} x i32> <{lanes}>"


def _va_arg(inst, n):
    return f"va_arg {n.typed(inst.operands[0])}, {inst.type}"


def _freeze(inst, n):
    return f"freeze {n.typed(inst.operands[0])}"


def _call(inst, n):
    parts = [inst.tail] if inst.tail else []
    parts.append("call" + _flags(inst))
    if inst.calling_convention:
        parts.append(inst.calling_convention)
    function_type = inst.function_type
    parts.append(str(function_type) if function_type.vararg else str(function_type.return_type))
    attributes = inst.argument_attributes or [()] * len(inst.operands)
    arguments = ", ".join(f"{a.type} {''.join(x + ' ' for x in attrs)}{n.ref(a)}"
                          for a, attrs in zip(inst.operands, attributes))
    callee = n.ref(inst.callee)
    text = " ".join(parts) + f" {callee}({arguments})"
    return text + ("".join(f" {a}" for a in inst.attributes) if inst.attributes else "")


def _atomicrmw(inst, n):
    volatile = " volatile" if inst.volatile else ""
    pointer, value = inst.operands
    return (f"atomicrmw{volatile} {inst.operation} {n.typed(pointer)}, {n.typed(value)}{_scope(inst)} "
            f"{inst.ordering}{_align(inst)}")


def _cmpxchg(inst, n):
    weak = " weak" if inst.weak else ""
    volatile = " volatile" if inst.volatile else ""
    pointer, expected, new = inst.operands
    return (f"cmpxchg{weak}{volatile} {n.typed(pointer)}, {n.typed(expected)}, {n.typed(new)}{_scope(inst)} "
            f"{inst.orderings[0]} {inst.orderings[1]}{_align(inst)}")


def _fence(inst, n):
    return f"fence{_scope(inst)} {inst.ordering}"


def _branch(inst, n):
    if not inst.operands:
        return f"br {n.label(inst.targets[0])}"
    return f"br {n.typed(inst.operands[0])}, {n.label(inst.targets[0])}, {n.label(inst.targets[1])}"


def _switch(inst, n):
    cases = " ".join(f"{typed_constant_text(value)}, {n.label(target)}" for value, target in inst.cases)
    return f"switch {n.typed(inst.operands[0])}, {n.label(inst.default)} [ {cases} ]"


def _return(inst, n):
    return f"ret {n.typed(inst.operands[0])}" if inst.operands else "ret void"


def _unreachable(inst, n):
    return "unreachable"


_FORMATTERS = {
    core.BinaryOperator: _binary, core.UnaryOperator: _unary, core.Cast: _cast,
    core.Compare: _compare, core.Select: _select, core.Phi: _phi, core.Alloca: _alloca,
    core.Load: _load, core.Store: _store, core.GetElementPtr: _gep,
    core.ExtractValue: _extractvalue, core.InsertValue: _insertvalue,
    core.VectorOperation: _vector, core.ExtractElement: _vector, core.InsertElement: _vector,
    core.ShuffleVector: _shufflevector, core.VAArg: _va_arg, core.Freeze: _freeze, core.Call: _call,
    core.AtomicRMW: _atomicrmw, core.CmpXchg: _cmpxchg, core.Fence: _fence, core.Branch: _branch,
    core.Switch: _switch, core.Return: _return, core.Unreachable: _unreachable,
}

