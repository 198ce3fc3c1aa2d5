"""Enzyme features beyond the two entry points: implemented, harmless, or refused by name.

A C program written for Enzyme may ask for more than `__enzyme_autodiff` /
`__enzyme_fwddiff`. Each request enzpy cannot honour changes the derivative
(or breaks the link) when it is ignored, so it is an error naming the feature
and the function (exit 2); what enzpy already does the way Enzyme would is
accepted. What a module can ask for, as plain clang writes it:

- other `__enzyme_*` entry points (`__enzyme_virtualreverse`, `__enzyme_fwdsplit`,
  `__enzyme_batch`, ...): refused up front, naming the
  entry point and its caller (`refuse_unknown_entry_points`);
- registrations, globals whose name contains a keyword (Enzyme's own test
  is `contains`, so C++'s `_ZL..` spellings and plugin `_autoreg_` suffixes
  count) and whose initializer names the function or global they are about
  (`REGISTRATIONS`): custom derivatives, `enzyme_inactive` functions,
  `__enzyme_function_like`, allocators, shadow globals are refused when the
  derivative may use their subject (`refuse_unhonoured_features`);
  `__enzyme_inactive_global` is what enzpy does to every global (no shadow:
  its memory is constant to the derivative), and hints that do not change a
  derivative (`__enzyme_nofree`, ...) are accepted;
- the gradient logger: a module with `enzymeLogGrad` / `enzymeLogValue` /
  `enzymeLogError` expects the derivatives to call them; refused.

`__attribute__((enzyme_inactive))` and the other Enzyme attributes reach the
IR only through Enzyme's clang plugin (which turns them into the
registrations above); plain clang drops them with a `-Wunknown-attributes`
warning, so nothing of them is left for enzpy to see. The global spelling
(`void *__enzyme_inactivefn[] = {(void *)f};`) is what enzpy reads.

Markers passed by address (`&enzyme_const`, as C++ templates pass them:
the call's operand is the global itself rather than a load of it) are read
by `marker_of_argument`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import EnzpyError
from ..ir.text import decode_c_string, unquote_name
from . import llvm_text
from .module_text import ModuleText


class ForeignCodeError(EnzpyError):
    """A C program asks for something enzpy cannot do (bad markers, unsupported signature)."""


# ---------------------------------------------------------------- entry points

UNIMPLEMENTED_ENTRY_POINTS = {
    "__enzyme_virtualreverse": "split reverse mode through a function pointer",
    "__enzyme_fwdsplit": "split forward mode",
    "__enzyme_batch": "batched (vector) derivatives", "__enzyme_error_estimate": "floating-point error estimation",
    "__enzyme_truncate": "precision truncation", "__enzyme_expand": "precision truncation",
}
"""What the entry points enzpy refuses are for, named in the message."""


def refuse_unknown_entry_points(text: str) -> None:
    """A call to an `__enzyme_*` function other than autodiff / fwddiff is an error naming it and its caller.

    Left in the output, it would be an undefined symbol only the linker reports.
    The message names the first call (its entry point as the source spells it,
    the symbol when C++ mangled it, and the calling function), then the other
    distinct (entry point, caller) pairs.
    """
    unknown = llvm_text.unknown_enzyme_calls(text)
    if not unknown:
        return
    first = unknown[0]
    what = next((f" ({v})" for k, v in UNIMPLEMENTED_ENTRY_POINTS.items() if first.entry_point.startswith(k)), "")
    symbol = f" (@{first.symbol})" if first.symbol != first.entry_point else ""
    others = list(dict.fromkeys((call.entry_point, call.caller) for call in unknown[1:]
                                if (call.entry_point, call.caller) != (first.entry_point, first.caller)))
    more = ""
    if others:
        shown = ", ".join(f"{entry_point} in @{caller}" for entry_point, caller in others[:5])
        more = f"; also {shown}" + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    raise ForeignCodeError(f"@{first.caller} calls {first.entry_point}{symbol}, which enzpy does not implement"
                           f"{what}: enzpy implements __enzyme_autodiff, __enzyme_fwddiff and split mode's "
                           f"__enzyme_augmentfwd / __enzyme_reverse / __enzyme_augmentsize{more}")


# ---------------------------------------------------------------- markers

_MARKER_ADDRESS = re.compile(r'\bptr\b.*\s@("?enzyme_[-\w$.]+"?)\s*$')


def marker_of_argument(argument: str, marker_loads: dict[str, str]) -> str | None:
    """The marker an argument of an Enzyme call passes (`enzyme_dup`), or None for a value.

    `argument` is its text (`i32 noundef %4`, `ptr noundef nonnull @enzyme_const`),
    `marker_loads` maps the registers that load a marker global to its name. C
    passes the marker's value (a load); C++ templates declared with `int *`
    parameters pass its address (the global itself).
    """
    value = argument.rsplit(None, 1)[-1] if argument else ""
    if value.startswith("%"):
        return marker_loads.get(value)
    found = _MARKER_ADDRESS.search(argument)
    return unquote_name("@" + found.group(1)) if found else None


# ---------------------------------------------------------------- registrations

@dataclass(frozen=True)
class Registration:
    """What a registration global asks Enzyme to do, and whether enzpy refuses it."""

    keyword: str
    """What the global's name contains (`__enzyme_register_gradient`)."""
    meaning: str
    """What it does to its subject, as the message says it (`has a custom derivative`)."""
    refused: bool = True
    """False: enzpy already does what it asks (or it is a hint that changes no derivative)."""
    why_accepted: str = ""
    """For accepted ones: why ignoring it gives Enzyme's derivative."""


REGISTRATIONS = (
    Registration("__enzyme_register_gradient", "has a custom derivative"),
    Registration("__enzyme_register_derivative", "has a custom forward derivative"),
    Registration("__enzyme_register_splitderivative", "has a custom split derivative"),
    Registration("__enzyme_inactivefn", "is marked inactive (enzyme_inactive)"),
    Registration("__enzyme_inactivenoblockfn", "is marked inactive (enzyme_inactive)"),
    Registration("__enzyme_function_like", "is declared to behave like {like}"),
    Registration("__enzyme_allocation_like", "is declared an allocator"),
    Registration("__enzyme_shadow_global", "has a shadow global"),
    Registration("__enzyme_inactive_global", "is inactive", refused=False,
                 why_accepted="enzpy gives no global a shadow: its memory is constant to every derivative"),
    Registration("__enzyme_nofree", "frees nothing", refused=False, why_accepted="a hint"),
    Registration("__enzyme_no_escaping_allocation", "lets no allocation escape", refused=False,
                 why_accepted="a hint"),
    Registration("__enzyme_shouldrecompute", "is to be recomputed", refused=False,
                 why_accepted="a hint on caching, not on values"),
    Registration("__enzyme_sparse_accumulate", "accumulates sparsely", refused=False,
                 why_accepted="a hint on how adjoints are added, not on their values"),
)

_SYMBOL = re.compile(r'@(?:"(?:[^"\\]|\\.)*"|[-\w$.]+)')
_STRING_CONSTANT = re.compile(r'\bconstant \[\d+ x i8\] c"((?:[^"\\]|\\.)*)"')
_NOINLINE = re.compile(r"\b(?:noinline|optnone)\b")
GRADIENT_LOGGER = ("enzymeLogGrad", "enzymeLogValue", "enzymeLogError")
"""Functions Enzyme's derivatives call with each adjoint and value when the module has them."""


@dataclass(frozen=True)
class Registered:
    """One registration global of the module."""

    name: str
    """The global (`__enzyme_register_gradient_square`)."""
    kind: Registration
    subject: str | None
    """The function or global it is about (its initializer's first symbol); None when it names none."""
    like: str = ""
    """For `__enzyme_function_like`: the function its subject behaves like (`sin`)."""


def registrations(index: ModuleText) -> list[Registered]:
    """The module's registration globals, in module order."""
    found = []
    for name, line_number in index.globals.items():
        if "__enzyme_" not in name:
            continue
        kind = next((k for k in REGISTRATIONS if k.keyword in name), None)
        if kind is None:
            continue
        line = index.lines[line_number]
        symbols = [unquote_name(m.group(0)) for m in _SYMBOL.finditer(line.split(" = ", 1)[1])]
        like = ""
        if kind.keyword == "__enzyme_function_like" and len(symbols) > 1 and symbols[1] in index.globals:
            string = _STRING_CONSTANT.search(index.lines[index.globals[symbols[1]]])
            if string is not None:
                like = decode_c_string(string.group(1)).rstrip(b"\0").decode("latin-1")
        found.append(Registered(name, kind, symbols[0] if symbols else None, like))
    return found


def _may_be_inlined(index: ModuleText, function: str) -> bool:
    """Whether clang may have inlined `function` into its callers before enzpy saw the module.

    clang -O0 marks every function `noinline optnone`; from -O1 on, a small
    function is inlined and its callers no longer mention it, so what the
    derivative reaches cannot say whether it runs the function's code.
    """
    if function not in index.functions:
        return False                                  # only declared: nothing to inline
    # Function attributes follow the parameter list: inline keywords or `#N` groups.
    attributes = index.lines[index.functions[function][0]].rsplit(")", 1)[-1]
    groups = " ".join(index.attribute_group(int(group)) for group in re.findall(r"#(\d+)", attributes))
    return _NOINLINE.search(attributes + " " + groups) is None


def refuse_unhonoured_features(index: ModuleText, function: str, mode: str) -> None:
    """An error naming the feature and the function when the module asks Enzyme for what enzpy ignores.

    A registration is refused when the derivative of `function` reaches its
    subject, or when its subject is a function clang may have inlined into the
    code the derivative runs (`_may_be_inlined`, from -O1 on): enzpy would
    differentiate the function's own code instead, a different derivative
    than the program asked for. The gradient logger is refused for every
    derivative.
    """
    where = f"[differentiating @{function} in {mode} mode]"
    logger = sorted(name for name in (*index.functions, *index.declarations)
                    if any(hook in name for hook in GRADIENT_LOGGER))
    if logger:
        raise ForeignCodeError(f"the module has @{logger[0]}, Enzyme's gradient logger, which Enzyme's derivatives "
                               "call with each adjoint they compute; enzpy's derivatives do not call it (remove "
                               f"the logger or do not rely on its calls) {where}")
    reached = None
    for registered in registrations(index):
        if not registered.kind.refused:
            continue
        meaning = registered.kind.meaning.format(like=registered.like or "another function")
        if registered.subject is None:
            raise ForeignCodeError(f"@{registered.name} names no function or global (its initializer must be "
                                   f"a constant, as Enzyme requires) {where}")
        reached = reached if reached is not None else index.reach([function])
        subject = registered.subject
        if subject in reached:
            reaches = "" if subject == function else f", which @{function} reaches,"
            raise ForeignCodeError(f"@{subject}{reaches} {meaning} (@{registered.name}), which enzpy does not "
                                   f"implement: it would differentiate @{subject}'s own code instead {where}")
        if _may_be_inlined(index, subject):
            raise ForeignCodeError(
                f"@{subject} {meaning} (@{registered.name}), which enzpy does not implement, and clang may have "
                f"inlined @{subject} into the code @{function} runs (it is not noinline; clang inlines from -O1 "
                f"on), where enzpy would differentiate its code instead: mark @{subject} "
                f"__attribute__((noinline)) or compile with -O0 {where}")


def feature_notes(index: ModuleText, function: str) -> str:
    """A note for an AD error: globals the derivative reaches that the program registered inactive.

    enzpy reads them as constants, as Enzyme does, but refuses a derivative
    stored into one (Enzyme would drop it).
    """
    reached = index.reach([function])
    inactive = sorted({r.subject for r in registrations(index)
                       if r.kind.keyword == "__enzyme_inactive_global" and r.subject in reached})
    if not inactive:
        return ""
    return (f"; note: {', '.join('@' + name for name in inactive)} registered inactive "
            "(__enzyme_inactive_global): enzpy reads such a global as a constant but does not drop a "
            "derivative stored into it")
