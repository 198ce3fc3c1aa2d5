"""Golden tests of the analyses reverse mode runs, one `.ll` per case in tests/analysis/.

Each `NAME.ll` says in comments which parameters are duplicated (`; duplicated: 2`)
or active (`; active: 3`), whether the result stored through retptr is
seeded (`; returns: double`) and whether pointer parameters may be assumed not
to overlap (`; distinct arguments`). The function is differentiated as is (no
pipeline), and its instructions printed with what activity analysis and cache
minimization decided; `NAME.expected` holds that listing, compared line by
line. Regenerate after an intended change with ENZPY_REGENERATE_GOLDEN=1 and
review the diff.
"""

import re
from pathlib import Path

import pytest

from enzpy.ad.reverse import ReverseSpec, build_reverse, reverse_report
from enzpy.ir import parse_module
from enzpy.ir.types import DOUBLE
from enzpy.ir.writer import annotated_function
from tests.golden import assert_matches_golden

CASES = Path(__file__).parent / "analysis"


def spec_of(text: str) -> ReverseSpec:
    def indices(key):
        found = re.search(rf"^; {key}: ([\d, ]+)$", text, re.M)
        return tuple(int(i) for i in found.group(1).split(",")) if found else ()

    duplicated = indices("duplicated")
    return ReverseSpec(duplicated=duplicated, active=indices("active"),
                       return_type=DOUBLE if re.search(r"^; returns: double$", text, re.M) else None,
                       duplicated_types=(DOUBLE,) * len(duplicated),
                       distinct_arguments=bool(re.search(r"^; distinct arguments$", text, re.M)))


def annotated(path: Path) -> str:
    text = path.read_text()
    module = parse_module(text)
    primal = next(f for f in module.functions.values() if f.blocks)
    gradient = build_reverse(module, primal, spec_of(text), "gradient")
    report = reverse_report(gradient)
    return annotated_function(primal, report.annotation)


@pytest.mark.parametrize("path", sorted(CASES.glob("*.ll")), ids=lambda p: p.stem)
def test_annotations_match_golden(path: Path):
    assert_matches_golden(path, annotated(path))