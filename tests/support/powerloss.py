"""A power-loss model for SQLite files: an apsw VFS whose writes stay volatile until fsync.

SIGKILL does not lose data that a process handed to the kernel; a power cut does. This shim sits
on top of the default VFS and keeps, per file path (as the kernel's page cache would: shared by
every handle on the file), the writes and truncations that no xSync has made durable yet:

- xWrite / xTruncate only append to that file's pending list; xRead and xFileSize see the real
  file with the pending operations laid over it, so the process reads what it wrote.
- xSync applies the pending operations to the real file, in order, and fsyncs it (through the
  base VFS, so SQLite's directory sync for new journals happens too).
- `crash()` is the power cut. By default every unsynced operation is discarded ("drop"). With
  `torn=True` a random (seeded) subset of them survives, split into 512-byte sectors, which is
  what a disk that wrote back some of its dirty pages in any order leaves behind. Files created
  since their last sync disappear (their directory entry was never made durable). After the
  crash every I/O through this VFS fails with apsw.IOError, so nothing written later can
  land on disk.

A sync is atomic in this model (crash() and xSync exclude each other); a crash in the middle of a
sync is modelled by the "torn" subset of the writes that preceded it.

The shared-memory index (`-shm`) is not data: the base VFS maps it directly and it is not
modelled. Delete it after crash() and before reopening the database (a real reboot loses it).
Also not modelled: unsynced deletions (a deleted file never comes back).

Use `crash_at_op=k` to have the VFS cut the power itself just before its k-th data operation
(read, write, truncate, sync): a reproducible random point that always lands among the I/O.

apsw re-raises an exception from a VFS method at the end of the statement even where SQLite
ignored the error: a cut during the automatic checkpoint that follows a durable COMMIT makes
that COMMIT raise. So under this model a failed append() may still be stored (never the
reverse); the tests accept that.
"""

from __future__ import annotations

import os
import random
import threading

import apsw

SECTOR = 512
# Only claim "powersafe overwrite": never let SQLite skip a sync because the device claims
# atomic or sequential writes.
_IOCAP = apsw.SQLITE_IOCAP_POWERSAFE_OVERWRITE
_IGNORED_FCNTL = {apsw.SQLITE_FCNTL_SIZE_HINT, apsw.SQLITE_FCNTL_CHUNK_SIZE}


class PowerCut(apsw.IOError):
    """Raised by every I/O after the crash (apsw reports it to SQLite as SQLITE_IOERR)."""


class _Pending:
    """Unsynced operations on one file: ("w", offset, data) or ("t", size), in order."""

    def __init__(self, real_size: int):
        self.ops: list[tuple] = []
        self.size = real_size

    def write(self, data: bytes, offset: int) -> None:
        self.ops.append(("w", offset, data))
        self.size = max(self.size, offset + len(data))

    def truncate(self, size: int) -> None:
        self.ops.append(("t", size))
        self.size = size

    def read(self, real: bytes, real_size: int, amount: int, offset: int) -> bytes:
        buf = bytearray(amount)
        buf[: len(real)] = real
        size, end = real_size, offset + amount
        for op in self.ops:
            if op[0] == "w":
                _, off, data = op
                lo, hi = max(off, offset), min(off + len(data), end)
                if lo < hi:
                    buf[lo - offset: hi - offset] = data[lo - off: hi - off]
                size = max(size, off + len(data))
            else:
                new = op[1]
                if new < size and new < end:
                    lo = max(new, offset)
                    buf[lo - offset:] = bytes(end - lo)
                size = new
        return bytes(buf[: max(0, min(amount, size - offset))])


class PowerLossVFS(apsw.VFS):
    def __init__(self, name: str = "powerloss", *, base: str = "", torn: bool = False,
                 seed: int = 0, crash_at_op: int | None = None):
        self.vfs_name = name
        self.base_name = base
        self.torn = torn
        self.crash_at_op = crash_at_op
        self.crashed = False
        self.ops = 0  # data operations seen so far
        self.syncs = 0
        self.lost_ops = 0  # unsynced operations discarded by the crash
        self.kept_ops = 0  # ... and, in torn mode, the sector pieces that survived it
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._pending: dict[str, _Pending] = {}
        self._created: set[str] = set()  # created and never synced since
        super().__init__(name, base)

    # -- the power cut ---------------------------------------------------------------------

    def crash(self) -> None:
        """Cut the power: forget (or, torn, partly keep) every unsynced write. Idempotent."""
        with self._lock:
            if self.crashed:
                return
            self.crashed = True
            for path, pending in self._pending.items():
                self.lost_ops += len(pending.ops)
                if self.torn and pending.ops:
                    self._apply_some(path, pending.ops)
            self._pending.clear()
            for path in self._created:
                if not self.torn or self._rng.random() < 0.5:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
            self._created.clear()

    def _apply_some(self, path: str, ops: list[tuple]) -> None:
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return
        try:
            for op in ops:
                if op[0] == "t":
                    if self._rng.random() < 0.5:
                        os.ftruncate(fd, op[1])
                        self.kept_ops += 1
                    continue
                _, off, data = op
                pos = off
                while pos < off + len(data):
                    nxt = min(off + len(data), (pos // SECTOR + 1) * SECTOR)
                    if self._rng.random() < 0.5:
                        os.pwrite(fd, data[pos - off: nxt - off], pos)
                        self.kept_ops += 1
                    pos = nxt
            os.fsync(fd)
        finally:
            os.close(fd)

    def check(self) -> None:
        """Count one data operation; raise once the power is off (cutting it at crash_at_op)."""
        with self._lock:
            if not self.crashed:
                self.ops += 1
                if self.crash_at_op is not None and self.ops >= self.crash_at_op:
                    self.crash()
            if self.crashed:
                raise PowerCut("power cut (powerloss VFS)")

    # -- VFS methods -------------------------------------------------------------------------

    def xOpen(self, name, flags):
        if self.crashed:
            raise PowerCut("power cut (powerloss VFS)")
        path = name.filename() if isinstance(name, apsw.URIFilename) else name
        existed = path is not None and os.path.exists(path)
        file = PowerLossFile(self, name, path, flags)
        if path is not None and not existed:
            with self._lock:
                self._created.add(path)
        return file

    def xDelete(self, filename, syncdir):
        if self.crashed:
            raise PowerCut("power cut (powerloss VFS)")
        with self._lock:
            self._pending.pop(filename, None)
            self._created.discard(filename)
        return super().xDelete(filename, syncdir)

    def pending_for(self, path: str, real_size_fn) -> _Pending:
        pending = self._pending.get(path)
        if pending is None:
            pending = self._pending[path] = _Pending(real_size_fn())
        return pending

    def synced(self, path: str) -> None:
        self._pending.pop(path, None)
        self._created.discard(path)
        self.syncs += 1


class PowerLossFile(apsw.VFSFile):
    def __init__(self, vfs: PowerLossVFS, name, path: str | None, flags):
        super().__init__(vfs.base_name, name, flags)
        self._vfs = vfs
        self._path = path  # None: a temporary file, passed straight through

    def xRead(self, amount, offset):
        vfs = self._vfs
        vfs.check()
        with vfs._lock:
            pending = vfs._pending.get(self._path) if self._path else None
            if pending is None:
                return super().xRead(amount, offset)
            real_size = super().xFileSize()
            real = super().xRead(amount, offset) if offset < real_size else b""
            return pending.read(real, real_size, amount, offset)

    def xWrite(self, data, offset):
        vfs = self._vfs
        vfs.check()
        if self._path is None:
            return super().xWrite(data, offset)
        with vfs._lock:
            vfs.pending_for(self._path, super().xFileSize).write(bytes(data), offset)

    def xTruncate(self, newsize):
        vfs = self._vfs
        vfs.check()
        if self._path is None:
            return super().xTruncate(newsize)
        with vfs._lock:
            vfs.pending_for(self._path, super().xFileSize).truncate(newsize)

    def xFileSize(self):
        vfs = self._vfs
        if vfs.crashed:
            raise PowerCut("power cut (powerloss VFS)")
        with vfs._lock:
            pending = vfs._pending.get(self._path) if self._path else None
            return pending.size if pending is not None else super().xFileSize()

    def xSync(self, flags):
        vfs = self._vfs
        vfs.check()
        with vfs._lock:
            if vfs.crashed:  # check() let us in, but keep sync and crash atomic
                raise PowerCut("power cut (powerloss VFS)")
            pending = vfs._pending.get(self._path) if self._path else None
            for op in pending.ops if pending else ():
                if op[0] == "w":
                    super().xWrite(op[2], op[1])
                else:
                    super().xTruncate(op[1])
            super().xSync(flags)
            if self._path:
                vfs.synced(self._path)

    def xLock(self, level):
        if self._vfs.crashed:
            raise PowerCut("power cut (powerloss VFS)")
        return super().xLock(level)

    def xDeviceCharacteristics(self):
        return _IOCAP

    def xFileControl(self, op, ptr):
        if op in _IGNORED_FCNTL:
            return True  # hints that would resize the real file behind the model's back
        return super().xFileControl(op, ptr)
