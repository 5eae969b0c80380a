"""The backend's list of refused cards, and the handler of its `blacklist.set` command.

A lost, stolen or cloned card is refused at every station once the backend says so. The list
comes whole, signed by the backend, with a version: each command replaces the previous list
in one transaction, and a version not above the one installed is refused, so a replayed or
delayed command can never bring a blocked card back. Kept in the outbox database, so it
survives restarts and power cuts like the sales it protects.

Command body: {"version": 7, "cards": [{"card_uid": "04A1B2C3", "reason": "reported stolen"}]}
"""

from __future__ import annotations

import re

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

    def replace(self, version: int, cards: list[tuple[str, str]]) -> None:
        steps: list = [("DELETE FROM blacklist", None)]
        if cards:
            steps.append(("INSERT INTO blacklist (card_uid, reason) VALUES (?, ?)", cards))
        steps.append(("UPDATE meta SET value = ? WHERE key = 'blacklist_version'",
                      [(str(version),)]))
        self.outbox.write_all(steps)

    def handle(self, cmd) -> dict:
        """The `blacklist.set` command handler (registered on the agent's Dispatcher)."""
        version, cards = parse_blacklist(cmd.body)
        installed = self.version()
        if version <= installed:
            raise BlacklistRefused(f"blacklist version {version} is not newer than the "
                                   f"installed version {installed}")
        self.replace(version, cards)
        return {"version": version, "cards": len(cards), "previous_version": installed}


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
