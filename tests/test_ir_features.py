"""Golden round trips: one .ll per IR feature (tests/ir/), read and written back.

The text enzpy writes must parse and verify in LLVM, be a fixed point of
read -> write, and mean the same module: LLVM's canonical printing of the
original and of enzpy's output are compared line by line.
"""

import re
from pathlib import Path

import llvmlite.binding as llvm
import pytest

from enzpy.errors import UnsupportedIRError
from enzpy.ir import core, parse_module, write_module
from enzpy.ir.types import I8
from enzpy.ir.verify import VerificationError, verify_module

IR_FILES = sorted((Path(__file__).parent / "ir").glob("*.ll"))


def canonical(text: str) -> list[str]:
    """LLVM's printing, minus what is allowed to differ (header, struct name suffixes)."""
    printed = str(llvm.parse_assembly(text))
    lines = [line for line in printed.splitlines()
             if not line.startswith(("; ModuleID", "source_filename"))]
    return [re.sub(r"(%[A-Za-z_][\w]*)\.\d+\b", r"\1", line) for line in lines]


@pytest.mark.parametrize("path", IR_FILES, ids=lambda p: p.stem)
def test_feature_round_trip(path: Path):
    source = path.read_text()
    module = parse_module(source)
    verify_module(module)
    written = write_module(module)
    llvm.parse_assembly(written).verify()
    assert write_module(parse_module(written)) == written
    assert canonical(written) == canonical(source)


def test_corpus_of_features_is_complete():
    opcodes = set()
    for path in IR_FILES:
        for function in parse_module(path.read_text()).functions.values():
            opcodes.update(i.opcode for i in function.instructions())
    required = {"fadd", "fsub", "fmul", "fdiv", "frem", "fneg", "add", "sub", "mul", "sdiv", "udiv",
                "srem", "urem", "shl", "lshr", "ashr", "and", "or", "xor", "trunc", "zext", "sext",
                "fpext", "fptrunc", "fptosi", "fptoui", "sitofp", "uitofp", "ptrtoint", "inttoptr",
                "bitcast", "icmp", "fcmp", "phi", "select", "br", "switch", "ret", "unreachable",
                "alloca", "load", "store", "getelementptr", "call", "insertvalue", "extractvalue",
                "insertelement", "extractelement", "shufflevector", "freeze", "atomicrmw", "cmpxchg", "fence",
                "va_arg", "ptrtoaddr"}
    assert required <= opcodes, required - opcodes


def test_details_are_read():
    module = parse_module((Path(__file__).parent / "ir" / "arithmetic.ll").read_text())
    instructions = {i.name: i for i in module.functions["arithmetic"].instructions()}
    assert instructions["a"].flags == ("fast",)
    assert instructions["b"].flags == ("nnan", "ninf")
    assert instructions["b"].operands[1].value == 1.5
    assert instructions["c"].operands[1].value == 0.1
    assert instructions["j"].flags == ("nuw", "nsw")
    assert instructions["j"].operands[1].value == -7
    memory = parse_module((Path(__file__).parent / "ir" / "memory.ll").read_text())
    by_name = {i.name: i for i in memory.functions["memory"].instructions()}
    assert str(by_name["slot"].allocated_type).startswith("%pair")
    assert by_name["slot"].align == 16
    assert by_name["byte"].source_type == I8
    assert by_name["third"].volatile and by_name["third"].align == 4
    control = parse_module((Path(__file__).parent / "ir" / "control_flow.ll").read_text())
    switch = next(i for i in control.functions["control"].instructions() if isinstance(i, core.Switch))
    assert [value.value for value, _ in switch.cases] == [0, 1]
    assert [target.name for _, target in switch.cases] == ["zero", "one"]
    assert switch.default.name == "other"
    branch = next(i for i in control.functions["control"].instructions()
                  if isinstance(i, core.Branch) and i.operands and i.operands[0].name == "positive")
    assert [t.name for t in branch.targets] == ["loop", "exit"]


UNSUPPORTED = {
    "indirectbr": """
define void @f(ptr %target) {
entry:
  indirectbr ptr %target, [label %a]
a:
  ret void
}""",
    # C++ exceptions: numba reports errors through its status code and never unwinds.
    "invoke": """
define void @f() personality ptr @personality {
entry:
  invoke void @g() to label %ok unwind label %bad
ok:
  ret void
bad:
  %landing = landingpad { ptr, i32 } cleanup
  resume { ptr, i32 } %landing
}
declare void @g()
declare i32 @personality(...)""",
}


@pytest.mark.parametrize("construct", sorted(UNSUPPORTED))
def test_unsupported_constructs_are_named(construct: str):
    with pytest.raises(UnsupportedIRError) as error:
        parse_module(UNSUPPORTED[construct])
    assert construct.split()[0] in str(error.value)
    assert "@f" in str(error.value)


def test_vector_and_atomic_details_are_read():
    vectors = parse_module((Path(__file__).parent / "ir" / "vectors.ll").read_text())
    by_name = {i.name: i for i in vectors.functions["vectors"].instructions()}
    assert by_name["splat"].mask == (0, 0, 0, 0)
    assert by_name["reversed"].mask == (3, 2, 1, 0)
    assert by_name["mixed"].mask == (0, -1)
    assert len(by_name["widened"].operands) == 2 and str(by_name["widened"].type) == "<8 x double>"
    assert isinstance(by_name["low"], core.ExtractElement) and isinstance(by_name["head"], core.InsertElement)
    atomics = parse_module((Path(__file__).parent / "ir" / "atomics_scoped.ll").read_text())
    by_name = {i.name: i for i in atomics.functions["atomics_scoped"].instructions()}
    assert (by_name["seen"].ordering, by_name["seen"].syncscope) == ("acquire", "")
    assert (by_name["local"].ordering, by_name["local"].syncscope, by_name["local"].volatile) == \
        ("monotonic", "singlethread", True)
    assert (by_name["old"].operation, by_name["old"].syncscope) == ("fadd", "singlethread")
    assert by_name["pair"].orderings == ("acquire", "monotonic")
    stores = [i for i in atomics.functions["atomics_scoped"].instructions() if isinstance(i, core.Store)]
    assert [s.ordering for s in stores] == ["release", "seq_cst"]


def test_verifier_catches_broken_ir():
    module = parse_module((Path(__file__).parent / "ir" / "control_flow.ll").read_text())
    function = module.functions["control"]
    exit_block = next(b for b in function.blocks if b.name == "exit")
    exit_block.instructions[0].incoming_blocks.pop()
    exit_block.instructions[0].operands.pop()
    with pytest.raises(VerificationError, match="predecessors"):
        verify_module(module)
    trap = next(b for b in function.blocks if b.name == "trap")
    trap.instructions.clear()
    with pytest.raises(VerificationError, match="terminator"):
        verify_module(module)
