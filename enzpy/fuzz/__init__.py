"""Differential testing of enzpy on random kernels (Csmith / YARPGen style).

`grammar` draws numba kernels from a grammar, `check` differentiates one in
both modes and compares with finite differences and with each other, `shrink`
reduces a failing kernel to a small reproducer, `runner` runs checks in a
worker process (a crash or a hang costs the worker, not the run), and
`python -m enzpy.fuzz --seconds N --seed S` ties them together.
"""
