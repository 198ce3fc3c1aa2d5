"""enzpy's benchmarks. `python -m benchmarks` times gradients against numba's primal,
JAX and PyTorch on ADBench's problems; the other modules (`python -m
benchmarks.roundtrip`, ...) each time one feature."""

import os

# numba's np.dot / @ call scipy's OpenBLAS, threaded by default: every column runs on one
# thread, so BLAS does too. Set before numpy or scipy load their BLAS (a user's setting wins).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
