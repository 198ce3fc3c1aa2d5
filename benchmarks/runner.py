"""Measure one problem instance: check it, then time every column on it.

Nothing is timed before it is checked. The numba objective must equal the
plain NumPy one; every gradient (enzpy's, JAX's, PyTorch's) must match
5-point finite differences of the numba objective along random directions;
and enzpy's gradients must also match a framework's element by element when
one is installed. A contender that fails to build, to run or to check becomes
an error cell with a short reason; the rest of the run goes on.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import numpy as np

from .frameworks import Framework
from .problems import Contender, Instance
from .progress import Progress
from .timing import TimingPlan, first_call, interleaved_medians

GRADIENT_COLUMNS = ("enzpy", "enzpy_unoptimized", "jax", "torch")
COLUMNS = ("primal",) + GRADIENT_COLUMNS
TITLES = {"primal": "primal (numba)", "enzpy": "enzpy", "enzpy_unoptimized": "enzpy optimize=False",
          "jax": "JAX", "torch": "PyTorch"}

OBJECTIVE_TOLERANCE = 1e-9
"""numba vs NumPy, relative to max(1, |value|): same operations, different order."""
FINITE_DIFFERENCE_TOLERANCE = 1e-6
"""Relative; the 5-point rule's error at step 1e-4 is far below it for these smooth objectives."""
AGREEMENT_TOLERANCE = 1e-8
"""enzpy vs a framework, relative to the gradient's largest entry (ADBench's 1e-8)."""
DIRECTIONS = 2
FINITE_DIFFERENCE_STEP = 1e-4


@dataclass
class Cell:
    median_seconds: float | None = None
    first_call_seconds: float | None = None
    repetitions: int = 0
    error: str | None = None
    """Why there is no time: the contender failed to build, run or check."""
    missing: str | None = None
    """The framework is not installed (a blank cell, not an error)."""

    @property
    def ok(self) -> bool:
        return self.median_seconds is not None


@dataclass
class Row:
    family: str
    label: str
    adbench: bool
    gradient_kind: str
    cells: dict[str, Cell] = field(default_factory=lambda: {column: Cell() for column in COLUMNS})
    notes: list[str] = field(default_factory=list)

    def ratio(self, numerator: str, denominator: str) -> float | None:
        top, bottom = self.cells[numerator], self.cells[denominator]
        if top.ok and bottom.ok:
            return top.median_seconds / bottom.median_seconds
        return None


def short_reason(error: BaseException) -> str:
    """The first clause of an error: enzpy's messages go on to name mangled LLVM symbols."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    for cut in (" (function @", "; in kernel", " in function @"):
        text = text.split(cut)[0]
    if len(text) > 90:
        text = text[:87] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def relative_difference(actual, expected) -> float:
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    if actual.shape != expected.shape:
        return float("inf")
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return float(np.max(np.abs(actual - expected))) / scale if actual.size else 0.0


class FiniteDifferences:
    """Directional derivatives of the numba objective, computed once per instance."""

    def __init__(self, instance: Instance):
        self.instance = instance
        point = instance.parameters()
        rng = np.random.default_rng(7)
        self.directions = [instance.direction_scale() * rng.standard_normal(point.size) for _ in range(DIRECTIONS)]
        self.derivatives = []
        for direction in self.directions:
            values = [np.asarray(instance.objective_at(point + s * FINITE_DIFFERENCE_STEP * direction), dtype=float)
                      for s in (-2, -1, 1, 2)]
            self.derivatives.append((values[0] - 8 * values[1] + 8 * values[2] - values[3]) /
                                    (12 * FINITE_DIFFERENCE_STEP))

    def worst_error(self, gradient: np.ndarray) -> float:
        return max(relative_difference(self.instance.directional(gradient, direction), derivative)
                   for direction, derivative in zip(self.directions, self.derivatives))


def build_contender(instance: Instance, column: str, frameworks: dict[str, Framework]) -> Contender:
    if column == "enzpy":
        return instance.enzpy_gradient(optimize=True)
    if column == "enzpy_unoptimized":
        return instance.enzpy_gradient(optimize=False)
    return {"jax": instance.jax_gradient, "torch": instance.torch_gradient}[column](frameworks[column].module)


def measure(instance: Instance, frameworks: dict[str, Framework], plan: TimingPlan, progress: Progress) -> Row:
    where = f"{instance.family} {instance.label}"
    row = Row(instance.family, instance.label, instance.adbench, instance.gradient_kind)

    progress.show(f"{where}: NumPy reference objective")
    reference = instance.numpy_objective()
    progress.show(f"{where}: primal (numba), first call")
    primal = instance.primal(fresh=True)
    seconds, value = first_call(primal)
    difference = relative_difference(value, reference)
    if not difference <= OBJECTIVE_TOLERANCE:
        # A harness bug, not a result: time nothing on a problem whose objective is wrong.
        for cell in row.cells.values():
            cell.error = f"numba objective differs from NumPy (relative {difference:.1e})"
        return row
    row.cells["primal"].first_call_seconds = seconds

    progress.show(f"{where}: finite differences")
    finite_differences = FiniteDifferences(instance)

    # Compile and run every contender once, then check them all (enzpy against
    # a framework's gradient), then time the primal and the ones that passed together.
    results: dict[str, tuple[Contender, object]] = {}
    for column in GRADIENT_COLUMNS:
        cell = row.cells[column]
        framework = frameworks.get(column)
        if framework is not None and framework.module is None:
            cell.missing = framework.version
            continue
        progress.show(f"{where}: {TITLES[column]}, first call (compile)")
        try:
            contender = build_contender(instance, column, frameworks)
            cell.first_call_seconds, result = first_call(contender.call)
            results[column] = (contender, result)
        except Exception as error:       # any failure is one cell's result, not the run's end
            cell.error = short_reason(error)

    gradients = {}
    for column, (contender, result) in list(results.items()):
        progress.show(f"{where}: {TITLES[column]}, checking the {instance.gradient_kind}")
        cell = row.cells[column]
        try:
            gradient = contender.gradient_of(result)
            if contender.value_of is not None:
                difference = relative_difference(contender.value_of(result), reference)
                if not difference <= OBJECTIVE_TOLERANCE:
                    raise CheckFailed(f"objective differs from NumPy (relative {difference:.1e})")
            error = finite_differences.worst_error(gradient)
            if not error <= FINITE_DIFFERENCE_TOLERANCE:
                raise CheckFailed(f"{instance.gradient_kind} differs from finite differences (relative {error:.1e})")
            gradients[column] = gradient
        except Exception as error:
            cell.error = short_reason(error) if not isinstance(error, CheckFailed) else str(error)
            del results[column]

    oracle = next((column for column in ("jax", "torch") if column in gradients), None)
    for column in ("enzpy", "enzpy_unoptimized"):
        if column not in gradients:
            continue
        if oracle is None:
            row.notes.append(f"{TITLES[column]} checked against finite differences only (no JAX or PyTorch)")
            continue
        difference = relative_difference(gradients[column], gradients[oracle])
        if not difference <= AGREEMENT_TOLERANCE:
            row.cells[column].error = f"differs from {TITLES[oracle]} (relative {difference:.1e})"
            del results[column]

    progress.show(f"{where}: timing " + ", ".join(TITLES[column] for column in ["primal", *results]))
    calls = {"primal": primal, **{column: contender.call for column, (contender, _) in results.items()}}
    for column, timing in interleaved_medians(calls, plan).items():
        row.cells[column].median_seconds, row.cells[column].repetitions = timing.median_seconds, timing.repetitions
    # Compiled functions and tapes of big instances add up over a run.
    results.clear()
    gc.collect()
    return row


class CheckFailed(Exception):
    """A contender ran but its result is wrong: the cell says how wrong."""
