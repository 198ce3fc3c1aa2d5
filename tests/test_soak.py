"""Soak (benchmarks/soak.py) with a smaller count: repeated derivative calls of allocating and
raising kernels free every NRT allocation and keep resident memory flat; a workload that does
leak is caught by both measures."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])

_SCRIPT = textwrap.dedent("""
    import numpy as np
    from benchmarks import soak

    for result in soak.soak(3000):
        assert result.balanced, result
        assert result.rss_growth_mb < 2.0, result
        print("soaked", result.name)

    # A workload that keeps what it allocates must fail both measures.
    kept, x = [], np.ones(10000)
    leaking = soak.soak(1000, [("keeps its results", lambda: kept.append(soak.array_result(x, x)))])[0]
    assert leaking.allocations - leaking.frees == 1000, leaking
    assert leaking.rss_growth_mb > 40.0, leaking
    print("leak caught")
""")


def test_repeated_derivative_calls_leak_nothing():
    environment = dict(os.environ, PYTHONPATH=REPO, NUMBA_NRT_STATS="1")
    result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=environment,
                            timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("soaked") == 5 and "leak caught" in result.stdout, result.stdout
