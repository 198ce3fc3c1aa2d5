"""Where snapshots live: in memory, or as files in a directory removed afterwards.

A snapshot is the loop's state at the start of one step: copies of the
arrays the step writes (and of its scalars, for kernels that carry them).
`Snapshots` keeps them by step number and storage kind, counts what it
holds (the peak decides memory use), and always removes its files: `close`
runs in a `finally` of whoever opened it, so a step that raises leaves no
file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
from checkpoint_schedules import StorageType


class Snapshots:
    """Snapshots by (storage, step): RAM copies, or `.npy` files under a private folder."""

    def __init__(self, directory: str | None = None):
        self.directory = directory
        """The folder the user named for disk snapshots (a temporary one is made when None)."""
        self._folder: str | None = None
        self._memory: dict[int, list[np.ndarray]] = {}
        self._disk: dict[int, list[str]] = {}
        self.bytes_in_memory = 0
        """What the memory snapshots hold now."""
        self.peak_bytes_in_memory = 0
        self.peak_bytes_on_disk = 0
        self._bytes_on_disk = 0
        self.peak_count = 0
        """The most snapshots held at once (memory and disk)."""
        self.disk_writes = 0

    def write(self, step: int, storage: StorageType, state: list[np.ndarray]) -> None:
        size = sum(a.nbytes for a in state)
        if storage == StorageType.DISK:
            folder = self._disk_folder()
            paths = []
            for index, array in enumerate(state):
                path = os.path.join(folder, f"step{step}-{index}.npy")
                np.save(path, array, allow_pickle=False)
                paths.append(path)
            self._disk[step] = paths
            self._bytes_on_disk += size
            self.peak_bytes_on_disk = max(self.peak_bytes_on_disk, self._bytes_on_disk)
            self.disk_writes += 1
        else:
            self._memory[step] = [a.copy() for a in state]
            self.bytes_in_memory += size
            self.peak_bytes_in_memory = max(self.peak_bytes_in_memory, self.bytes_in_memory)
        self.peak_count = max(self.peak_count, len(self._memory) + len(self._disk))

    def read(self, step: int, storage: StorageType, into: list[np.ndarray], delete: bool) -> None:
        """Copy snapshot `step` into the work arrays `into`; `delete`: a Move, not a Copy."""
        if storage == StorageType.DISK:
            paths = self._disk[step]
            for path, array in zip(paths, into):
                array[...] = np.load(path, allow_pickle=False)
            if delete:
                self._bytes_on_disk -= sum(a.nbytes for a in into)
                for path in self._disk.pop(step):
                    os.remove(path)
        else:
            for saved, array in zip(self._memory[step], into):
                array[...] = saved
            if delete:
                self.bytes_in_memory -= sum(a.nbytes for a in self._memory.pop(step))

    def _disk_folder(self) -> str:
        if self._folder is None:
            if self.directory is not None:
                os.makedirs(self.directory, exist_ok=True)
            self._folder = tempfile.mkdtemp(prefix="enzpy-checkpoints-", dir=self.directory)
        return self._folder

    def close(self) -> None:
        """Drop every snapshot and remove the files (the folder enzpy made, not the user's)."""
        self._memory.clear()
        self._disk.clear()
        self.bytes_in_memory = self._bytes_on_disk = 0
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
