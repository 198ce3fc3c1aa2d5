"""The results as tables (markdown, also printed), the issue's targets, and a PNG plot.

Ratios are time ratios, so below 1 means the first-named is faster:
grad / primal = enzpy gradient / numba primal; opt / unopt = enzpy on the
pre-AD-optimized IR / enzpy on the unoptimized IR; enzpy / JAX and
enzpy / PyTorch compare the gradient columns. A blank cell is a framework
that is not installed; an error cell points to its reason below the table.
"""

from __future__ import annotations

import math
from pathlib import Path

from .runner import COLUMNS, TITLES, Row

GRADIENT_TARGET = 3.0
"""Gradient at most 3x the primal (geometric mean over the ADBench rows; issue 19, 5x in issue 6)."""
FIRST_CALL_TARGET = 2.0
"""enzpy's first call (a fresh dispatcher: numba's compile and enzpy's) at most 2x numba's first call."""
OPTIMIZATION_TARGET = 2.0
"""Optimizing before AD at least 2x faster than AD on unoptimized IR."""

COLUMN_DESCRIPTIONS = """\
- primal: the numba kernel (GMM, LSTM, Burgers, ODE, MLP: the objective; BA: the residuals).
- enzpy: `differentiate(kernel)`, reverse mode on the pre-AD-optimized IR, called
  through `autodiff` with the data `Const`.
- enzpy optimize=False: the same on numba's unoptimized IR (the baseline).
- JAX: `jit(value_and_grad)` of a vectorized JAX version (`lax.scan` / `fori_loop`
  for the recurrences).
- PyTorch: eager autograd on the CPU (`torch.autograd.grad`) of a vectorized version
  (the LSTM, Burgers and ODE recurrences loop in Python).
- BA, every gradient column: the Jacobian's non-zero blocks, compressed: residuals on
  per-observation copies of cameras and points (gathered, timed), then reverse mode seeded on
  all observations at once for each residual component (reprojection x, y, weight error):
  enzpy with one sweep of three lanes (`autodiff(..., width=3)`, buffers kept between calls),
  JAX sharing one `jax.vjp` linearization between three pullbacks, PyTorch one graph; each
  returns its rows as computed (assembled into blocks outside the timing).
- All single-threaded (numba and enzpy are, their BLAS too; JAX and PyTorch are held to one thread).
- first call: a freshly built callable's first call, compile included (numba
  dispatcher, enzpy capture + AD + JIT, JAX trace + XLA); PyTorch has no compile step."""


def milliseconds(seconds: float) -> str:
    value = seconds * 1e3
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"


def seconds(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.3g}" if ratio < 100 else f"{ratio:.0f}"


class Footnotes:
    """Error reasons, numbered once per column and reason, naming every row that shares them."""

    def __init__(self):
        self.places: dict[str, list[str]] = {}

    def mark(self, column: str, where: str, error: str) -> str:
        reason = f"{TITLES[column]}: {error}"
        places = self.places.setdefault(reason, [])
        if where not in places:
            places.append(where)
        return f"error [{list(self.places).index(reason) + 1}]"

    def markdown(self) -> str:
        return "\n".join(f"[{number}] {reason} ({', '.join(places)})"
                         for number, (reason, places) in enumerate(self.places.items(), 1))


def cell_text(row: Row, column: str, footnotes: Footnotes, first_call: bool) -> str:
    cell = row.cells[column]
    if cell.missing is not None:
        return ""
    if cell.error is not None and not (first_call and cell.first_call_seconds is not None):
        return footnotes.mark(column, f"{row.family} {row.label}", cell.error)
    if first_call:
        return seconds(cell.first_call_seconds) if cell.first_call_seconds is not None else ""
    return milliseconds(cell.median_seconds)


def times_table(rows: list[Row], footnotes: Footnotes) -> str:
    header = (["problem", "size"] + [f"{TITLES[c]} ms" for c in COLUMNS] +
              ["grad / primal", "opt / unopt", "enzpy / JAX", "enzpy / PyTorch"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for row in rows:
        cells = [row.family, row.label] + [cell_text(row, c, footnotes, first_call=False) for c in COLUMNS]
        cells += [ratio_text(row.ratio("enzpy", "primal")), ratio_text(row.ratio("enzpy", "enzpy_unoptimized")),
                  ratio_text(row.ratio("enzpy", "jax")), ratio_text(row.ratio("enzpy", "torch"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def first_call_table(rows: list[Row], footnotes: Footnotes) -> str:
    header = ["problem", "size"] + [f"{TITLES[c]} s" for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(COLUMNS)]
    for row in rows:
        cells = [row.family, row.label] + [cell_text(row, c, footnotes, first_call=True) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def targets(rows: list[Row]) -> list[str]:
    """One line per target of issue 6: the measured value, met or missed, and on what."""
    adbench = [row for row in rows if row.adbench]
    lines = []

    ratios = [row.ratio("enzpy", "primal") for row in adbench]
    measured = [r for r in ratios if r is not None]
    if measured:
        value = geometric_mean(measured)
        line = (f"- gradient / primal, geometric mean over {counted(len(measured), 'ADBench row')}: {value:.1f}x "
                f"(target at most {GRADIENT_TARGET:.0f}x): {'met' if value <= GRADIENT_TARGET else 'missed'}")
        if len(measured) < len(ratios):
            line += f"; {counted(len(ratios) - len(measured), 'row')} without an enzpy time"
        lines.append(line)
    else:
        lines.append("- gradient / primal: no ADBench row has an enzpy time")

    speedups = [(row, row.ratio("enzpy_unoptimized", "enzpy")) for row in rows]
    speedups = [(row, speedup) for row, speedup in speedups if speedup is not None]
    failing = [row for row in rows if row.cells["enzpy"].ok and row.cells["enzpy_unoptimized"].error]
    line = "- optimized vs unoptimized AD: "
    if speedups:
        value = geometric_mean([speedup for _, speedup in speedups])
        least_row, least = min(speedups, key=lambda pair: pair[1])
        line += (f"unoptimized / optimized time {value:.2f}, geometric mean over "
                 f"{counted(len(speedups), 'row')} where both run (least: {least_row.family} {least_row.label}, "
                 f"{least:.2f}; target at least {OPTIMIZATION_TARGET:.0f}): "
                 f"{'met' if value >= OPTIMIZATION_TARGET else 'missed'}")
    else:
        line += "no row where both run"
    if failing:
        families = ", ".join(sorted({row.family for row in failing}))
        line += f"; on {counted(len(failing), 'row')} ({families}) only the optimized IR can be differentiated"
    lines.append(line)

    first_calls = [(row, row.cells["enzpy"].first_call_seconds, row.cells["primal"].first_call_seconds)
                   for row in adbench]
    first_calls = [(row, enzpy / primal) for row, enzpy, primal in first_calls if enzpy and primal]
    if first_calls:
        over = [(row, ratio) for row, ratio in first_calls if ratio > FIRST_CALL_TARGET]
        ratios = [ratio for _, ratio in first_calls]
        lines.append(f"- enzpy's first call / numba's first call (both on fresh dispatchers, compile included), "
                     f"{min(ratios):.2f}-{max(ratios):.2f}x over {counted(len(first_calls), 'ADBench row')} "
                     f"(target at most {FIRST_CALL_TARGET:.0f}x on every row): "
                     + ("met" if not over else "missed on " + ", ".join(
                         f"{row.family} {row.label} ({ratio:.2f})" for row, ratio in over)))

    for column, name in (("jax", "JAX"), ("torch", "PyTorch")):
        goal = f"- enzpy faster than {name} on every ADBench row: "
        if adbench and all(row.cells[column].missing for row in adbench):
            lines.append(goal + f"not measured ({name} {adbench[0].cells[column].missing})")
            continue
        slower = [row for row in adbench if not (row.ratio("enzpy", column) or math.inf) < 1.0]
        lines.append(goal + ("met" if not slower else "missed on " + ", ".join(
            f"{row.family} {row.label} ({ratio_text(row.ratio('enzpy', column)) or 'no time'})" for row in slower)))
    return lines


def markdown(rows: list[Row], setting: str) -> str:
    footnotes = Footnotes()
    times = times_table(rows, footnotes)
    first_calls = first_call_table(rows, footnotes)
    notes = sorted({note for row in rows for note in row.notes})
    parts = [f"{setting}\n", "Median times (ms) and time ratios:\n", times,
             "\nFirst call (s), compile included:\n", first_calls, "\nTargets:\n", "\n".join(targets(rows))]
    if footnotes.places:
        parts += ["\nErrors:\n", footnotes.markdown()]
    if notes:
        parts += ["\nNotes:\n", "\n".join(f"- {note}" for note in notes)]
    parts += ["\nColumns:\n", COLUMN_DESCRIPTIONS]
    return "\n".join(parts) + "\n"


COLOURS = {"primal": "tab:gray", "enzpy": "tab:blue", "enzpy_unoptimized": "tab:cyan", "jax": "tab:green",
           "torch": "tab:red"}


def write_plot(rows: list[Row], path: Path, title: str) -> str | None:
    """Gradient time / primal time per row and column, and first-call times; None, or why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")      # no display on build machines
        import matplotlib.pyplot as pyplot
    except Exception as error:
        return f"no plot: matplotlib is not available ({type(error).__name__})"
    # BA labels carry their sizes in parentheses: too long under a bar.
    labels = [f"{row.family}\n{row.label.split(' (')[0]}" for row in rows]
    # One panel above the other: a full run has ~20 rows, too many for two side by side.
    figure, (left, right) = pyplot.subplots(2, 1, figsize=(max(8.0, 0.7 * len(rows) + 3), 11))
    gradient_columns = ("enzpy", "enzpy_unoptimized", "jax", "torch")
    width = 0.8 / len(gradient_columns)
    for offset, column in enumerate(gradient_columns):
        values = [row.ratio(column, "primal") or math.nan for row in rows]   # nan: no bar
        positions = [i + (offset - (len(gradient_columns) - 1) / 2) * width for i in range(len(rows))]
        left.bar(positions, values, width, label=TITLES[column], color=COLOURS[column])
    left.axhline(GRADIENT_TARGET, color="black", linestyle="--", linewidth=1, label=f"target {GRADIENT_TARGET:.0f}x")
    left.set_yscale("log")
    left.set_ylabel("gradient time / primal time (log)")
    left.set_title("gradient cost relative to the numba primal")
    width = 0.8 / len(COLUMNS)
    for offset, column in enumerate(COLUMNS):
        values = [row.cells[column].first_call_seconds or math.nan for row in rows]
        positions = [i + (offset - (len(COLUMNS) - 1) / 2) * width for i in range(len(rows))]
        right.bar(positions, values, width, label=TITLES[column], color=COLOURS[column])
    right.set_yscale("log")
    right.set_ylabel("seconds (log)")
    right.set_title("first call (compile included)")
    for axes in (left, right):
        axes.set_xticks(range(len(rows)))
        axes.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
        axes.legend(fontsize=8)
        axes.grid(axis="y", which="both", alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return None
