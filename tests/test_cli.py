"""`enzpy emit`: in-process through `enzpy.cli.main` and once as a real subprocess."""

import subprocess
import sys
import textwrap

import llvmlite.binding as llvm
import pytest

from enzpy.cli import main

KERNEL_SOURCE = textwrap.dedent("""
    import numpy as np

    def sum_of_squares(values, count):
        total = 0.0
        for index in range(count):
            total += values[index] * values[index]
        return total

    def needs_python_objects(key):
        return {"a": object()}[key]

    NOT_A_FUNCTION = 3
""")
SIGNATURE = "float64(float64[::1], int64)"


@pytest.fixture(autouse=True)
def no_dump_environment(monkeypatch):
    # A developer's ENZPY_DUMP_* settings would add IR to stderr or files.
    monkeypatch.delenv("ENZPY_DUMP_AFTER", raising=False)
    monkeypatch.delenv("ENZPY_DUMP_DIR", raising=False)


@pytest.fixture
def kernel_file(tmp_path):
    path = tmp_path / "user_kernels.py"
    path.write_text(KERNEL_SOURCE)
    return path


def parsed_and_verified(text: str) -> llvm.ModuleRef:
    module = llvm.parse_assembly(text)
    module.verify()
    return module


def entry_function_names(module: llvm.ModuleRef, python_name: str) -> list[str]:
    return [f.name for f in module.functions if not f.is_declaration and python_name in f.name]


def instruction_count(module: llvm.ModuleRef) -> int:
    return sum(len(list(block.instructions)) for f in module.functions for block in f.blocks)


def emit_in_process(capsys, *arguments) -> tuple[int, str, str]:
    status = main(["emit", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def emitted_module(capsys, kernel_file, tmp_path, stage: str) -> llvm.ModuleRef:
    output = tmp_path / f"{stage}.ll"
    status, out, err = emit_in_process(capsys, f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE,
                                       "--stage", stage, "-o", output)
    assert (status, out, err) == (0, "", "")
    return parsed_and_verified(output.read_text())


def test_raw_and_optimized_stages_write_valid_modules(capsys, kernel_file, tmp_path):
    raw = emitted_module(capsys, kernel_file, tmp_path, "raw")
    optimized = emitted_module(capsys, kernel_file, tmp_path, "optimized")
    assert entry_function_names(raw, "sum_of_squares")
    assert entry_function_names(optimized, "sum_of_squares")
    assert instruction_count(optimized) < instruction_count(raw)


def test_without_output_file_the_module_goes_to_stdout(capsys, kernel_file):
    status, out, err = emit_in_process(capsys, f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE)
    assert status == 0 and err == ""
    assert entry_function_names(parsed_and_verified(out), "sum_of_squares")


def test_dump_after_prints_the_module_after_that_stage(capsys, kernel_file, tmp_path):
    status, _, err = emit_in_process(capsys, f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE,
                                     "--dump-after", "O2", "-o", tmp_path / "out.ll")
    assert status == 0
    header = "; ---- enzpy: IR after O2 ----"
    assert err.count(header) == 1
    assert "IR after inline_callees" not in err
    dumped = parsed_and_verified(err.split(header, 1)[1])
    assert entry_function_names(dumped, "sum_of_squares")


def test_emit_as_a_subprocess(kernel_file, tmp_path):
    output = tmp_path / "subprocess.ll"
    completed = subprocess.run(
        [sys.executable, "-m", "enzpy.cli", "emit", f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE,
         "--stage", "raw", "-o", str(output)],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
    assert entry_function_names(parsed_and_verified(output.read_text()), "sum_of_squares")


def test_error_as_a_subprocess_is_one_line(kernel_file):
    completed = subprocess.run(
        [sys.executable, "-m", "enzpy.cli", "emit", f"{kernel_file}:absent_function", "--sig", SIGNATURE],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [completed.stderr.strip()]
    assert completed.stderr.startswith("enzpy: error:")
    assert "absent_function" in completed.stderr


ERROR_CASES = {
    "missing file": ("{directory}/absent.py:sum_of_squares", SIGNATURE, "no such file"),
    "missing function": ("{kernel}:absent_function", SIGNATURE, "absent_function"),
    "not callable": ("{kernel}:NOT_A_FUNCTION", SIGNATURE, "NOT_A_FUNCTION"),
    "target without colon": ("{kernel}", SIGNATURE, "FILE.py:FUNCTION"),
    "unparsable signature": ("{kernel}:sum_of_squares", "float64(float64[::1], int64", "bad signature"),
    "unknown type in signature": ("{kernel}:sum_of_squares", "float64(floaty[:], int64)", "bad signature"),
    "signature with wrong arity": ("{kernel}:sum_of_squares", "float64(float64[::1])", "numba cannot compile"),
    "numba rejects the kernel": ("{kernel}:needs_python_objects", "int64(int64)", "numba cannot compile"),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=str)
def test_user_errors_exit_2_with_one_line(case, capsys, kernel_file, tmp_path):
    target, signature, expected_text = ERROR_CASES[case]
    target = target.format(directory=tmp_path, kernel=kernel_file)
    status, out, err = emit_in_process(capsys, target, "--sig", signature, "-o", tmp_path / "never.ll")
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("enzpy: error:")
    assert expected_text in lines[0]
    assert not (tmp_path / "never.ll").exists()


@pytest.mark.parametrize("preopt", [True, False], ids=["optimized", "no-preopt"])
def test_emit_reverse_writes_a_verifying_gradient(capsys, kernel_file, tmp_path, preopt):
    output = tmp_path / "gradient.ll"
    flags = [] if preopt else ["--no-preopt"]
    status, _, err = emit_in_process(capsys, f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE,
                                     "--mode", "reverse", *flags, "-o", output)
    assert status == 0, err
    module = parsed_and_verified(output.read_text())
    gradients = [f for f in module.functions if f.name.startswith("enzpy.reverse.") and not f.is_declaration]
    assert len(gradients) == 1
    # retptr, excinfo, the exploded array (7), the count, the shadow data pointer, the seed
    assert len(list(gradients[0].arguments)) == 2 + 7 + 1 + 1 + 1


def test_emit_reverse_rejects_a_bad_activity_list(capsys, kernel_file):
    status, out, err = emit_in_process(capsys, f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE,
                                       "--mode", "reverse", "--activity", "dup")
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("enzpy: error: --activity")


def test_explain_measures_the_tape_for_given_arguments(capsys, kernel_file):
    status = main(["explain", f"{kernel_file}:sum_of_squares", "--args", "np.linspace(0, 1, 50), 50", "--ir"])
    out = capsys.readouterr().out
    assert status == 0
    assert "tape for these arguments: 0 bytes" in out
    assert "; active" in out and "reverse: reload" in out


def test_explain_from_a_signature_and_bad_arguments(capsys, kernel_file):
    assert main(["explain", f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE]) == 0
    assert "give argument values" in capsys.readouterr().out
    assert main(["explain", f"{kernel_file}:sum_of_squares", "--args", "np.nosuch(3), 3"]) == 2
    assert "cannot evaluate --args" in capsys.readouterr().err


def test_width_below_one_is_a_usage_error(capsys, kernel_file):
    status, out, err = emit_in_process(capsys, f"{kernel_file}:sum_of_squares", "--sig", SIGNATURE,
                                       "--mode", "forward", "--width", "0")
    assert status == 2 and out == ""
    assert err.strip() == "enzpy: error: --width must be at least 1, got 0"


def test_explain_takes_arguments_with_a_trailing_comma(capsys, kernel_file):
    assert main(["explain", f"{kernel_file}:sum_of_squares", "--args", "np.linspace(0, 1, 50), 50,"]) == 0
    assert "tape for these arguments: 0 bytes" in capsys.readouterr().out


def test_an_integer_result_declared_for_a_float_kernel_is_a_usage_error(capsys, kernel_file):
    status, out, err = emit_in_process(capsys, f"{kernel_file}:sum_of_squares", "--sig",
                                       SIGNATURE.replace("float64(", "int64(", 1), "--mode", "reverse")
    assert status == 2 and out == ""
    assert "--sig declares the result int64, but sum_of_squares returns float64" in err
