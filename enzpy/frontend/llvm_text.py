"""Surgery on the LLVM text of a foreign (clang) module.

`enzpy opt` must hand back a module the *user's* clang can compile, and that
clang may be older than the LLVM inside llvmlite: LLVM prints newer syntax
(`captures(none)`, `samesign`, one-argument lifetime intrinsics) that an older
parser rejects. So the user's own text is kept byte for byte; only the lines
that call `__enzyme_autodiff` / `__enzyme_fwddiff` are rewritten, the marker
globals get a definition, and the generated code (printed by llvmlite's LLVM)
is appended after being stripped of metadata and attributes and written in
the older spelling (`for_older_llvm`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UnsupportedIRError
from ..ir.text import unquote_name

ENZYME_ENTRY_POINT = re.compile(r"__enzyme_(autodiff|fwddiff|augmentfwd|augmentsize|reverse)")
"""The entry points enzpy implements (`__enzyme_autodiff`, `__enzyme_fwddiff`, split mode's
`__enzyme_augmentfwd` / `__enzyme_reverse` / `__enzyme_augmentsize`, C++ instances of them)."""
_ANY_ENZYME_NAME = re.compile(r"__enzyme_\w+")
_NAME = r'(?:"(?:[^"\\]|\\.)*"|[-a-zA-Z$._0-9]+)'
_DEFINITION = re.compile(rf"^(define|declare)\b[^@]*@({_NAME})\(")
_GLOBAL = re.compile(rf"^@({_NAME}) = ")
_TYPE = re.compile(rf"^%({_NAME}) = type ")
_ATTRIBUTE_GROUP_LINE = re.compile(r"^attributes #(\d+) = ")
_PARAMETER_ATTRIBUTE = re.compile(
    r"(?:noundef|nonnull|noalias|nocapture|readonly|writeonly|readnone|returned|inreg|signext|zeroext"
    r"|nofree|nest|immarg|dead_on_unwind|dead_on_return|writable|swiftself|swifterror|swiftasync|noext"
    r"|align \d+|[a-z_]+\((?:[^()]|\([^()]*\))*\))\s+")


@dataclass
class CallLine:
    """One line of the user's text holding a call to an Enzyme entry point."""

    number: int
    """Index of the line in the module text."""
    indent: str
    """Leading whitespace, kept."""
    result: str | None
    """`%name` the call defines, or None for a call whose result is unused (void)."""
    callee: str
    """The entry point's name (`__enzyme_autodiff`, `__enzyme_autodiff_pair`, ...)."""
    arguments: list[str]
    """Each argument as written: type, attributes, value."""
    kind: str
    """`call`, or `invoke` (C++ with exceptions)."""
    suffix: str
    """What follows the argument list, without attribute groups: `, !dbg !N`, an invoke's labels."""


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at `separator` outside brackets and quotes; parts are stripped."""
    parts, depth, start, quoted = [], 0, 0, False
    for position, character in enumerate(text):
        if character == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif character in "([{<":
            depth += 1
        elif character in ")]}>":
            depth -= 1
        elif character == separator and depth == 0:
            parts.append(text[start:position].strip())
            start = position + 1
    tail = text[start:].strip()
    if tail or parts:
        parts.append(tail)
    return parts


def _closing_parenthesis(text: str, opening: int) -> int:
    depth, quoted = 0, False
    for position in range(opening, len(text)):
        character = text[position]
        if character == '"':
            quoted = not quoted
        elif not quoted and character == "(":
            depth += 1
        elif not quoted and character == ")":
            depth -= 1
            if depth == 0:
                return position
    raise UnsupportedIRError(f"unbalanced parentheses in: {text.strip()}")


def enzyme_call_lines(text: str) -> list[CallLine]:
    """Every call to an Enzyme entry point inside a function body, in module order."""
    found, inside = [], False
    for number, line in enumerate(text.split("\n")):
        if line.startswith("define"):
            inside = True
            continue
        if line.startswith("}"):
            inside = False
            continue
        if not inside or "@" not in line:
            continue
        for match in re.finditer(rf"@({_NAME})\(", line):
            callee = match.group(1).strip('"')
            if not ENZYME_ENTRY_POINT.search(callee):
                continue
            head = line[:match.start()]
            call = re.match(rf"^(\s*)(?:(%{_NAME}) = )?(?:(?:tail|musttail|notail) )?(call|invoke)\b", head)
            if call is None:
                raise UnsupportedIRError(f"@{callee} is used other than by a call: {line.strip()}")
            closing = _closing_parenthesis(line, match.end() - 1)
            suffix = re.sub(r"\s*#\d+", "", line[closing + 1:])
            found.append(CallLine(number, call.group(1), call.group(2), callee,
                                  split_top_level(line[match.end():closing]), call.group(3), suffix))
    return found


@dataclass
class UnknownCall:
    """A call to an `__enzyme_*` function that enzpy does not implement."""

    entry_point: str
    """Its name as the source spells it (`__enzyme_batch`, also for a C++ template instance)."""
    symbol: str
    """The callee's symbol (`_Z14__enzyme_batchIJPdS0_EEdPvDpT_`)."""
    caller: str
    """The function that calls it."""


def entry_point_name(symbol: str) -> str:
    """`_Z14__enzyme_batchIJ...` -> `__enzyme_batch` (the mangled length), `__enzyme_batch` -> itself."""
    if symbol.startswith("_Z"):
        for found in re.finditer(r"(\d+)(__enzyme_)", symbol):
            # The digits before the name are its length (a longer run may end in the length).
            digits = found.group(1)
            for start in range(len(digits)):
                length = int(digits[start:])
                name = symbol[found.start(2):found.start(2) + length]
                if len(name) == length and re.fullmatch(r"__enzyme_\w+", name):
                    return name
    found = _ANY_ENZYME_NAME.search(symbol)
    return found.group(0) if found else symbol


def unknown_enzyme_calls(text: str) -> list[UnknownCall]:
    """Calls, in module order, to `__enzyme_*` functions other than the ones enzpy implements.

    Enzyme reads `__enzyme_batch`, `__enzyme_augmentfwd`, `__enzyme_truncate_*` ...
    as requests; left in the output they are undefined symbols the linker reports.
    """
    found, caller = [], None
    for line in text.split("\n"):
        if line.startswith("define"):
            caller = unquote_name("@" + _DEFINITION.match(line).group(2))
            continue
        if line.startswith("}"):
            caller = None
            continue
        if caller is None or "__enzyme_" not in line:
            continue
        for match in re.finditer(rf"@({_NAME})\(", line):
            callee = unquote_name("@" + match.group(1))
            if "__enzyme_" not in callee or ENZYME_ENTRY_POINT.search(callee):
                continue
            if re.search(r"\b(?:call|invoke)\b", line[:match.start()]):
                found.append(UnknownCall(entry_point_name(callee), callee, caller))
    return found


def argument_value(argument: str, type_text: str) -> str:
    """`ptr noundef nonnull align 16 %1` (of type `ptr`) -> `%1`: the value without type and attributes."""
    if not argument.startswith(type_text):
        raise UnsupportedIRError(f"argument {argument!r} does not start with its type {type_text!r}")
    rest = argument[len(type_text):].lstrip()
    while True:
        match = _PARAMETER_ATTRIBUTE.match(rest)
        # An attribute is followed by more text; what is left at the end is the value
        # (which may itself be a word such as `null` or `getelementptr (...)`).
        if match is None or not rest[match.end():].strip():
            return rest.strip()
        rest = rest[match.end():]


def replace_call_lines(text: str, replacements: dict[int, str]) -> str:
    lines = text.split("\n")
    for number, line in replacements.items():
        lines[number] = line
    return "\n".join(lines)


def define_marker_globals(text: str, names) -> str:
    """Give declared marker globals (`extern int enzyme_dup;`) a definition.

    The loads that fed the markers to __enzyme_autodiff stay in the caller,
    now unused; without a definition an -O0 build would fail to link. The
    definition is `linkonce`: one from another file, or the user's own, wins.
    """
    def define(match):
        line = match.group(0)
        if " external " not in line and not line.split("=", 1)[1].lstrip().startswith("external "):
            return line
        line = re.sub(r"\bexternal\b", "linkonce", line, count=1)
        return re.sub(r"\bglobal i32\b", "global i32 0", line, count=1)

    for name in names:
        text = re.sub(rf"^@{re.escape(name)} = [^\n]*$", define, text, flags=re.M)
    return text


def defined_symbols(text: str) -> tuple[set[str], set[str]]:
    """(global symbol names, named struct type names) a module's text defines or declares."""
    symbols, types = set(), set()
    for line in text.split("\n"):
        match = _DEFINITION.match(line) or _GLOBAL.match(line)
        if match:
            symbols.add(match.groups()[-1].strip('"'))
        elif (match := _TYPE.match(line)) is not None:
            types.add(match.group(1).strip('"'))
    return symbols, types


# ---------------------------------------------------------------- newer LLVM -> older LLVM

_DROPPED_LINES = re.compile(r"^\s*(;|!|attributes #|#dbg_|source_filename|target |\$\S+ = comdat)"
                            r"|@llvm\.(lifetime|dbg)\.|@llvm\.experimental\.noalias\.scope\.decl")
# Spellings newer than LLVM 19 (Debian's clang-19), with their older equivalent.
_DOWNGRADES = (
    (re.compile(r"\bcaptures\(none\)"), "nocapture"),
    (re.compile(r"\bcaptures\([^)]*\)\s*"), ""),
    (re.compile(r"\binitializes\((?:\([^()]*\)(?:,\s*)?)+\)\s*"), ""),
    (re.compile(r"\b(nocreateundeforpoison|dead_on_return|samesign)\s+"), ""),
)


def for_older_llvm(text: str) -> str:
    """Generated code as an older LLVM parses it: no metadata, attribute groups or comdats.

    Dropping these is always sound: metadata and function attributes are
    hints, lifetime markers only bound when a slot may be reused, and the
    older LLVM re-derives what it needs when it compiles the module.
    """
    lines = []
    for line in text.split("\n"):
        if not line.strip() or _DROPPED_LINES.search(line):
            continue
        line = re.sub(r",?\s+!(?:[A-Za-z_.][-\w.]*) !\d+", "", line)            # metadata attachments
        if line.startswith(("define", "declare")) or re.search(r"\b(call|invoke)\b", line):
            line = re.sub(r"\s#\d+(?=\s|$|,)", "", line)                       # attribute group references
            line = re.sub(r",?\s*comdat(\(\$[^)]*\))?", "", line)
        for pattern, replacement in _DOWNGRADES:
            line = pattern.sub(replacement, line)
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class TopLevel:
    """One top-level entity of a module's text."""

    kind: str
    """`type`, `global`, `define` or `declare`."""
    name: str
    """Its name without sigil or quotes."""
    text: str
    """All its lines."""


def top_level_entities(text: str) -> list[TopLevel]:
    """Types, globals and functions of a module's text (metadata and attributes dropped)."""
    entities, lines, index = [], text.split("\n"), 0
    while index < len(lines):
        line = lines[index]
        if (match := _DEFINITION.match(line)) is not None:
            kind, name = match.group(1), match.group(2).strip('"')
            if kind == "define":
                end = index
                while not lines[end].startswith("}"):
                    end += 1
                entities.append(TopLevel(kind, name, "\n".join(lines[index:end + 1])))
                index = end + 1
                continue
            entities.append(TopLevel(kind, name, line))
        elif (match := _GLOBAL.match(line)) is not None:
            entities.append(TopLevel("global", match.group(1).strip('"'), line))
        elif (match := _TYPE.match(line)) is not None:
            entities.append(TopLevel("type", match.group(1).strip('"'), line))
        index += 1
    return entities


def append_generated(user_text: str, *generated_texts: str) -> str:
    """The user's text with the generated entities it does not already have appended.

    The generated modules were made from the user's, so a name both have is the
    user's entity (a declaration in the generated module); everything a
    generated module added under a fresh name is appended. The user's text is
    scanned once, however many modules are appended.
    """
    symbols, types = defined_symbols(user_text)
    added = []
    for generated_text in generated_texts:
        for entity in top_level_entities(generated_text):
            known = types if entity.kind == "type" else symbols
            if entity.name in known:
                continue
            known.add(entity.name)
            added.append(entity.text)
    if not added:
        return user_text
    return user_text.rstrip("\n") + "\n\n; ---- added by enzpy ----\n" + "\n\n".join(added) + "\n"


_SHUFFLE = re.compile(rf"^(\s*)(%{_NAME}) = shufflevector (.*?)(?:,\s*!.*)?$")


def _vector_lanes(typed: str) -> tuple[str, int, str, str]:
    """`<2 x double> %v` -> ("<2 x double>", 2, "double", "%v")."""
    closing = typed.index(">")
    vector_type = typed[:closing + 1]
    count, element = vector_type[1:-1].split(" x ", 1)
    return vector_type, int(count), element.strip(), typed[closing + 1:].strip()


def _mask_lanes(mask: str, count: int) -> list[int | None]:
    if mask in ("zeroinitializer", "splat (i32 0)"):
        return [0] * count
    if mask in ("poison", "undef"):
        return [None] * count
    if mask.startswith("splat"):
        return [int(mask.split()[-1].rstrip(")"))] * count
    lanes = [part.split()[-1] for part in split_top_level(mask.strip()[1:-1])]
    return [None if lane in ("poison", "undef") else int(lane) for lane in lanes]


def expand_shufflevectors(text: str) -> str:
    """Each `shufflevector` rewritten as extractelement / insertelement of its lanes.

    The enzpy reader does not take shufflevector (its mask is no LLVM
    operand); clang's vectorizer makes one for every splat. The lanes it
    picks are spelled out, which `vectors.py` then scalarizes like the rest.
    """
    lines, counter = [], 0
    for line in text.split("\n"):
        match = _SHUFFLE.match(line)
        if match is None:
            lines.append(line)
            continue
        indent, result, body = match.groups()
        first, second, mask = split_top_level(body)
        source_type, count, element, first_value = _vector_lanes(first)
        second_value = _vector_lanes(second)[3]
        mask_type, mask_count, _, mask_value = _vector_lanes(mask)
        result_type = f"<{mask_count} x {element}>"
        current, picks = "poison", [(k, lane) for k, lane in enumerate(_mask_lanes(mask_value, mask_count))
                                    if lane is not None]
        if not picks:
            lines.append(f"{indent}{result} = insertelement {result_type} poison, {element} poison, i64 0")
            continue
        for position, (k, lane) in enumerate(picks):
            counter += 1
            value = first_value if lane < count else second_value
            lane_value = f"%enzpy.shuffle.{counter}"
            lines.append(f"{indent}{lane_value} = extractelement {source_type} {value}, i64 {lane % count}")
            target = result if position == len(picks) - 1 else f"%enzpy.shuffle.{counter}.into"
            lines.append(f"{indent}{target} = insertelement {result_type} {current}, {element} {lane_value}, i64 {k}")
            current = target
    return "\n".join(lines)


_CALL_RETURN_ATTRIBUTES = re.compile(
    r"\b((?:tail |musttail |notail )?call(?: (?:fast|nnan|ninf|nsz|arcp|contract|afn|reassoc))*(?: \w+cc)?)"
    r"((?: (?:noundef|nonnull|noalias|zeroext|signext|inreg|align \d+|(?:nofpclass|range|dereferenceable"
    r"|dereferenceable_or_null)\([^()]*\)))+)(?= )")


def without_call_return_attributes(text: str) -> str:
    """Calls without attributes on their result (`call nofpclass(nan inf) double @f(...)`).

    They are hints; the enzpy reader takes a call's attribute sets from
    llvmlite, which mixes result attributes in with the function's.
    """
    return _CALL_RETURN_ATTRIBUTES.sub(r"\1", text)


def without_lifetime_markers(text: str) -> str:
    """No `llvm.lifetime.start/end` calls: the reverse sweep re-reads stack arrays after their end.

    Dropping them is always sound (they only let a slot be reused).
    """
    return re.sub(r"^\s*(?:tail |notail )?call void @llvm\.lifetime\.(?:start|end)\.[^\n]*\n", "", text, flags=re.M)


def without_inlining_barriers(text: str) -> str:
    """Attribute groups without what stops inlining into enzpy's adapter.

    clang -O0 puts `noinline` and `optnone` on every function, and a callee
    whose target features the caller lacks (`-march=...`) is not inlined.
    """
    def clean(match):
        group = re.sub(r"\b(noinline|optnone)\s", "", match.group(0))
        return re.sub(r'"(target-cpu|target-features|tune-cpu)"="[^"]*"\s?', "", group)

    return re.sub(r"^attributes #\d+ = \{[^\n]*\}$", clean, text, flags=re.M)


def without_global_debug_attachments(text: str) -> str:
    """Global variable lines without `, !dbg !N` (`-g` output), which the enzpy reader does not take."""
    return re.sub(r"^(@[^\n]*?)(?:, !dbg !\d+)+$", r"\1", text, flags=re.M)
