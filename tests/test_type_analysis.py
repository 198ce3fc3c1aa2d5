"""Type analysis: golden annotated IR (tests/analysis/types/*.ll) and conflicts.

Each `NAME.ll` gives its seeds in comments (`; seed %x: []:Pointer, [-1]:Float@double`);
the analysis result for every instruction is printed with `annotated_function`
and compared line by line with `NAME.expected`. Regenerate after an intended
change with ENZPY_REGENERATE_GOLDEN=1 and review the diff.
"""

import re
from pathlib import Path

import pytest

from enzpy import DifferentiationError, Duplicated
from enzpy.analysis.type_analysis import INTEGER, POINTER, Concrete, analyze_types, tree_text
from enzpy.ir import parse_module
from enzpy.ir.types import DOUBLE, FLOAT
from enzpy.ir.writer import annotated_function
from tests.golden import assert_matches_golden

CASES = Path(__file__).parent / "analysis" / "types"
_CONCRETE = {"Pointer": POINTER, "Integer": INTEGER, "Float@double": Concrete("float", DOUBLE),
             "Float@float": Concrete("float", FLOAT)}


def seeds_of(text: str, function) -> dict:
    arguments = {a.name: a for a in function.arguments}
    seeds = {}
    for name, entries in re.findall(r"^; seed %(\S+): (.*)$", text, re.M):
        tree = {}
        for path, concrete in re.findall(r"\[([-\d,]*)\]:(\S+?)(?:,|$)", entries):
            tree[tuple(int(k) for k in path.split(",") if k)] = _CONCRETE[concrete]
        seeds[arguments[name]] = tree
    return seeds


def annotated(path: Path) -> str:
    text = path.read_text()
    module = parse_module(text)
    function = next(f for f in module.functions.values() if f.blocks)
    analysis = analyze_types(function, seeds_of(text, function))
    analysis.check()
    arguments = "".join(f"; %{a.name}: {tree_text(analysis.tree(a))}\n" for a in function.arguments)
    return arguments + annotated_function(function, analysis.annotation)


@pytest.mark.parametrize("path", sorted(CASES.glob("*.ll")), ids=lambda p: p.stem)
def test_type_trees_match_golden(path: Path):
    assert_matches_golden(path, annotated(path))


def test_conflict_names_the_value():
    module = parse_module("""
define i64 @bits(ptr %x) {
  %as.float = load double, ptr %x, align 8
  %as.integer = load i64, ptr %x, align 8
  ret i64 %as.integer
}
""")
    function = module.functions["bits"]
    analysis = analyze_types(function, {})
    # Reading the same bytes as a double and as an integer: AD cannot tell what they are.
    with pytest.raises(DifferentiationError,
                       match=r"type analysis: %(x|as\.\w+) holds (Integer and Float@double|Float@double and Integer)"):
        analysis.check()


def test_memory_float_type_of_a_copy_destination():
    text = (CASES / "memcpy_and_phi.ll").read_text()
    module = parse_module(text)
    function = module.functions["copy"]
    analysis = analyze_types(function, seeds_of(text, function))
    scratch = next(a for a in function.arguments if a.name == "scratch")
    assert analysis.memory_float_type(scratch) == DOUBLE


def test_loose_types_is_an_explicit_opt_in():
    import numba
    import numpy as np

    from enzpy import differentiate

    @numba.njit
    def through_integer_bits(x):
        bits = np.float64(x[0]).view(np.int64)
        return np.int64(bits + 1).view(np.float64)

    x = np.array([1.5, 2.0])
    with pytest.raises(DifferentiationError, match="type analysis"):
        differentiate(through_integer_bits).autodiff(Duplicated(x, np.zeros(2)))
    # Loose: type analysis lets it pass, and the next safety net still refuses the bit hack.
    with pytest.raises(DifferentiationError) as info:
        differentiate(through_integer_bits, loose_types=True).autodiff(Duplicated(x, np.zeros(2)))
    assert "type analysis" not in str(info.value)
