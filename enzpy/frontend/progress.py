"""Stage timings for long runs (`enzpy opt --verbose`, `enzpy grad --verbose`).

    enzpy: index module: 18975 lines, 81 functions: 0.01 s
    enzpy: read Enzyme calls: 11 calls: 0.14 s
    enzpy: [1/11] reverse @_Z7my_ddotiPdiS_i (called in @main)
    enzpy:   slice: 2 of 81 functions, 155 lines: 0.00 s
    enzpy:   pre-AD always_inliner: 0.00 s
    ...
    enzpy: enzpy opt: 0.52 s

(Enzyme's `blas.cpp` at -O2.) A stage that fails prints no line; the error follows.

Without a writer every call is a no-op, so the stages cost nothing to mark.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable


class Progress:
    """Writes one line per finished stage (name and seconds) to `write`, or nothing when it is None."""

    def __init__(self, write: Callable[[str], None] | None = None):
        self.write = write
        self.indent = ""

    def __bool__(self) -> bool:
        return self.write is not None

    def note(self, text: str) -> None:
        if self.write is not None:
            self.write(f"enzpy: {self.indent}{text}")

    @contextmanager
    def stage(self, name: str, detail: Callable[[], str] | None = None):
        """Times the block; `detail()` (called after it) adds what the stage worked on."""
        if self.write is None:
            yield
            return
        start = time.perf_counter()
        yield
        extra = f": {detail()}" if detail is not None else ""
        self.note(f"{name}{extra}: {time.perf_counter() - start:.2f} s")

    @contextmanager
    def nested(self):
        """Stages inside the block are indented (one request's stages under its header)."""
        saved, self.indent = self.indent, self.indent + "  "
        try:
            yield
        finally:
            self.indent = saved

    def pass_timer(self, prefix: str) -> Callable[[str, float], None] | None:
        """A PassManager report callback writing `prefix stage: seconds`, or None when silent."""
        if self.write is None:
            return None
        return lambda stage, seconds: self.note(f"{prefix} {stage}: {seconds:.2f} s")


SILENT = Progress()
