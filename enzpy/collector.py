"""While enzpy compiles a derivative, the garbage collector scans only the objects made since.

A compile builds and drops several IR graphs (thousands of objects with
cycles) and so triggers collections; an oldest-generation collection scans
every object of the process, numba's typing tables and the user's data
included, and one cost 0.06-0.08 s of a 1 s GMM first call. `gc.freeze()`
moves the objects that exist when the compile starts out of the collector's
view for its duration (the young generations still collect the compile's own
garbage) and `gc.unfreeze()` puts them back. A process that froze objects
itself (a forking server keeping pages shared) is left alone.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_LOCK = threading.Lock()
_depth = 0
_froze = False


@contextlib.contextmanager
def scanning_new_objects_only():
    """Freeze the existing objects for the (outermost) block; nested and concurrent blocks share it."""
    global _depth, _froze
    with _LOCK:
        if _depth == 0:
            _froze = gc.isenabled() and gc.get_freeze_count() == 0
            if _froze:
                gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _LOCK:
            _depth -= 1
            if _depth == 0 and _froze:
                gc.unfreeze()
                _froze = False
