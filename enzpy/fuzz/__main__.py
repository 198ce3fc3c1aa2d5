"""`python -m enzpy.fuzz --seconds N --seed S`: differentiate random kernels until time is up.

Kernels are drawn for seeds S, S+1, ... and checked in a worker process
(`runner`). A mismatch, crash or timeout is shrunk (`shrink`) and saved
under `--out` as a runnable reproducer; the summary counts every verdict and
groups the refusals by their first line.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

from .check import Job
from .grammar import generate
from .runner import Runner
from .shrink import shrink


def _same_failure(first, second) -> bool:
    if first.kind != second.kind:
        return False
    if first.kind == "crash":                 # the same exception type
        return _last_line(first.detail).split(":")[0] == _last_line(second.detail).split(":")[0]
    return True


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def reproducer(kernel, verdict) -> str:
    """A script that rebuilds the failing check: the kernel's module text, then the check."""
    job = Job.of(kernel)
    header = "\n".join(f"# {line}" for line in [f"enzpy.fuzz: {verdict.kind} (seed {kernel.seed})",
                                                 *verdict.detail.strip().splitlines()[-12:]])
    settings = {key: value for key, value in job.to_dict().items() if key != "source"}
    return (f"{header}\n{job.source}\n\nif __name__ == '__main__':\n"
            "    from enzpy.fuzz.check import Job, check\n"
            f"    settings = {settings!r}\n"
            "    print(check(Job(source=open(__file__).read(), **settings), kernel))\n")


def _refusal_group(detail: str) -> str:
    first = detail.strip().splitlines()[0] if detail.strip() else ""
    return first[:140]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m enzpy.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to draw new kernels")
    parser.add_argument("--seed", type=int, default=0, help="the first kernel's seed")
    parser.add_argument("--out", default="fuzz-findings", help="folder for shrunk reproducers")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one kernel may take")
    parser.add_argument("--shrink-budget", type=int, default=150, help="checks spent shrinking one failure")
    parser.add_argument("--no-shrink", action="store_true", help="save failing kernels as drawn")
    options = parser.parse_args(argv)

    counts: collections.Counter = collections.Counter()
    refusals: collections.Counter = collections.Counter()
    failures = []
    deadline = time.monotonic() + options.seconds
    seed = options.seed
    started = time.monotonic()
    with Runner(timeout=options.timeout) as runner:
        while time.monotonic() < deadline:
            kernel = generate(seed)
            verdict = runner.check(Job.of(kernel))
            counts[verdict.kind] += 1
            if verdict.kind == "refused":
                refusals[_refusal_group(verdict.detail)] += 1
            if verdict.is_failure:
                if not options.no_shrink:
                    kernel, _ = shrink(kernel, lambda k: _same_failure(verdict, runner.check(Job.of(k))),
                                       options.shrink_budget)
                    verdict = runner.check(Job.of(kernel))
                os.makedirs(options.out, exist_ok=True)
                path = os.path.join(options.out, f"{verdict.kind}-seed{seed}.py")
                with open(path, "w") as handle:
                    handle.write(reproducer(kernel, verdict))
                failures.append((seed, verdict.kind, path))
                print(f"seed {seed}: {verdict.kind}, reproducer {path}", flush=True)
            seed += 1
    total = sum(counts.values())
    elapsed = time.monotonic() - started
    print(f"{total} kernels (seeds {options.seed}..{seed - 1}) in {elapsed:.0f} s: "
          + ", ".join(f"{counts[kind]} {kind}" for kind in sorted(counts, key=lambda k: -counts[k])))
    for text, count in refusals.most_common(10):
        print(f"  refused {count}x: {text}")
    for found_seed, kind, path in failures:
        print(f"  {kind}: seed {found_seed} -> {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
