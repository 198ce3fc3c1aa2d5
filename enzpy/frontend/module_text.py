"""A foreign module's text indexed once: its entities, what each mentions, and slices of it.

`enzpy opt` differentiates a handful of functions of a program that may hold
thousands (a C++ test file with its whole checking library). Everything it
does per derivative must cost what the differentiated function reaches, not
what the module holds: the pre-AD pipeline inlines every callee into every
caller, so run over the whole module it inlined the program's own call trees
into each other (Enzyme's `blas.cpp`: minutes in `always_inliner`, before any
AD), once per derivative.

`ModuleText` splits the text into top-level entities in one pass and records,
for each function and global, the `@names` its text mentions (callees,
function pointers, globals, initializers). From that:

- `reach(roots)`: the functions, globals and declarations the roots reach;
- `reaching(targets)`: the defined functions that reach a target through
  what function bodies (and aliases) mention, not through global variables'
  initializers (which differentiated functions reach an Enzyme call: nested
  rounds; a vtable naming every method would make every method reach every
  other);
- `slice(roots)`: the module's text with only what the roots reach: their
  definitions and declarations, the comdats they name, and the metadata
  nodes their lines reach (`!dbg` locations of the rest of a `-g` program are
  most of its text). Types, attribute groups, named metadata and the module's
  own lines (triple, data layout, `module asm`) stay as they are; a name a
  kept metadata line mentions but the slice drops becomes an external
  declaration. Comments and top-level `uselistorder` directives, which may
  name dropped values, are left out (they only order use lists).

Building the index is linear in the text; a slice costs what it keeps (the
lines every slice has, then the reached entities and metadata, in module
order).
"""

from __future__ import annotations

import bisect
import re

from ..ir.text import unquote_name
from ..ir.types import quote_name

_NAME = r'(?:"(?:[^"\\]|\\.)*"|[-a-zA-Z$._0-9]+)'
_REFERENCE = re.compile(rf"@{_NAME}")
_DEFINE = re.compile(rf"^define\b[^@]*(@{_NAME})\(")
_DECLARE = re.compile(rf"^declare\b[^@]*(@{_NAME})\(")
_GLOBAL = re.compile(rf"^(@{_NAME}) = ")
_COMDAT_LINE = re.compile(rf"^\$({_NAME}) = comdat ")
_COMDAT_USE = re.compile(rf"\bcomdat(?:\(\$({_NAME})\))?")
_METADATA_NODE = re.compile(r"^!(\d+) = ")
_METADATA_REFERENCE = re.compile(r"!(\d+)\b")
_ATTRIBUTE_GROUP = re.compile(r"^attributes #(\d+) = \{(.*)\}\s*$")
_ALIAS = re.compile(r"^(?:[-\w]+ |\w+\([^)]*\) )*(?:alias|ifunc) ")


def _mentioned(text: str) -> set[str]:
    return {unquote_name(match.group(0)) for match in _REFERENCE.finditer(text)} if "@" in text else set()


def _comdat_name(name: str, line: str) -> str | None:
    """The comdat a definition or global line joins (`comdat` alone: its own name), or None."""
    if "comdat" not in line:
        return None
    found = _COMDAT_USE.search(line)
    if found is None:
        return None
    return unquote_name("$" + found.group(1)) if found.group(1) else name


class ModuleText:
    """The top-level entities of an LLVM module's text (one pass over its lines)."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.functions: dict[str, tuple[int, int]] = {}
        """Defined function -> (first line, last line `}`) of its definition."""
        self.declarations: dict[str, int] = {}
        """Declared (not defined) function -> its line."""
        self.globals: dict[str, int] = {}
        """Global variable, alias or ifunc -> its line."""
        self.mentions: dict[str, set[str]] = {}
        """Function or global -> the `@names` its text mentions (not its own name)."""
        self.variables: set[str] = set()
        """The globals that are variables (not aliases or ifuncs)."""
        self._kept: list[int] = []
        """Lines every slice has: source_filename, target, types, attribute groups, named metadata,
        module asm."""
        self._comdats: dict[str, int] = {}
        """Comdat -> its `$name = comdat ...` line."""
        self._metadata: dict[int, int] = {}
        """Numbered metadata node -> its line."""
        self._attribute_groups: dict[int, str] | None = None
        """Attribute group number -> its attributes, read when first asked for."""
        self._starts: list[int] = []
        self._names: list[str] = []
        lines, index = self.lines, 0
        while index < len(lines):
            line = lines[index]
            first = line[:1]
            if first == "d" and line.startswith("define"):
                name = unquote_name(_DEFINE.match(line).group(1))
                end = index
                mentioned = _mentioned(line.split("(", 1)[1])         # personality, prefix data
                while not lines[end].startswith("}"):
                    end += 1
                    if "@" in lines[end] and not lines[end].lstrip().startswith(";"):
                        mentioned |= _mentioned(lines[end])
                mentioned.discard(name)
                self.functions[name] = (index, end)
                self.mentions[name] = mentioned
                self._starts.append(index)
                self._names.append(name)
                index = end + 1
                continue
            if first == "d" and line.startswith("declare"):
                self.declarations[unquote_name(_DECLARE.match(line).group(1))] = index
            elif first == "@":
                found = _GLOBAL.match(line)
                name = unquote_name(found.group(1))
                self.globals[name] = index
                self.mentions[name] = _mentioned(line[found.end():]) - {name}
                if _ALIAS.match(line[found.end():]) is None:
                    self.variables.add(name)
            elif first == "!":
                node = _METADATA_NODE.match(line)
                if node is not None:
                    self._metadata[int(node.group(1))] = index
                else:
                    self._kept.append(index)                          # !llvm.module.flags = !{...}
            elif first == "$":
                found = _COMDAT_LINE.match(line)
                if found is not None:
                    self._comdats[unquote_name("$" + found.group(1))] = index
                else:
                    self._kept.append(index)
            elif first not in ("", ";") and not line.startswith("uselistorder") and line.strip():
                self._kept.append(index)
            index += 1

    def attribute_group(self, number: int) -> str:
        """The text of `attributes #number = { ... }` ("" when the module has no such group)."""
        if self._attribute_groups is None:
            self._attribute_groups = {}
            for index in self._kept:
                found = _ATTRIBUTE_GROUP.match(self.lines[index])
                if found is not None:
                    self._attribute_groups[int(found.group(1))] = found.group(2)
        return self._attribute_groups.get(number, "")

    def function_at(self, line_number: int) -> str | None:
        """The defined function whose body holds line `line_number`."""
        position = bisect.bisect_right(self._starts, line_number) - 1
        if position < 0:
            return None
        name = self._names[position]
        return name if line_number <= self.functions[name][1] else None

    def body(self, name: str) -> list[str]:
        """The lines of a defined function, header and closing brace included."""
        first, last = self.functions[name]
        return self.lines[first:last + 1]

    def reach(self, roots) -> set[str]:
        """The functions and globals `roots` reach through what their text mentions (roots included)."""
        reached, pending = set(), list(roots)
        while pending:
            name = pending.pop()
            if name not in reached:
                reached.add(name)
                pending.extend(self.mentions.get(name, ()))
        return reached

    def reaching(self, targets) -> set[str]:
        """The defined functions that reach one of `targets` (targets among them), not through variables."""
        mentioned_by: dict[str, list[str]] = {}
        for name, mentioned in self.mentions.items():
            if name in self.variables:
                continue
            for other in mentioned:
                mentioned_by.setdefault(other, []).append(name)
        reached, pending = set(), list(targets)
        while pending:
            name = pending.pop()
            if name not in reached:
                reached.add(name)
                pending.extend(mentioned_by.get(name, ()))
        return reached & self.functions.keys()

    def slice(self, roots) -> str:
        """The text with only what `roots` reach (module docstring), in module order."""
        lines = self.lines
        kept = self.reach(roots)
        spans = [(line, line) for line in self._kept]
        comdats = set()
        for name in kept:
            if name in self.functions:
                first, last = self.functions[name]
            elif name in self.globals:
                first = last = self.globals[name]
            elif name in self.declarations:
                first = last = self.declarations[name]
            else:
                continue
            spans.append((first, last))
            comdat = _comdat_name(name, lines[first])
            if comdat is not None and comdat in self._comdats:
                comdats.add(comdat)
        spans.extend((self._comdats[name], self._comdats[name]) for name in comdats)
        # Metadata the kept lines reach, node by node.
        nodes, pending = set(), []
        for first, last in spans:
            for line in lines[first:last + 1]:
                if "!" in line:
                    pending.extend(int(n) for n in _METADATA_REFERENCE.findall(line))
        mentioned_by_metadata = set()
        while pending:
            node = pending.pop()
            if node in nodes or node not in self._metadata:
                continue
            nodes.add(node)
            line = lines[self._metadata[node]]
            pending.extend(int(n) for n in _METADATA_REFERENCE.findall(line))
            if "@" in line:
                mentioned_by_metadata |= _mentioned(line)
        for first, last in spans:
            if lines[first].startswith("!") and "@" in lines[first]:
                mentioned_by_metadata |= _mentioned(lines[first])
        spans.extend((self._metadata[node],) * 2 for node in nodes)
        # What metadata names but the slice dropped: declarations come along, definitions become external.
        missing = []
        for name in sorted(mentioned_by_metadata - kept):
            if name in self.declarations:
                spans.append((self.declarations[name],) * 2)
            elif name in self.functions or name in self.globals:
                missing.append(f"@{quote_name(name)} = external global i8")
        pieces = []
        for first, last in sorted(spans):
            pieces.extend(lines[first:last + 1])
        pieces.extend(missing)
        return "\n".join(pieces)
