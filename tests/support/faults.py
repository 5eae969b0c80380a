"""I/O faults at a chosen step, for the outbox's fault suite (tests/test_faults.py).

Modelled on SQLite's own I/O-error testing: every step that can leave something on disk is
counted (SQLite's writes, truncations and syncs through an apsw VFS; the high-water file's
atomic write, which is a write, an fsync, a rename and a directory sync, through the outbox
module's `write_private`), and from the N-th step on, each such step fails with ENOSPC (a full
disk: SQLite's SQLITE_FULL) or EIO (a failing card: SQLITE_IOERR), until `clear()`, when the
fault is gone. Reads are never failed: a device that cannot read cannot do anything at all.
"""

from __future__ import annotations

import errno
import threading

import apsw

KINDS = ("ENOSPC", "EIO")
STEPS = ("write", "truncate", "sync", "hwm")


class Faults:
    """The step counter and the fault: `fail_at` N (1-based; 0: never), of `kind`."""

    def __init__(self, fail_at: int = 0, kind: str = "ENOSPC", *, only: str | None = None):
        """`only`: count and fail steps of that kind alone, and fail just the one (a single
        failed sync, say, after which the disk works again)."""
        self.fail_at, self.kind, self.only = fail_at, kind, only
        self.steps = 0
        self.by_step: dict[str, int] = dict.fromkeys(STEPS, 0)
        self.fired: str | None = None      # the step where the fault began
        self.first_of: dict[str, int] = {}  # the first step of each kind
        self.cleared = False
        self._lock = threading.Lock()

    def step(self, what: str) -> None:
        """Count a step; raise the fault from the N-th on (until cleared)."""
        with self._lock:
            if self.only is not None and what != self.only:
                return
            self.steps += 1
            self.by_step[what] += 1
            self.first_of.setdefault(what, self.steps)
            failing = not self.cleared and self.fail_at and (
                self.steps == self.fail_at if self.only else self.steps >= self.fail_at)
            if failing and self.fired is None:
                self.fired = what
        if failing:
            if what == "hwm":
                code = errno.ENOSPC if self.kind == "ENOSPC" else errno.EIO
                raise OSError(code, f"{self.kind} (fault injected at step {self.fail_at})")
            if self.kind == "ENOSPC":
                raise apsw.FullError(f"database or disk is full (fault at step {self.fail_at})")
            raise apsw.IOError(f"disk I/O error (fault at step {self.fail_at})")

    def clear(self) -> None:
        with self._lock:
            self.cleared = True


class FaultVFS(apsw.VFS):
    """A pass-through VFS whose data steps go through `faults`."""

    def __init__(self, faults: Faults, name: str = "faults"):
        self.faults = faults
        self.vfs_name = name
        super().__init__(name, "")

    def xOpen(self, name, flags):
        return FaultFile(self, name, flags)


class FaultFile(apsw.VFSFile):
    def __init__(self, vfs: FaultVFS, name, flags):
        super().__init__("", name, flags)
        self._faults = vfs.faults

    def xWrite(self, data, offset):
        self._faults.step("write")
        return super().xWrite(data, offset)

    def xTruncate(self, newsize):
        self._faults.step("truncate")
        return super().xTruncate(newsize)

    def xSync(self, flags):
        self._faults.step("sync")
        return super().xSync(flags)
