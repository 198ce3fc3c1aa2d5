"""The random-kernel fuzzer (enzpy.fuzz): the grammar writes kernels numba compiles, the checker
passes correct derivatives and catches wrong ones, the shrinker keeps a failure while cutting the
rest, the runner survives a dying or hanging kernel, and a fixed set of seeds differentiates right."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import pytest

from enzpy.fuzz import check as checking
from enzpy.fuzz.__main__ import reproducer
from enzpy.fuzz.check import Job, Verdict, check
from enzpy.fuzz.grammar import generate
from enzpy.fuzz.runner import Runner
from enzpy.fuzz.shrink import shrink

REPO = str(Path(__file__).resolve().parents[1])

# Seeds the suite checks every run: each kernel in both modes against finite differences and
# each other. A wrong derivative found by a longer run becomes a case in tests/kernels/fuzzed.py.
FIXED_SEEDS = range(0, 24)


def test_the_grammar_writes_kernels_numba_compiles_and_covers_its_features():
    sources = []
    for seed in range(60):
        kernel = generate(seed)
        assert generate(seed) == kernel                  # a seed is a kernel, on every run
        job = Job.of(kernel)
        function = numba.njit(checking.load(job.source))
        outputs = checking.outputs(job, function, checking.storage(job))
        assert outputs.ndim == 1 and outputs.size >= kernel.n + 1
        sources.append(job.source)
    text = "\n".join(sources)
    for feature in ("for i", "while ", "if ", "break", "return acc", "+=", "np.zeros_like", ", t1 = t1, t0",
                    "scalar_helper0(", "array_helper(", "np.sum(", "np.sin(", "M[", "def kernel(x, y, M, s, m)",
                    "continue", "int(abs(y[0])", "M @ x"):
        assert feature in text, f"no kernel of 60 seeds has {feature!r}"
    kinds = {(generate(seed).dtype, generate(seed).result, generate(seed).layout) for seed in range(60)}
    assert {dtype for dtype, _, _ in kinds} == {"float32", "float64"}
    assert {result for _, result, _ in kinds} == {"scalar", "array", "tuple", "none"}
    assert {layout for _, _, layout in kinds} == {"C", "strided", "overlapping"}


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_fixed_seeds_differentiate_right(seed):
    verdict = check(Job.of(generate(seed)))
    assert verdict.kind in ("ok", "kink", "skip"), f"seed {seed}: {verdict.kind}\n{verdict.detail}"
    if verdict.kind == "ok":
        tolerance = 2e-4 if generate(seed).dtype == "float32" else 1e-9
        assert verdict.errors["dot_test"] <= tolerance


def test_most_fixed_seeds_are_compared_with_finite_differences():
    # A checker that called everything a kink would pass the test above.
    kinds = [check(Job.of(generate(seed))).kind for seed in FIXED_SEEDS[:8]]
    assert kinds.count("ok") >= 5, kinds


_WRONG_RULE = textwrap.dedent("""
    import enzpy
    import numba
    import numpy as np

    @enzpy.custom_vjp
    @numba.njit
    def doubled(a):
        return 2.0 * a

    def _forward(a):
        return 2.0 * a, (a,)

    def _backward(residuals, cotangent):
        return (FACTOR * cotangent,)

    doubled.defvjp(_forward, _backward)

    def kernel(x, y, s, m):
        n = x.shape[0]
        acc0 = 0.25
        acc1 = 0.5
        for i in range(n):
            acc0 += doubled(x[i]) * s
            acc1 += np.sin(y[i])
        y[0] = acc1 * acc1
        return acc0 + acc1
""")


def _rule_job(factor: float) -> Job:
    return Job(_WRONG_RULE.replace("FACTOR", repr(factor)), "scalar", "float64", False, 4, 2, 7)


def test_the_checker_passes_a_right_rule_and_catches_a_wrong_one():
    assert check(_rule_job(2.0)).kind == "ok"
    verdict = check(_rule_job(3.0))        # reverse mode uses the rule, forward mode does not
    assert verdict.kind == "mismatch" and "forward against reverse" in verdict.detail, verdict


def test_the_checker_catches_a_forward_mode_that_disagrees_with_finite_differences(monkeypatch):
    # Both modes wrong the same way pass the dot test; only finite differences catch it.
    forward, reverse = checking._forward, checking._reverse
    monkeypatch.setattr(checking, "_forward", lambda *arguments: 1.01 * forward(*arguments))
    monkeypatch.setattr(checking, "_reverse", lambda *arguments: 1.01 * reverse(*arguments))
    verdict = check(Job.of(generate(0)))
    assert verdict.kind == "mismatch" and "finite differences" in verdict.detail, verdict


def test_shrinking_keeps_the_failure_and_cuts_the_rest():
    seed = next(s for s in range(200) if "np.cos(" in generate(s).source()
                and len(generate(s).source().splitlines()) > 20)
    kernel = generate(seed)
    small, spent = shrink(kernel, lambda k: "np.cos(" in k.source(), budget=400)
    assert "np.cos(" in small.source() and 0 < spent <= 400
    body = small.source().split("def kernel")[1].splitlines()
    assert len(body) <= 8, small.source()          # def, n =, the locals, one statement, a return
    assert small.n == 2 and small.m == 0


def test_a_wrong_rule_shrinks_to_the_statement_that_uses_it():
    job = _rule_job(3.0)
    # Shrink the real failure through the kernel tree: build the kernel from the grammar's classes.
    from enzpy.fuzz.grammar import Apply, Assign, Element, For, Kernel, Name, Store

    uses_rule = Assign("acc0", Apply("doubled({0}) * s", (Element("x", "i1"),)), augmented=True)
    noise = Assign("acc1", Apply("np.sin({0})", (Element("y", "i1"),)), augmented=True)
    body = (For("i1", "n", (uses_rule, noise)), Store(Element("y", "0"), Name("acc1 * acc1"), augmented=False))
    kernel = Kernel(body=body, result="scalar", returned="acc0 + acc1", accumulators=2, buffers=(), helpers=(),
                    dtype="float64", matrix=False, n=4, m=2, seed=7)
    prelude = job.source.split("def kernel")[0]

    def fails(candidate):
        source = prelude + "def kernel" + candidate.source().split("def kernel")[1]
        return check(Job(source, "scalar", "float64", False, candidate.n, candidate.m, 7)).kind == "mismatch"

    assert fails(kernel)
    small, _ = shrink(kernel, fails, budget=60)
    text = small.source().split("def kernel")[1]
    assert "doubled(" in text and "np.sin" not in text and "y[0]" not in text, text


def test_the_runner_survives_a_kernel_that_kills_its_process_or_hangs():
    dying = Job("import os\nos._exit(3)\n", "scalar", "float64", False, 2, 0, 0)
    hanging = Job("import time\ntime.sleep(60)\n", "scalar", "float64", False, 2, 0, 0)
    with Runner(timeout=20) as runner:
        verdict = runner.check(dying)
        assert verdict.kind == "crash" and "exit status 3" in verdict.detail, verdict
        assert runner.check(Job.of(generate(1))).kind in ("ok", "kink", "skip")
        runner.timeout = 3
        assert runner.check(hanging).kind == "timeout"
        runner.timeout = 60
        assert runner.check(Job.of(generate(1))).kind in ("ok", "kink", "skip")


def test_a_reproducer_runs_on_its_own(tmp_path):
    kernel = generate(3)
    path = tmp_path / "reproducer.py"
    path.write_text(reproducer(kernel, Verdict("mismatch", "made up\nfor the test")))
    environment = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=environment,
                            timeout=300)
    assert result.returncode == 0 and "Verdict(kind='ok'" in result.stdout, result.stdout + result.stderr[-2000:]
    assert path.read_text().startswith("# enzpy.fuzz: mismatch (seed 3)\n# made up\n# for the test\n")


def test_the_command_line_reports_counts(tmp_path):
    environment = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-m", "enzpy.fuzz", "--seconds", "3", "--seed", "5", "--out",
                             str(tmp_path / "found")], capture_output=True, text=True, env=environment,
                            timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    summary = next(line for line in result.stdout.splitlines() if "kernels (seeds" in line)
    assert "kernels (seeds 5.." in summary and " ok" in summary, result.stdout
    assert not (tmp_path / "found").exists()
