"""A kernel that raises: the error reaches the caller, nothing leaks, the shadows stay as they were."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])


def test_a_raising_kernel_leaks_no_allocation_in_either_mode_and_leaves_shadows_alone():
    # NRT statistics must be on before numba starts: a fresh interpreter.
    script = textwrap.dedent("""
        import math, numpy as np, numba
        from numba.core.runtime import rtsys
        from enzpy import Duplicated, differentiate

        @numba.njit
        def checked(x):
            t = np.empty(x.shape[0])              # an allocation with a shadow, kept for the reverse sweep
            s = 0.0
            for i in range(x.shape[0]):
                t[i] = math.exp(x[i])
                s += t[i] * x[i]
            if s > 1e6:
                raise ValueError("too large")
            return s

        d = differentiate(checked)
        good, bad = np.linspace(-1.0, 1.0, 20), np.full(20, 10.0)
        for mode in ("reverse", "forward"):
            d.autodiff(Duplicated(good, np.ones(20)), mode=mode)
            before = rtsys.get_allocation_stats()
            for _ in range(500):
                shadow = np.full(20, 3.0)
                try:
                    d.autodiff(Duplicated(bad, shadow), mode=mode)
                except ValueError as error:
                    assert "too large" in str(error)
                else:
                    raise AssertionError("no exception")
                assert (shadow == 3.0).all(), shadow
            after = rtsys.get_allocation_stats()
            allocated, freed = after.mi_alloc - before.mi_alloc, after.mi_free - before.mi_free
            assert allocated >= 500 * 2, (mode, allocated)      # the buffer and its shadow
            assert allocated == freed, (mode, allocated, freed)
        gradient = np.zeros(20)
        d.autodiff(Duplicated(good, gradient))
        assert np.allclose(gradient, np.exp(good) * (1.0 + good), rtol=1e-13)
        print("OK")
    """)
    environment = dict(os.environ, NUMBA_NRT_STATS="1", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
