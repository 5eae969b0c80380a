"""A device's answer to a command, read from the ingest's store (`send-command --wait`).

The device answers each command with signed events (agent/spine/dispatcher.py):
`command.accepted` then `command.done` or `command.failed` once its handler ran, or
`command.refused`. They reach the bank as any event, verified by the ingest; the answer is read
from what the ingest stored, never from an unverified copy on the broker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .store import open_store

ACCEPTED, REFUSED, FAILED, NO_ANSWER = "accepted", "refused", "failed", "no answer"
EXIT_CODES = {ACCEPTED: 0, REFUSED: 3, FAILED: 4, NO_ANSWER: 5}
TYPES = ("command.accepted", "command.done", "command.refused", "command.failed")
POLL_S = 0.2


@dataclass(frozen=True)
class Answer:
    outcome: str
    reason: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]


class AnswerWatcher:
    """Made before the command is sent: the device's answer is sealed after it receives the
    command, so it has a seq above every one the store holds of the device now."""

    def __init__(self, settings, device: str):
        self.settings, self.device = settings, device
        store = open_store(settings)
        try:
            ((top,),) = store.query("SELECT COALESCE(MAX(seq), 0) FROM events WHERE device=?",
                                    (device,))
        finally:
            store.close()
        self.after = top

    def wait(self, command_id: str, timeout_s: float) -> Answer:
        """The answer to `command_id`: refused or failed as soon as seen; accepted once done
        (or, at the deadline, accepted without its handler's word yet); else no answer."""
        deadline = time.monotonic() + timeout_s
        store = open_store(self.settings)
        try:
            while True:
                seen = self._answers(store, command_id)
                if "command.refused" in seen:
                    return Answer(REFUSED, seen["command.refused"].get("reason", ""))
                if "command.failed" in seen:
                    return Answer(FAILED, seen["command.failed"].get("reason", ""))
                if "command.done" in seen:
                    return Answer(ACCEPTED)
                if time.monotonic() >= deadline:
                    return Answer(ACCEPTED if "command.accepted" in seen else NO_ANSWER)
                time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        finally:
            store.close()

    def _answers(self, store, command_id: str) -> dict[str, dict]:
        marks = ", ".join("?" * len(TYPES))
        rows = store.query(f"SELECT type, payload FROM events WHERE device=? AND seq>? AND "
                           f"type IN ({marks}) ORDER BY seq", (self.device, self.after, *TYPES))
        found = {}
        for type_, payload in rows:
            body = json.loads(bytes(payload)).get("body", {})
            if isinstance(body, dict) and body.get("id") == command_id:
                found.setdefault(type_, body)
        return found
