"""Which process holds the outbox: the running agent, by an exclusive lock on `outbox.sqlite.lock`.

Only the process that holds it may quarantine a damaged outbox: a command that moved the files
away under a running agent would leave that agent writing to the renamed file, and the events
of both would be forwarded by neither. The lock is an advisory `flock` on a file of its own,
held from the agent's start until its outbox is closed; the kernel releases it when the process
dies, so a crash never leaves it held. The file holds the holder's pid, for the messages.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class OutboxHolder:
    def __init__(self, outbox_path: str | Path):
        self.path = Path(f"{outbox_path}.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process (or other holder here) has it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:    # the pid is for messages only: a full disk must not stop the agent
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        self._fd = fd
        return True

    def holder_pid(self) -> int | None:
        """The pid the current holder wrote, if it can be read."""
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)      # closing the descriptor releases the lock
            self._fd = None
