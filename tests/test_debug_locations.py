"""Source locations: read from `!dbg`, written as a minimal line table, kept through LLVM's passes."""

from enzpy.driver import optimize
from enzpy.ir import core, parse_module, write_module

SOURCE = """
define double @kernel(double %x) !dbg !4 {
entry:
  %a = fmul double %x, %x, !dbg !7
  %b = call double @llvm.sin.f64(double %a), !dbg !8
  %c = fadd double %b, 1.0
  ret double %c, !dbg !7
}

declare double @llvm.sin.f64(double)

!llvm.dbg.cu = !{!0}
!llvm.module.flags = !{!3}
!0 = distinct !DICompileUnit(language: DW_LANG_Python, file: !1, producer: "test", isOptimized: true, runtimeVersion: 0, emissionKind: LineTablesOnly)
!1 = !DIFile(filename: "model.py", directory: "/home/user")
!2 = !DIFile(filename: "helpers.py", directory: "/home/user/lib")
!3 = !{i32 2, !"Debug Info Version", i32 3}
!4 = distinct !DISubprogram(name: "kernel", scope: !1, file: !1, line: 10, type: !5, spFlags: DISPFlagDefinition, unit: !0)
!5 = !DISubroutineType(types: !{})
!6 = !DILexicalBlockFile(scope: !4, file: !2, discriminator: 0)
!7 = !DILocation(line: 12, column: 3, scope: !4)
!8 = !DILocation(line: 40, column: 0, scope: !6)
"""


def locations(module: core.Module) -> dict[str, str | None]:
    function = module.functions["kernel"]
    return {i.name or i.opcode: (str(i.location) if i.location else None)
            for b in function.blocks for i in b.instructions}


def test_locations_are_read_with_their_file():
    assert locations(parse_module(SOURCE)) == {
        "a": "/home/user/model.py:12", "b": "/home/user/lib/helpers.py:40", "c": None,
        "ret": "/home/user/model.py:12"}


def test_written_line_table_reads_back_the_same_locations():
    module = parse_module(SOURCE)
    text = write_module(module)
    assert "!DILexicalBlockFile" in text and "!DISubprogram" in text
    again = parse_module(text)
    assert locations(again) == locations(module)
    assert write_module(again) == text


def test_locations_survive_the_pre_ad_pipeline():
    optimized = optimize(parse_module(SOURCE), "pre_ad")
    found = {str(i.location) for b in optimized.functions["kernel"].blocks for i in b.instructions
             if i.location is not None}
    assert {"/home/user/model.py:12", "/home/user/lib/helpers.py:40"} <= found


def test_module_without_locations_gets_no_metadata():
    module = parse_module("define double @f(double %x) {\n  %y = fmul double %x, %x\n  ret double %y\n}\n")
    assert "!" not in write_module(module)
