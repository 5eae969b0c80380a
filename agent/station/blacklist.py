"""The backend's list of refused cards, and the handler of its `blacklist.set` command.

A lost, stolen or cloned card is refused at every station once the backend says so. The list
comes whole, signed by the backend, with a version: each command replaces the previous list
in one transaction, and a version not above the one installed is refused, so a replayed or
delayed command can never bring a blocked card back. Kept in the outbox database, so it
survives restarts and power cuts like the sales it protects.

Command body: {"version": 7, "cards": [{"card_uid": "04A1B2C3", "reason": "reported stolen"}]}

The list has an age: the time since the backend issued the command that brought it (the
command's signed `issued`, the backend's clock, so a replayed old command cannot make it look
fresher). The backend keeps a station's list fresh by sending a new version, or the same
version with the same cards again (a refresh: only its issue time is kept). The station warns
past `[card] blacklist_max_age_h` and refuses new sales past `blacklist_refuse_age_h`
(`freshness`, docs/card.md says why those defaults).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from agent.errors import CocoonError

_UID = re.compile(r"^[0-9A-F]{8,20}$")
MAX_CARDS = 100_000


class BlacklistRefused(CocoonError):
    """A `blacklist.set` command that cannot be applied (malformed or not newer)."""


class Blacklist:
    def __init__(self, outbox):
        self.outbox = outbox

    def version(self) -> int:
        rows = self.outbox.read("SELECT value FROM meta WHERE key = 'blacklist_version'")
        return int(rows[0][0]) if rows else 0

    def reason(self, card_uid: str) -> str | None:
        """Why this card is refused, or None when it is not on the list."""
        rows = self.outbox.read("SELECT reason FROM blacklist WHERE card_uid = ?",
                                (card_uid.upper(),))
        return rows[0][0] if rows else None

    def count(self) -> int:
        return self.outbox.read("SELECT count(*) FROM blacklist")[0][0]

    def issued(self) -> datetime | None:
        """When the backend issued the list installed (or its last refresh); None before the
        first list."""
        rows = self.outbox.read("SELECT value FROM meta WHERE key = 'blacklist_issued'")
        return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None

    def cards(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self.outbox.read(
            "SELECT card_uid, reason FROM blacklist ORDER BY card_uid")]

    def _issued_step(self, issued: datetime | None) -> tuple:
        value = issued.astimezone(timezone.utc).isoformat() if issued else ""
        return ("INSERT OR REPLACE INTO meta (key, value) VALUES ('blacklist_issued', ?)",
                [(value,)])

    def replace(self, version: int, cards: list[tuple[str, str]],
                issued: datetime | None = None) -> None:
        steps: list = [("DELETE FROM blacklist", None)]
        if cards:
            steps.append(("INSERT INTO blacklist (card_uid, reason) VALUES (?, ?)", cards))
        steps.append(("UPDATE meta SET value = ? WHERE key = 'blacklist_version'",
                      [(str(version),)]))
        steps.append(self._issued_step(issued))
        self.outbox.write_all(steps)

    def handle(self, cmd) -> dict:
        """The `blacklist.set` command handler (registered on the agent's Dispatcher)."""
        version, cards = parse_blacklist(cmd.body)
        installed = self.version()
        if version == installed and installed and cards == self.cards():
            before = self.issued()
            if before is None or cmd.issued > before:
                self.outbox.write_all([self._issued_step(cmd.issued)])
            return {"version": version, "cards": len(cards), "previous_version": installed,
                    "refreshed": True}
        if version <= installed:
            raise BlacklistRefused(f"blacklist version {version} is not newer than the "
                                   f"installed version {installed}")
        self.replace(version, cards, cmd.issued)
        return {"version": version, "cards": len(cards), "previous_version": installed}

    def freshness(self, max_age_h: float, refuse_age_h: float,
                  now: datetime | None = None) -> Freshness:
        """How old the list is against the station's limits. A station that never received
        a list only warns: refusing there would stop every new station before its first
        connection (the backend sends the list at enrolment)."""
        issued = self.issued()
        if issued is None:
            return Freshness("never", None, max_age_h, refuse_age_h)
        now = now or datetime.now(timezone.utc)
        age_h = max(0.0, (now - issued).total_seconds() / 3600)
        state = ("refuse" if age_h > refuse_age_h else "warn" if age_h > max_age_h
                 else "fresh")
        return Freshness(state, age_h, max_age_h, refuse_age_h)


@dataclass(frozen=True)
class Freshness:
    state: str              # "fresh", "warn", "refuse", or "never" (no list yet: warn)
    age_h: float | None
    max_age_h: float
    refuse_age_h: float


def parse_blacklist(body: dict) -> tuple[int, list[tuple[str, str]]]:
    version, cards = body.get("version"), body.get("cards")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BlacklistRefused("blacklist.set needs a positive integer version")
    if not isinstance(cards, list) or len(cards) > MAX_CARDS:
        raise BlacklistRefused(f"blacklist.set needs a list of at most {MAX_CARDS} cards")
    out: dict[str, str] = {}
    for entry in cards:
        uid = entry.get("card_uid") if isinstance(entry, dict) else None
        reason = entry.get("reason", "blocked by the bank") if isinstance(entry, dict) else None
        if not isinstance(uid, str) or not _UID.match(uid.upper()):
            raise BlacklistRefused(f"blacklist entry {entry!r}: card_uid must be 8 to 20 hex "
                                   "digits")
        if not isinstance(reason, str) or not reason or len(reason) > 200:
            raise BlacklistRefused(f"blacklist entry for {uid}: reason must be 1 to 200 "
                                   "characters")
        out[uid.upper()] = reason
    return version, sorted(out.items())
