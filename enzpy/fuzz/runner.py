"""Run checks in a worker process, so that a crash or a hang of one kernel costs only the worker.

The worker (`python -m enzpy.fuzz.runner`) reads one job per line as JSON on
stdin and answers one verdict per line on stdout, behind a marker so that
anything else a kernel or numba prints is ignored. A worker that dies gives a
`crash` verdict naming its exit status; one that takes longer than the
timeout is killed and gives `timeout`. Either way a fresh worker takes the
next job. Workers are also replaced every `jobs_per_worker` jobs: each kernel
adds compiled code to the process.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

from .check import Job, Verdict, check

_MARKER = "ENZPY-FUZZ-VERDICT "


class Runner:
    """A worker process and the jobs it has run."""

    def __init__(self, timeout: float = 120.0, jobs_per_worker: int = 100):
        self.timeout = timeout
        self.jobs_per_worker = jobs_per_worker
        self.process: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.jobs = 0

    def _start(self) -> None:
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-m", "enzpy.fuzz.runner"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env=environment)
        self.lines = queue.Queue()
        threading.Thread(target=_forward_lines, args=(self.process.stdout, self.lines), daemon=True).start()
        self.jobs = 0

    def check(self, job: Job) -> Verdict:
        if self.process is None or self.process.poll() is not None or self.jobs >= self.jobs_per_worker:
            self.close()
            self._start()
        self.jobs += 1
        try:
            self.process.stdin.write(json.dumps(job.to_dict()) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.close()
            return Verdict("timeout", f"no verdict within {self.timeout:g} s")
        if line is None:
            status = self.process.wait()
            self.process = None
            return Verdict("crash", f"the worker process died (exit status {status})")
        return Verdict(**json.loads(line))

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _forward_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        if line.startswith(_MARKER):
            lines.put(line[len(_MARKER):])
    lines.put(None)                          # end of stream: the worker died


def serve() -> None:
    """The worker's loop."""
    import warnings
    warnings.simplefilter("ignore")          # numba's performance warnings about generated code
    output = sys.stdout
    sys.stdout = sys.stderr                  # what kernels print must not mix with verdicts
    for line in sys.stdin:
        verdict = check(Job(**json.loads(line)))
        output.write(_MARKER + json.dumps(verdict.to_dict()) + "\n")
        output.flush()


if __name__ == "__main__":
    serve()
