"""Benchmarks of kernels round-tripped through enzpy against numba itself."""
