"""What a C program asks for: one derivative request per distinct Enzyme call (`clang.py` reads them)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..ir.types import VOID, Type
from .split_mode import SplitCall
from .struct_arguments import StructPassing

MARKERS = {"enzyme_dup": "dup", "enzyme_dupnoneed": "dupnoneed", "enzyme_const": "const", "enzyme_out": "out"}
ACTIVITIES = ("dup", "dupnoneed", "const", "out")


@dataclass(frozen=True)
class Request:
    """One derivative to generate: the function, the activities, and the interface's types."""

    function: str
    """Name of the differentiated function."""
    mode: str
    """`reverse` or `forward`; split mode's `augmented`, `split reverse` and `tape size` (`split_mode`)."""
    activities: tuple[str, ...]
    """One of ACTIVITIES per parameter."""
    argument_types: tuple[Type, ...]
    """Parameter types of the interface, in order (sret pointer first when there is one)."""
    return_type: Type
    """Result type of the interface."""
    sret_type: Type | None = None
    """Struct the `out` derivatives are stored into through the first parameter (large C structs)."""
    passing: tuple[StructPassing | None, ...] = ()
    """Per parameter of the adapter (empty: none): how a struct passed by value reaches the function
    (`struct_arguments`); such a parameter is a pointer to the struct."""
    distinct_pointers: bool = False
    """Every pointer the call passes points into an object of its own (a distinct stack array, global
    or heap block of the caller): the function's pointer parameters are then `noalias`."""
    width: int = 1
    """`enzyme_width`: forward mode's directions at once (each shadow and tangent given `width` times)."""
    split: SplitCall | None = None
    """A split-mode call: where it passes the tape and the result's differential."""
    pointer_outputs: bool = False
    """`enzpy grad`'s interface: each `out` parameter is followed by a pointer its derivative is added
    into, and a float result is seeded by a last parameter, instead of Enzyme's returned derivatives."""

    @property
    def base_mode(self) -> str:
        """`forward` or `reverse`: split mode's calls are halves of reverse mode."""
        return "forward" if self.mode == "forward" else "reverse"

    @property
    def derivative_key(self) -> Request:
        """What the derivative depends on: one piece serves the split-mode calls that share it."""
        if self.split is None:
            return self
        return replace(self, mode="split", argument_types=(), return_type=VOID, sret_type=None, split=None)
