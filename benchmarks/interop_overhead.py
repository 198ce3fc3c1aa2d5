"""The cost of the PyTorch and JAX wrappers: wrapper time / enzpy time for a value and its gradient.

    python -m benchmarks.interop_overhead

Two kernels: `weighted_energy`, a loop over x and w returning a float, at 10
elements (the times are the calls) and at 10^6 (the times are the work). Each
row times, in one run and one process:

- enzpy: `differentiate(kernel).vjp(x, w)` and its pullback at 1.0 (what the
  wrappers call; `value_and_grad` has a faster compiled trampoline on small
  kernels, given as its own column);
- torch: `enzpy.torch.function(kernel)` on CPU tensors, forward and
  `backward()` (autograd graph building included, as a training step pays it);
- JAX: `jax.jit(jax.value_and_grad(enzpy.jax.function(kernel)))`, its result
  waited for (`block_until_ready`).

A missing framework gives an empty column. Written to
benchmarks/results/interop_overhead.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numba
import numpy as np

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
SIZES = (10, 1_000_000)


@numba.njit
def weighted_energy(x, w):
    s = 0.0
    for i in range(x.shape[0]):
        s += w[i] * np.sin(x[i]) * x[i]
    return s


def microseconds(call, seconds: float = 0.4) -> float:
    """Best of five rounds, each at least `seconds` / 5 long (other processes only add time)."""
    for _ in range(3):
        call()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 5 or calls < 3:
        call()
        calls += 1
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def enzpy_calls(kernel, x, w) -> dict:
    import enzpy

    differentiable = enzpy.differentiate(kernel)

    def vjp_and_pullback():
        _, pullback = differentiable.vjp(x, w)
        return pullback(1.0)
    return {"enzpy vjp": vjp_and_pullback, "enzpy value_and_grad": lambda: differentiable.value_and_grad(x, w)}


def torch_call(kernel, x, w):
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    import enzpy.torch

    wrapped = enzpy.torch.function(kernel)
    x_tensor = torch.from_numpy(x.copy()).requires_grad_()
    w_tensor = torch.from_numpy(w.copy()).requires_grad_()

    def forward_and_backward():
        x_tensor.grad = w_tensor.grad = None
        wrapped(x_tensor, w_tensor).backward()
        return x_tensor.grad
    return forward_and_backward


def jax_call(kernel, x, w):
    if importlib.util.find_spec("jax") is None:
        return None
    import jax

    import enzpy.jax

    jax.config.update("jax_enable_x64", True)
    gradient = jax.jit(jax.value_and_grad(enzpy.jax.function(kernel), argnums=(0, 1)))
    x_array, w_array = jax.numpy.asarray(x), jax.numpy.asarray(w)
    return lambda: jax.block_until_ready(gradient(x_array, w_array))


def framework_floors(x, w) -> dict:
    """What each framework costs with no kernel at all: a torch.autograd.Function that returns its
    input's sum, and JAX's jit(value_and_grad) of `jnp.sum(x * w)` (no host callback), to read the
    small-kernel rows against."""
    floors = {}
    if importlib.util.find_spec("torch") is not None:
        import torch

        class Sum(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a.sum()

            @staticmethod
            def backward(ctx, seed):
                return seed.expand(x_tensor.shape), seed.expand(w_tensor.shape)
        x_tensor = torch.from_numpy(x.copy()).requires_grad_()
        w_tensor = torch.from_numpy(w.copy()).requires_grad_()
        floors["torch floor"] = lambda: Sum.apply(x_tensor, w_tensor).backward()
    if importlib.util.find_spec("jax") is not None:
        import jax

        floor = jax.jit(jax.value_and_grad(lambda a, b: jax.numpy.sum(a * b), argnums=(0, 1)))
        x_array, w_array = jax.numpy.asarray(x), jax.numpy.asarray(w)
        floors["JAX floor"] = lambda: jax.block_until_ready(floor(x_array, w_array))
    return floors


def check_agreement(calls: dict, x, w) -> None:
    """The wrappers' gradient with respect to x is enzpy's (a benchmark of a wrong result means nothing)."""
    expected = calls["enzpy vjp"]()[0]
    for name in ("torch", "JAX"):
        if calls.get(name) is None:
            continue
        got = calls[name]()
        got = got[1][0] if name == "JAX" else got
        got = np.asarray(got.detach().numpy() if hasattr(got, "detach") else got)
        if not np.allclose(got, expected, rtol=1e-12, atol=1e-12):
            raise AssertionError(f"{name}'s gradient differs from enzpy's")


def measure() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for size in SIZES:
        x, w = rng.uniform(-1.0, 1.0, size), rng.uniform(0.5, 1.5, size)
        calls = enzpy_calls(weighted_energy, x, w)
        calls["torch"] = torch_call(weighted_energy, x, w)
        calls["JAX"] = jax_call(weighted_energy, x, w)
        check_agreement(calls, x, w)
        calls.update(framework_floors(x, w))
        seconds = 0.4 if size < 1000 else 2.0
        rows.append({"size": size, **{name: (None if call is None else microseconds(call, seconds))
                                      for name, call in calls.items()}})
    return rows


def _cell(value, digits=1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ratio(value, base) -> str:
    return "—" if value is None else f"{value / base:.2f}x"


def report(rows: list[dict]) -> str:
    import platform

    versions = []
    for name in ("torch", "jax"):
        if importlib.util.find_spec(name) is not None:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
    lines = ["# PyTorch and JAX wrappers: overhead over enzpy", "",
             f"`python -m benchmarks.interop_overhead`, microseconds per value + gradient, best of five rounds, "
             f"one process; numba {numba.__version__}, {', '.join(versions) or 'no torch, no JAX'}, Python "
             f"{platform.python_version()}. Kernel: `s += w[i] * sin(x[i]) * x[i]`, gradient with respect to "
             "both arrays. enzpy vjp: `vjp` + pullback, what the wrappers call; torch: forward + "
             "`backward()` on CPU tensors; JAX: `jit(value_and_grad(...))`. Ratios: wrapper / enzpy "
             "value_and_grad, the fastest way to the same numbers without a framework. Floors: the "
             "framework with no kernel (a torch.autograd.Function returning a sum; JAX's jit(value_and_grad) "
             "of `jnp.sum(x * w)`), what any wrapper pays on top of the kernel.", "",
             "| elements | enzpy vjp us | enzpy value_and_grad us | torch us | torch floor us | JAX us | "
             "JAX floor us | torch / enzpy | JAX / enzpy |", "|---:|" + "---:|" * 8]
    for row in rows:
        base = row["enzpy value_and_grad"]
        lines.append(f"| {row['size']:,} | {_cell(row['enzpy vjp'])} | {_cell(base)} | {_cell(row['torch'])} | "
                     f"{_cell(row.get('torch floor'))} | {_cell(row['JAX'])} | {_cell(row.get('JAX floor'))} | "
                     f"{_ratio(row['torch'], base)} | {_ratio(row['JAX'], base)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS_DIRECTORY)
    options = parser.parse_args(argv)
    text = report(measure())
    print(text)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "interop_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
