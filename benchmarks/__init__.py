"""enzpy's benchmarks. `python -m benchmarks` times gradients against numba's primal,
JAX and PyTorch on ADBench's problems; the other modules (`python -m
benchmarks.roundtrip`, ...) each time one feature."""
