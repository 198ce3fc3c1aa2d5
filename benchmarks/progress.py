"""One status line on stderr saying what is being timed, so a long run is never silent.

On a terminal the line is rewritten in place; in a log (CI, a pipe) each
status gets its own line, since carriage returns would garble it.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, stream=None):
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()
        self.width = 0

    def show(self, what: str) -> None:
        elapsed = int(time.perf_counter() - self.started)
        line = f"[{self.done + 1}/{self.total} {elapsed // 60}:{elapsed % 60:02d}] {what}"
        if self.interactive:
            # Pad to the previous width so a shorter status erases a longer one.
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finished_one(self, summary: str) -> None:
        """Close the current problem with a line that stays on screen."""
        self.done += 1
        if self.interactive:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        self.stream.write(f"measured {summary}\n")
        self.stream.flush()
