"""Pipeline files: parsing, loading the shipped ones, running pre_ad, dumping."""

import llvmlite.binding as llvm
import pytest

from enzpy.errors import EnzpyError
from enzpy.passes import (PIPELINE_DIRECTORY, DefaultPipeline, InlineCallees, LLVMPass, PassManager,
                          load_pipeline, parse_pipeline)

SHIPPED_PIPELINES = sorted(PIPELINE_DIRECTORY.glob("*.pipeline"))


def helper_and_alloca_module_text(helper_steps: int = 80) -> str:
    """A caller that keeps its argument in a stack slot and calls an external helper.

    The helper is a long chain of distinct floating-point steps, far above
    LLVM's O2 inline threshold, so only `inline_callees` gets it inlined.
    """
    body = ["  %v0 = fadd double %x, 1.0"]
    for step in range(1, helper_steps + 1):
        body.append(f"  %m{step} = fmul double %v{step - 1}, {step + 1}.5")
        body.append(f"  %v{step} = fadd double %m{step}, %x")
    body.append(f"  ret double %v{helper_steps}")
    helper = "define double @long_helper(double %x) {\n" + "\n".join(body) + "\n}\n"
    return helper + """
define i32 @kernel_entry(ptr %out, double %value) {
entry:
  %slot = alloca double
  store double %value, ptr %slot
  %loaded = load double, ptr %slot
  %result = call double @long_helper(double %loaded)
  store double %result, ptr %out
  ret i32 0
}
"""


HELPER_AND_ALLOCA = helper_and_alloca_module_text()

# numba's dynamic-exception unwrap helper is `noinline` and referenced from a global.
NOINLINE_REFERENCED_BY_GLOBAL = """
@table = global ptr @unwrap_helper

define ptr @unwrap_helper(ptr %p) noinline nounwind {
  ret ptr %p
}

define i32 @kernel_entry(ptr %out) {
  store ptr @table, ptr %out
  ret i32 0
}
"""


@pytest.fixture(autouse=True)
def no_dump_environment(monkeypatch):
    monkeypatch.delenv("ENZPY_DUMP_AFTER", raising=False)
    monkeypatch.delenv("ENZPY_DUMP_DIR", raising=False)


def instructions_of(module: llvm.ModuleRef, function_name: str) -> list[str]:
    function = module.get_function(function_name)
    return [instruction.opcode for block in function.blocks for instruction in block.instructions]


def test_parse_pipeline_with_comments_llvm_passes_and_options():
    text = """
    # leading comment line

    inline_callees          # a Python pass
    sroa
    instruction_combine
       simplify_cfg   # indented, trailing comment
    O2 loop_vectorization=false slp_vectorization=true
    """
    stages = parse_pipeline(text)
    assert stages == [
        InlineCallees(),
        LLVMPass("sroa"),
        LLVMPass("instruction_combine"),
        LLVMPass("simplify_cfg"),
        DefaultPipeline("O2", (("loop_vectorization", False), ("slp_vectorization", True))),
    ]


def test_parse_pipeline_of_only_comments_is_empty():
    assert parse_pipeline("# nothing\n\n   # still nothing\n") == []


@pytest.mark.parametrize("text, line_number, expected_message", [
    ("sroa\nnot_a_real_pass\n", 2, "unknown pass 'not_a_real_pass'"),
    ("O2 loop_vectorization=maybe\n", 1, "bad option 'loop_vectorization=maybe'"),
    ("O3 warp_speed=true\n", 1, "bad option 'warp_speed=true'"),
    ("O2 loop_unrolling\n", 1, "bad option 'loop_unrolling'"),
    ("\n\nsroa loop_vectorization=false\n", 3, "only O1/O2/O3 take options"),
    ("inline_callees aggressive=true\n", 1, "only O1/O2/O3 take options"),
])
def test_parse_pipeline_errors_name_the_line(text, line_number, expected_message):
    with pytest.raises(EnzpyError) as error:
        parse_pipeline(text, origin="custom.pipeline")
    assert f"custom.pipeline:{line_number}:" in str(error.value)
    assert expected_message in str(error.value)


@pytest.mark.parametrize("path", SHIPPED_PIPELINES, ids=lambda path: path.stem)
def test_every_shipped_pipeline_loads_by_name_and_by_path(path):
    expected = parse_pipeline(path.read_text())
    by_name = load_pipeline(path.stem)
    by_path = load_pipeline(str(path))
    assert isinstance(by_name, PassManager)
    assert by_name.passes == expected == by_path.passes
    assert by_name.dump_after == set()


def test_the_shipped_pipelines_are_the_ones_the_driver_uses():
    assert {path.stem for path in SHIPPED_PIPELINES} >= {"none", "pre_ad", "post_ad"}
    # The unoptimized baseline only inlines: nothing that optimizes bodies.
    assert [stage.name for stage in load_pipeline("none").passes] == ["inline_callees", "always_inliner"]
    assert InlineCallees() in load_pipeline("pre_ad").passes
    assert "refprune" in [stage.name for stage in load_pipeline("post_ad").passes]


def test_unknown_pipeline_name_lists_the_known_ones():
    with pytest.raises(EnzpyError) as error:
        load_pipeline("no_such_pipeline")
    message = str(error.value)
    assert "no_such_pipeline" in message
    for path in SHIPPED_PIPELINES:
        assert path.stem in message


def test_dump_after_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("ENZPY_DUMP_AFTER", "O2,inline_callees")
    assert load_pipeline("pre_ad").dump_after == {"O2", "inline_callees"}
    assert load_pipeline("pre_ad", dump_after={"always_inliner"}).dump_after == {"always_inliner"}


def test_pre_ad_inlines_the_helper_and_removes_the_alloca():
    module = llvm.parse_assembly(HELPER_AND_ALLOCA)
    module.verify()
    before = instructions_of(module, "kernel_entry")
    assert "alloca" in before and "call" in before
    module = load_pipeline("pre_ad").run(module)
    module.verify()
    after = instructions_of(module, "kernel_entry")
    assert "alloca" not in after
    assert "call" not in after
    assert after.count("fmul") == 80


def test_without_inline_callees_the_helper_stays_a_call():
    # Guards the test above: the helper is too big for O2's own inliner.
    without_inline_callees = [stage for stage in load_pipeline("pre_ad").passes if stage != InlineCallees()]
    module = llvm.parse_assembly(HELPER_AND_ALLOCA)
    PassManager(without_inline_callees).run(module)
    assert "call" in instructions_of(module, "kernel_entry")


def test_inline_callees_marks_definitions_only():
    module = llvm.parse_assembly(HELPER_AND_ALLOCA + "declare double @external_thing(double)\n")
    InlineCallees().run(module, None)
    attributes = {f.name: b" ".join(f.attributes) for f in module.functions}
    assert b"alwaysinline" in attributes["long_helper"]
    assert b"alwaysinline" in attributes["kernel_entry"]
    assert b"alwaysinline" not in attributes["external_thing"]


def test_pre_ad_keeps_noinline_functions_valid():
    module = llvm.parse_assembly(NOINLINE_REFERENCED_BY_GLOBAL)
    module = load_pipeline("pre_ad").run(module)
    module.verify()
    assert not module.get_function("unwrap_helper").is_declaration


def test_dump_dir_gets_one_file_per_requested_stage(monkeypatch, tmp_path):
    monkeypatch.setenv("ENZPY_DUMP_DIR", str(tmp_path))
    manager = load_pipeline("pre_ad", dump_after={"all"})
    module = llvm.parse_assembly(HELPER_AND_ALLOCA)
    manager.run(module)
    stage_names = [stage.name for stage in manager.passes]
    dumped = sorted(path.name for path in tmp_path.iterdir())
    assert len(dumped) == len(stage_names) == len(set(stage_names))
    for stage in stage_names:
        matches = [name for name in dumped if name.endswith(f".after-{stage}.ll")]
        assert len(matches) == 1, (stage, dumped)
        llvm.parse_assembly((tmp_path / matches[0]).read_text()).verify()


def test_dump_dir_only_gets_the_requested_stage(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ENZPY_DUMP_DIR", str(tmp_path / "nested" / "dumps"))
    load_pipeline("pre_ad", dump_after={"O2"}).run(llvm.parse_assembly(HELPER_AND_ALLOCA))
    dumped = list((tmp_path / "nested" / "dumps").iterdir())
    assert [path.name.endswith(".after-O2.ll") for path in dumped] == [True]
    assert "call" not in instructions_of(llvm.parse_assembly(dumped[0].read_text()), "kernel_entry")
    assert capsys.readouterr().err == ""


SUM_LOOP = """
define double @sum(ptr %x, i64 %n) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %total = phi double [ 0.0, %entry ], [ %added, %loop ]
  %address = getelementptr double, ptr %x, i64 %i
  %value = load double, ptr %address
  %added = fadd double %total, %value
  %next = add nsw i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  %result = phi double [ 0.0, %entry ], [ %added, %loop ]
  ret double %result
}

define double @cube(double %x) {
entry:
  br label %loop
loop:
  %k = phi i32 [ 0, %entry ], [ %next, %loop ]
  %power = phi double [ 1.0, %entry ], [ %times, %loop ]
  %times = fmul double %power, %x
  %next = add i32 %k, 1
  %more = icmp ult i32 %next, 3
  br i1 %more, label %loop, label %done
done:
  ret double %times
}
"""


def test_pre_ad_keeps_loops_with_unknown_trip_counts_whole_but_unrolls_constant_ones():
    module = load_pipeline("pre_ad").run(llvm.parse_assembly(SUM_LOOP))
    module.verify()
    # Runtime unrolling would give the sum 8 loads in its body and a remainder loop with one more.
    assert instructions_of(module, "sum").count("load") == 1
    cube = instructions_of(module, "cube")
    assert cube.count("fmul") == 2 and "phi" not in cube and "br" not in cube


def test_without_the_mark_the_unroller_would_unroll_the_sum():
    # Guards the test above: on this target LLVM does unroll such a loop when not told otherwise.
    stages = [s for s in load_pipeline("pre_ad").passes if s.name != "no_runtime_unrolling"]
    module = PassManager(stages).run(llvm.parse_assembly(SUM_LOOP))
    if instructions_of(module, "sum").count("load") == 1:
        pytest.skip("LLVM does not unroll loops with runtime trip counts for this CPU")


def status_function(name: str, steps: int, returns: str, calls: str = "") -> str:
    """A numba-convention function (status i32) of `steps` integer additions that returns `returns`
    (a stand-in for numba's error-message formatting when that is an error code)."""
    body = ["  %v0 = add i64 %n, 1"] + [f"  %v{k} = add i64 %v{k - 1}, {k}" for k in range(1, steps)]
    return (f"define i32 @{name}(ptr %excinfo, i64 %n) {{\n" + "\n".join(body) + calls +
            f"\n  store i64 %v{steps - 1}, ptr %excinfo\n  ret i32 {returns}\n}}\n")


def test_large_error_formatters_stay_calls():
    from enzpy.passes.inlining import ERROR_FORMATTER_INLINE_LIMIT as LIMIT

    module = llvm.parse_assembly(
        status_function("formatter", LIMIT // 2, "1", calls="\n  %part = call i32 @formatter_part(ptr %excinfo, i64 %n)") +
        status_function("formatter_part", LIMIT // 2 + 10, "0") +
        status_function("passes_an_error_on", LIMIT + 10, "%status",
                        calls="\n  %status = call i32 @formatter(ptr %excinfo, i64 %n)") +
        status_function("small_raiser", 20, "1") +
        status_function("large_but_succeeds", LIMIT + 10, "0") +
        helper_and_alloca_module_text(helper_steps=LIMIT) + """
define i32 @caller(ptr %out, ptr %excinfo, i64 %n, double %x) {
entry:
  %a = call i32 @formatter(ptr %excinfo, i64 %n)
  %b = call i32 @small_raiser(ptr %excinfo, i64 %n)
  %c = call i32 @large_but_succeeds(ptr %excinfo, i64 %n)
  %d = call i32 @passes_an_error_on(ptr %excinfo, i64 %n)
  %e = call double @long_helper(double %x)
  store double %e, ptr %out
  ret i32 0
}
""")
    InlineCallees().run(module, None)
    attributes = {f.name: b" ".join(f.attributes) for f in module.functions}
    # Never returns normally and, with what it calls, is over the limit: stays a call.
    assert b"noinline" in attributes["formatter"] and b"alwaysinline" not in attributes["formatter"]
    # Its part may succeed: inlined into the formatter. Small raisers, functions that return
    # normally, that only pass on a call's status (not known to raise) and float code of any
    # size are inlined, as before.
    for name in ("formatter_part", "small_raiser", "large_but_succeeds", "passes_an_error_on", "long_helper",
                 "caller"):
        assert b"alwaysinline" in attributes[name], name


def test_tidying_the_raw_module_shrinks_it_and_keeps_the_inlining_decisions():
    """passes/pre_read.pipeline (driver.to_ir(tidy=True)): fewer instructions to read, and numba's
    broadcast-error formatter still stays a call after the pre-AD pipeline (the decision is made on
    the raw code, whose returns and size the tidying passes change)."""
    import numba
    import numpy as np

    from enzpy.driver import optimize, to_ir
    from enzpy.frontend.numba import capture
    from enzpy.ir import core

    @numba.njit
    def stencil(a, b):
        b[1:-1, 1:-1] = 0.25 * (a[2:, 1:-1] + a[:-2, 1:-1]) * a[1:-1, 2:]
        return np.sum(b * b)

    args = (np.ones((6, 5)), np.ones((6, 5)))

    def instructions(module) -> int:
        return sum(len(block.instructions) for f in module.functions.values() for block in f.blocks)

    def formatter_calls(module) -> int:
        return sum(1 for f in module.functions.values() for i in f.instructions()
                   if isinstance(getattr(i, "callee", None), core.Function)
                   and "ol_raise_with_shape_context" in i.callee.name)

    # Plain integers in the asserts: pytest's rewriting would print whole modules.
    raw, tidied = to_ir(capture(stencil, args=args)), to_ir(capture(stencil, args=args), tidy=True)
    raw_size, tidied_size = instructions(raw), instructions(tidied)
    assert tidied_size < 0.6 * raw_size
    kept_raw, kept_tidied = formatter_calls(optimize(raw, "pre_ad")), formatter_calls(optimize(tidied, "pre_ad"))
    assert kept_raw > 0
    assert kept_tidied == kept_raw
