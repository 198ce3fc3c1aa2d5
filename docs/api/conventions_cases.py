"""The cases behind `conventions.rst`: derivatives at points where a function has none.

Each case is a kernel (written as a numba-compilable expression), the JAX
expression that computes the same function, and a point. Running this file
differentiates every case with enzpy (`grad`, and `jvp` along each input
coordinate) and with JAX (`jax.grad`, `jax.jvp`, float64), and

    python docs/api/conventions_cases.py --write   # rewrites conventions.csv from the results
    python docs/api/conventions_cases.py --check   # compares the results with conventions.csv

`--check` exits with status 1 and lists the cells that differ; without JAX
installed it checks the enzpy columns only (and says so). `tests/test_docs.py`
runs `--check`, so the table in the docs is what enzpy returns today.

A cell lists the partial derivatives in argument order, array entries
flattened: for `grad`, the gradient; for `jvp`, the tangent of the result
along each input coordinate in turn (the same numbers where the function is
differentiable). Negative zero is written 0.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE = Path(__file__).with_name("conventions.csv")
HEADER = ["case", "at", "enzpy grad", "enzpy jvp", "JAX", "JAX grad", "JAX jvp", "same"]


@dataclass(frozen=True)
class Case:
    code: str
    """The kernel's body, a Python expression of the arguments (x, y; or x an array)."""
    at: str
    """The point, as Python: a tuple of the arguments."""
    jax: str
    """The same function in JAX (jnp, lax), an expression of the same arguments."""
    arguments: str = "x"
    error_model: str = "python"
    """numba's error_model: "numpy" makes float division by zero IEEE (inf, nan) instead of raising."""


CASES = [
    # absolute value
    Case("abs(x)", "(0.0,)", "jnp.abs(x)"),
    Case("abs(x)", "(-0.0,)", "jnp.abs(x)"),
    # max, min and their NumPy forms, at ties
    Case("max(x, y)", "(1.0, 1.0)", "jnp.maximum(x, y)", "x, y"),
    Case("min(x, y)", "(1.0, 1.0)", "jnp.minimum(x, y)", "x, y"),
    Case("np.maximum(x, y)", "(1.0, 1.0)", "jnp.maximum(x, y)", "x, y"),
    Case("np.minimum(x, y)", "(1.0, 1.0)", "jnp.minimum(x, y)", "x, y"),
    Case("np.fmax(x, y)", "(1.0, 1.0)", "jnp.fmax(x, y)", "x, y"),
    Case("np.fmin(x, y)", "(1.0, 1.0)", "jnp.fmin(x, y)", "x, y"),
    Case("max(x, 0.0)", "(0.0,)", "jnp.maximum(x, 0.0)"),
    Case("np.max(x)", "(np.array([1.0, 1.0]),)", "jnp.max(x)"),
    Case("np.sum(np.clip(x, 0.0, 1.0))", "(np.array([0.0, 1.0]),)", "jnp.sum(jnp.clip(x, 0.0, 1.0))"),
    Case("x[np.argmax(x)]", "(np.array([1.0, 1.0]),)", "x[jnp.argmax(x)]"),
    # comparisons and branches: the derivative of the branch taken
    Case("x if x > y else y", "(1.0, 1.0)", "jnp.where(x > y, x, y)", "x, y"),
    Case("x if x >= y else y", "(1.0, 1.0)", "jnp.where(x >= y, x, y)", "x, y"),
    Case("x * x if x > 0.0 else -x", "(0.0,)", "lax.cond(x > 0.0, lambda v: v * v, lambda v: -v, x)"),
    Case("np.sign(x)", "(0.0,)", "jnp.sign(x)"),
    Case("np.sign(x)", "(2.0,)", "jnp.sign(x)"),
    Case("math.sqrt(x) if x > 0.0 else 0.0", "(0.0,)", "jnp.where(x > 0.0, jnp.sqrt(x), 0.0)"),
    Case("max(math.sqrt(x), y)", "(0.0, 0.001)", "jnp.maximum(jnp.sqrt(x), y)", "x, y"),
    Case("np.sum(np.where(x > 0.0, np.sqrt(x), 0.0))", "(np.array([0.0, 1.0]),)",
         "jnp.sum(jnp.where(x > 0.0, jnp.sqrt(x), 0.0))"),
    # roots and norms
    Case("math.sqrt(x)", "(0.0,)", "jnp.sqrt(x)"),
    Case("math.sqrt(x * x)", "(0.0,)", "jnp.sqrt(x * x)"),
    Case("np.cbrt(x)", "(0.0,)", "jnp.cbrt(x)"),
    Case("math.hypot(x, y)", "(0.0, 0.0)", "jnp.hypot(x, y)", "x, y"),
    Case("np.linalg.norm(x)", "(np.array([0.0, 0.0]),)", "jnp.linalg.norm(x)"),
    # rounding and integer conversion: piecewise constant
    Case("np.floor(x)", "(1.0,)", "jnp.floor(x)"),
    Case("np.round(x)", "(0.5,)", "jnp.round(x)"),
    Case("float(int(x))", "(1.0,)", "x.astype(jnp.int64).astype(jnp.float64)"),
    Case("math.floor(x) * 1.0", "(1.0,)", "jnp.floor(x).astype(jnp.int64) * 1.0"),
    # powers at x = 0
    Case("x ** 2", "(0.0,)", "x ** 2"),
    Case("x ** 0.5", "(0.0,)", "x ** 0.5"),
    Case("x ** y", "(0.0, 2.0)", "x ** y", "x, y"),
    Case("x ** y", "(0.0, 0.5)", "x ** y", "x, y"),
    Case("x ** y", "(0.0, 0.0)", "x ** y", "x, y"),
    Case("x ** y", "(0.0, -1.0)", "x ** y", "x, y"),
    Case("x ** y", "(-8.0, 1.0 / 3.0)", "x ** y", "x, y"),
    # logarithms, inverse trigonometry
    Case("math.log(x)", "(0.0,)", "jnp.log(x)"),
    Case("np.log(x)", "(-1.0,)", "jnp.log(x)"),
    Case("np.arcsin(x)", "(1.0,)", "jnp.arcsin(x)"),
    Case("math.atan2(y, x)", "(0.0, 0.0)", "jnp.arctan2(y, x)", "x, y"),
    # division by zero (IEEE results need numba's error_model="numpy")
    Case("1.0 / x", "(0.0,)", "1.0 / x", error_model="numpy"),
    Case("x / y", "(1.0, 0.0)", "x / y", "x, y", error_model="numpy"),
    Case("x / y", "(0.0, 0.0)", "x / y", "x, y", error_model="numpy"),
]


def number(value) -> str:
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0.0:
        return "0"
    if value.is_integer():
        return str(int(value))
    return f"{value:.6g}"


def cell(values) -> str:
    return ", ".join(number(v) for v in values)


def flat(values) -> list[float]:
    return [float(v) for value in values for v in np.ravel(np.asarray(value, dtype=np.float64))]


def directions(point):
    """One tangent per input coordinate: unit tangents aligned with the arguments."""
    for k, value in enumerate(point):
        for j in range(np.size(value)):
            tangent = [np.zeros_like(v) if isinstance(v, np.ndarray) else 0.0 for v in point]
            if isinstance(value, np.ndarray):
                tangent[k] = np.zeros_like(value)
                tangent[k].flat[j] = 1.0
            else:
                tangent[k] = 1.0
            yield tuple(tangent)


def enzpy_cells(case: Case) -> tuple[str, str]:
    import numba

    import enzpy

    namespace = {"np": np, "math": math}
    function = eval(f"lambda {case.arguments}: {case.code}", namespace)
    kernel = enzpy.differentiate(numba.njit(error_model=case.error_model)(function))
    point = eval(case.at, namespace)
    gradient = kernel.grad(*point)
    tangents = [kernel.jvp(point, tangent)[1] for tangent in directions(point)]
    return cell(flat(gradient)), cell(flat(tangents))


def jax_cells(case: Case) -> tuple[str, str]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    function = eval(f"lambda {case.arguments}: {case.jax}", {"jnp": jnp, "lax": lax})
    point = tuple(jnp.asarray(v, dtype=jnp.float64) for v in eval(case.at, {"np": np}))
    gradient = jax.grad(function, argnums=tuple(range(len(point))))(*point)
    tangents = [jax.jvp(function, point, tuple(jnp.asarray(t, dtype=jnp.float64) for t in tangent))[1]
                for tangent in directions(tuple(np.asarray(v) if v.ndim else float(v) for v in point))]
    return cell(flat(gradient)), cell(flat(tangents))


def literal(text: str) -> str:
    return f"``{text}``"


def rows(with_jax: bool) -> list[list[str]]:
    table = []
    for case in CASES:
        grad, jvp = enzpy_cells(case)
        jax_grad, jax_jvp = jax_cells(case) if with_jax else ("", "")
        same = "" if not with_jax else "yes" if (grad, jvp) == (jax_grad, jax_jvp) else "**no**"
        at = case.at.strip("()").rstrip(",") if case.arguments == "x" else case.at
        table.append([literal(case.code), literal(f"{case.arguments} = {at}"), grad, jvp, literal(case.jax),
                      jax_grad, jax_jvp, same])
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite conventions.csv (needs JAX)")
    action.add_argument("--check", action="store_true", help="compare with conventions.csv")
    arguments = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        with_jax = True
    except ImportError:
        with_jax = False
    if arguments.write:
        if not with_jax:
            print("--write needs JAX (pip install -e '.[bench]')", file=sys.stderr)
            return 2
        with TABLE.open("w", newline="") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows(rows(with_jax=True))
        print(f"wrote {TABLE} ({len(CASES)} cases)")
        return 0
    with TABLE.open(newline="") as file:
        stored = list(csv.reader(file))
    if stored[0] != HEADER or len(stored) - 1 != len(CASES):
        print(f"{TABLE.name}: header or number of rows differs from the cases; run --write", file=sys.stderr)
        return 1
    checked = [2, 3] + ([5, 6, 7] if with_jax else [])
    differences = []
    for expected, got in zip(stored[1:], rows(with_jax)):
        for column in checked:
            if expected[column] != got[column]:
                differences.append(f"{expected[0]} at {expected[1]}: {HEADER[column]} is {got[column]!r}, "
                                   f"the table says {expected[column]!r}")
    for line in differences:
        print(line)
    print(f"{len(CASES)} cases, columns checked: {', '.join(HEADER[c] for c in checked)}"
          + ("" if with_jax else " (JAX not installed: JAX columns not checked)"))
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
