"""The benchmark harness (benchmarks/) must not rot: its objectives and its end-to-end run.

Only tiny sizes and no JAX or PyTorch (optional extras the test suite does
not install): each problem's numba kernel against its plain NumPy objective,
and one small run of `python -m benchmarks` through its main function.
"""

import numpy as np
import pytest

from benchmarks.__main__ import main
from benchmarks.problems import all_problems
from benchmarks.runner import OBJECTIVE_TOLERANCE, FiniteDifferences, relative_difference


@pytest.mark.parametrize("name", sorted(all_problems()))
def test_numba_objective_matches_numpy(name):
    for instance in all_problems()[name].instances("tiny"):
        value = instance.primal(fresh=False)()
        reference = instance.numpy_objective()
        assert relative_difference(value, reference) <= OBJECTIVE_TOLERANCE, \
            f"{name} {instance.label}: numba {value!r} vs NumPy {reference!r}"


@pytest.mark.parametrize("name", sorted(all_problems()))
def test_objective_at_parameters_is_the_objective(name):
    # Finite differences perturb the flat parameters: unperturbed, they must give the primal back.
    instance = all_problems()[name].instances("tiny")[0]
    np.testing.assert_allclose(instance.objective_at(instance.parameters()), instance.primal(fresh=False)(),
                               rtol=1e-12)
    assert all(np.all(np.isfinite(d)) for d in FiniteDifferences(instance).derivatives)


def test_harness_runs_end_to_end(tmp_path, capsys):
    assert main(["--scale", "tiny", "--problems", "ode", "--no-jax", "--no-torch", "--no-plot",
                 "--output", str(tmp_path)]) == 0
    table = (tmp_path / "gradients-tiny.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| ODE"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # The primal has a time; enzpy's columns a time or an error cell (what enzpy can do
    # is tested elsewhere, not here); JAX and PyTorch are blank, not errors.
    assert float(cells[2]) > 0, row
    assert all(cell.startswith("error [") or float(cell) > 0 for cell in cells[3:5]), row
    assert cells[5:7] == ["", ""], row
    assert "Targets:" in table
