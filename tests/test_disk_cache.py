"""`differentiate(f, cache=True)`: a second process loads the derivatives instead of compiling.

Each check runs fresh Python processes on a kernel file written here, with
`ENZPY_CACHE_DIR` pointing into the test's folder. A process that must load
from the cache replaces enzpy's capture (the start of every compile) with a
function that raises, so a compile that should not happen fails the check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import enzpy
from enzpy import disk_cache

KERNELS = '''
import numba
import numpy as np

SCALE = {scale}

@numba.njit(cache=True)
def square(v):
    return {square}

@numba.njit(cache=True)
def energy(x, a):
    total = 0.0
    for i in range(x.shape[0]):
        total += a * square(x[i]) * SCALE + np.sin(x[i])
    return total

@numba.njit(cache=True)
def field(x):
    return np.sin(x) * x, x.sum()
'''

RUN = '''
import sys
import numpy as np
import enzpy, enzpy.api
import kernels

if sys.argv[1] == "load":
    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled although the derivative is on disk")
    enzpy.api.capture = no_compiling

x = np.linspace(0.1, 1.0, 7)
energy = enzpy.differentiate(kernels.energy, cache=True)
value, (dx, da) = energy.value_and_grad(x, 0.5)
field = enzpy.differentiate(kernels.field, cache=True)
(y, total), pullback = field.vjp(x)
(fx,) = pullback((np.ones(7), 2.0))
_, (tangent, total_tangent) = field.jvp((x,), (np.ones(7),))
np.save("result.npy", np.concatenate([[value, da], dx, fx, tangent, [total_tangent]]))
'''


def expected(scale: float, power: int) -> np.ndarray:
    x = np.linspace(0.1, 1.0, 7)
    value = np.sum(0.5 * x**power * scale + np.sin(x))
    dx = 0.5 * power * x**(power - 1) * scale + np.cos(x)
    da = np.sum(x**power * scale)
    fx = np.cos(x) * x + np.sin(x) + 2.0
    tangent = np.cos(x) * x + np.sin(x)
    return np.concatenate([[value, da], dx, fx, tangent, [7.0]])


def run(folder: Path, how: str) -> np.ndarray:
    environment = dict(os.environ, ENZPY_CACHE_DIR=str(folder / "cache"), PYTHONPATH=str(folder),
                       NUMBA_CACHE_DIR=str(folder / "numba-cache"))
    finished = subprocess.run([sys.executable, "run.py", how], cwd=folder, env=environment,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return np.load(folder / "result.npy")


def write_kernels(folder: Path, scale: float = 2.0, square: str = "v * v") -> None:
    (folder / "kernels.py").write_text(KERNELS.format(scale=scale, square=square))
    (folder / "run.py").write_text(RUN)


def test_a_second_process_loads_every_derivative_and_gets_the_same_numbers(tmp_path):
    write_kernels(tmp_path)
    compiled = run(tmp_path, "compile")
    entries = sorted((tmp_path / "cache").glob("*.derivative"))
    # energy's gradient, the array-and-tuple result's reverse and forward output forms
    assert len(entries) == 3
    loaded = run(tmp_path, "load")
    np.testing.assert_array_equal(loaded, compiled)
    np.testing.assert_allclose(loaded, expected(2.0, 2), rtol=1e-13, atol=1e-13)


def test_a_changed_global_or_callee_compiles_again(tmp_path):
    write_kernels(tmp_path)
    run(tmp_path, "compile")
    write_kernels(tmp_path, scale=3.0)                       # a constant numba froze into the code
    with pytest.raises(AssertionError, match="compiled although"):
        run(tmp_path, "load")
    np.testing.assert_allclose(run(tmp_path, "compile"), expected(3.0, 2), rtol=1e-13, atol=1e-13)
    write_kernels(tmp_path, scale=3.0, square="v * v * v")   # the njit callee's body
    with pytest.raises(AssertionError, match="compiled although"):
        run(tmp_path, "load")
    np.testing.assert_allclose(run(tmp_path, "compile"), expected(3.0, 3), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(run(tmp_path, "load"), expected(3.0, 3), rtol=1e-13, atol=1e-13)


def test_a_damaged_entry_is_dropped_and_compiled_again(tmp_path):
    write_kernels(tmp_path)
    run(tmp_path, "compile")
    for entry in (tmp_path / "cache").glob("*"):
        entry.write_bytes(b"not a pickle")
    np.testing.assert_allclose(run(tmp_path, "compile"), expected(2.0, 2), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(run(tmp_path, "load"), expected(2.0, 2), rtol=1e-13, atol=1e-13)


class _Opaque:
    """A global numba cannot freeze and disk_cache cannot key."""

    factor = 2.0


_OPAQUE = _Opaque()


def _names_an_opaque_object(x):
    return _OPAQUE


def test_a_kernel_naming_an_unknown_object_is_not_cached():
    with pytest.warns(UserWarning, match="not cached on disk .*_OPAQUE"):
        assert disk_cache.kernel_identity(_names_an_opaque_object) is None


def _constant_user(x):
    return x * _TABLE[0]


_TABLE = np.array([2.0, 3.0])


def test_identity_follows_array_constants():
    before = disk_cache.kernel_identity(_constant_user)
    _TABLE[0] = 5.0
    try:
        assert disk_cache.kernel_identity(_constant_user) != before
    finally:
        _TABLE[0] = 2.0
    assert disk_cache.kernel_identity(_constant_user) == before


def test_an_entry_calling_a_symbol_this_process_lacks_is_a_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("ENZPY_CACHE_DIR", str(tmp_path))
    stored = disk_cache.StoredDerivative(b"", None, (), ("enzpy_no_such_symbol_anywhere",), (), b"")
    import pickle
    (tmp_path / "k.derivative").write_bytes(pickle.dumps(stored))
    assert disk_cache.load("k") is None


def test_code_holding_a_process_address_is_not_stored(tmp_path, monkeypatch):
    from enzpy.jit import CompiledModule, NumbaEntryPoint

    monkeypatch.setenv("ENZPY_CACHE_DIR", str(tmp_path))
    text = textwrap.dedent("""
        define i32 @entry(ptr %ret, ptr %exc) {
          store ptr inttoptr (i64 140737488355328 to ptr), ptr %ret
          ret i32 0
        }
    """)
    compiled = CompiledModule(text, pipeline=None, keep_object_code=True)
    assert compiled.object_code
    from enzpy.frontend.numba import CallingConvention
    from numba.core import types
    entry = NumbaEntryPoint(compiled, CallingConvention("entry", (), types.none, ("ptr", "ptr")))
    assert disk_cache.store("k", entry, (), text) is False
    assert not list(tmp_path.glob("*"))


def test_without_cache_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("ENZPY_CACHE_DIR", str(tmp_path))

    def sum_of_squares(x):
        total = 0.0
        for i in range(x.shape[0]):
            total += x[i] * x[i] * 1.5
        return total

    x = np.arange(4.0)
    np.testing.assert_allclose(enzpy.differentiate(sum_of_squares).grad(x)[0], 3.0 * x)
    assert not list(tmp_path.glob("*"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(enzpy.differentiate(sum_of_squares, cache=True).grad(x)[0], 3.0 * x)
    # The first Differentiable compiled it in this process: the in-memory cache answers first.
    assert disk_cache.clear() == 0
