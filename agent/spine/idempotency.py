"""`emit --idempotency-key`: an event recorded once however often its caller retries.

A caller that was killed after the outbox committed its event, but before it printed the
sequence number, cannot know whether to send again; sending again would record a second sale.
With a key, the outbox stores the key and the event's seq in the event's own transaction, and a
retry with the same key records nothing and gets the first seq back. Keys are kept 30 days (by
the wall clock: a clock that jumps more than that ahead forgets them early).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.errors import CocoonError

KEEP_S = 30 * 86400
MAX_KEY_LEN = 200


class AlreadyRecorded(CocoonError):
    """The key's event is in the outbox already, at `seq`; nothing new was recorded."""

    def __init__(self, key: str, seq: int):
        super().__init__(f"idempotency key {key!r} recorded event {seq} already")
        self.key, self.seq = key, seq


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LEN or not key.isprintable():
        raise CocoonError(f"--idempotency-key: expected 1 to {MAX_KEY_LEN} printable "
                          f"characters, got {key!r}")
    return key


def record_once(key: str, clock: Callable[[], float] = time.time) -> Callable:
    """The `within` hook of `Outbox.append` that stores `key` with the event, or raises
    AlreadyRecorded (so that nothing of this append is stored) when the key has an event."""

    def within(execute, seq: int) -> None:
        row = execute("SELECT seq FROM emit_keys WHERE key = ?", (key,)).fetchone()
        if row is not None:
            raise AlreadyRecorded(key, row[0])
        now = clock()
        execute("DELETE FROM emit_keys WHERE created < ?", (now - KEEP_S,))
        execute("INSERT INTO emit_keys (key, seq, created) VALUES (?, ?, ?)", (key, seq, now))

    return within
