"""ADBench's GMM, LSTM and BA in ADBench's own C style (examples/c/adbench), through clang-19 and `enzpy opt`.

Each program reads an ADBench instance from shared/adbench and checks what
it computes against ADBench's references with ADBench's tolerance
(|a - b| <= 1e-8 max(1, |b|)): GMM's objective and gradient against the values
ADBench's unit tests quote, LSTM's gradient against lstm_l2_c1024_gradient.txt,
BA's Jacobian against ba_test_jacobian_values.txt. They exit non-zero on a
mismatch. The objectives use what Enzyme users write: GMM's Wishart prior is a
struct passed by value, and GMM's and LSTM's work arrays are malloc'd and
freed inside the differentiated function.

The same programs built with -DPRIMAL_ONLY by plain clang (no enzpy) check
the objectives alone, so a failure of the derivative build is enzpy's, not
the C code's. CMake builds and runs them too (the root CMakeLists.txt); this
file runs them from pytest, with tmp_path for every output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from enzpy.cli import main
from tests.adbench.data import adbench_dir
from tests.test_c_frontend import CLANG, needs_clang

SOURCES = Path(__file__).resolve().parents[1] / "examples" / "c" / "adbench"
DATA = adbench_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="ADBench reference data not found: expected ../shared/adbench "
                                                     "beside the checkout, or a folder named by ENZPY_ADBENCH_DIR")
PROGRAMS = {"gmm": ["gmm_test.txt"],
            "lstm": ["lstm_l2_c1024.txt", "lstm_l2_c1024_gradient.txt"],
            "ba": ["ba_test.txt", "ba_test_jacobian_values.txt"]}
LEVELS = ["-O0", "-O2"]


def run_program(executable: Path, program: str) -> subprocess.CompletedProcess:
    finished = subprocess.run([str(executable), *(str(DATA / name) for name in PROGRAMS[program])],
                              check=False, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and "MISMATCH" not in finished.stdout, finished.stdout + finished.stderr
    return finished


@needs_clang
@needs_data
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("program", list(PROGRAMS))
def test_derivatives_match_adbench_references(tmp_path, program, level):
    source = SOURCES / f"{program}.c"
    primal, differentiated, executable = (tmp_path / f"{program}{ext}" for ext in (".ll", ".d.ll", ".exe"))
    subprocess.run([CLANG, level, "-S", "-emit-llvm", str(source), "-o", str(primal)], check=True)
    assert main(["opt", str(primal), "-o", str(differentiated)]) == 0, f"enzpy opt failed on {program}.c {level}"
    subprocess.run([CLANG, level, str(differentiated), "-o", str(executable), "-lm"], check=True)
    finished = run_program(executable, program)
    # The derivative's lines, not only the objective's, were printed and passed.
    assert "Jacobian non-zeros" in finished.stdout or "gradient (" in finished.stdout, finished.stdout


@needs_clang
@needs_data
@pytest.mark.parametrize("program", list(PROGRAMS))
def test_objectives_match_adbench_values_without_enzpy(tmp_path, program):
    executable = tmp_path / f"{program}_primal.exe"
    subprocess.run([CLANG, "-O2", "-DPRIMAL_ONLY", str(SOURCES / f"{program}.c"), "-o", str(executable), "-lm"],
                   check=True)
    finished = run_program(executable, program)
    assert " ok" in finished.stdout, finished.stdout
