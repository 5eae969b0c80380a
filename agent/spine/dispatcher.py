"""The dispatcher that admits signed commands on the device (the envelope: agent.contract.commands).

A command is admitted only when its signature verifies against the key its type requires (the
bank's key for money and collateral decisions, the backend's key for operational data), it is
addressed to this device, it is within its validity window (by the device's clock, and by the
bank's: the latest `issued` of the commands accepted so far), and its id has not been seen
before. The seen id is stored in the same transaction as the `command.accepted` event, so a
replay is refused even after a power cut. Every acceptance and every refusal is a signed event.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timezone

from agent.contract.clock import parse_utc_timestamp, utc_timestamp
from agent.contract.commands import (
    CLOCK_SKEW,
    MAX_ID_LEN,
    SIGNER_OF,
    Command,
    parse_command,
)
from agent.contract.envelope import verify_object
from agent.contract.events import Draft
from agent.contract.signing import Verifier
from agent.errors import CocoonError, CommandRejected, SignatureError

log = logging.getLogger(__name__)

Handler = Callable[[Command], dict | None]


class Dispatcher:
    """Admits commands and hands them to the handler registered for their type."""

    def __init__(self, device: str, outbox, verifiers: dict[str, Verifier | None],
                 handlers: dict[str, Handler] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.device = device
        self.outbox = outbox
        self.verifiers = verifiers
        self.handlers = dict(handlers or {})
        self._now = now

    def register(self, type_: str, handler: Handler) -> None:
        if type_ not in SIGNER_OF:
            raise ValueError(f"unknown command type {type_}")
        self.handlers[type_] = handler

    def handle(self, payload: bytes) -> Command | None:
        """Admit or refuse one raw command; return it when accepted."""
        summary = {"id": None, "type": None}
        try:
            msg = parse_command(payload)
            summary = {"id": msg["id"], "type": msg["type"]}
            cmd = self._admit(msg)
        except CocoonError as exc:
            self._refuse(summary, str(exc))
            return None
        try:
            self.outbox.append(
                Draft("command.accepted", "alert", {
                    "id": cmd.id, "type": cmd.type, "kid": cmd.kid,
                    "issued": utc_timestamp(cmd.issued), "expires": utc_timestamp(cmd.expires),
                }),
                within=lambda execute, seq: self._remember(execute, cmd),
            )
        except CommandRejected as exc:
            self._refuse(summary, str(exc))
            return None
        log.info("command accepted: %s %s", cmd.type, cmd.id)
        self._run_handler(cmd)
        return cmd

    def _admit(self, msg: dict) -> Command:
        role = SIGNER_OF.get(msg["type"])
        if role is None:
            raise CommandRejected(f"unknown command type {msg['type']!r}")
        if msg["type"] not in self.handlers:
            raise CommandRejected(f"this device has no handler for {msg['type']!r}")
        verifier = self.verifiers.get(role)
        if verifier is None:
            raise CommandRejected(f"no {role} public key is configured to check {msg['type']!r}")
        try:
            verify_object(msg, verifier, alg=verifier.alg)
        except SignatureError as exc:
            raise CommandRejected(f"signature not from the {role} key: {exc}") from None
        if msg["device"] != self.device:
            raise CommandRejected(f"command is for device {msg['device']!r}")
        try:
            issued = parse_utc_timestamp(msg["issued"])
            expires = parse_utc_timestamp(msg["expires"])
        except (TypeError, ValueError):
            raise CommandRejected("issued/expires must be RFC 3339 UTC timestamps") from None
        now = self._now()
        if expires <= now:
            raise CommandRejected(f"command expired at {msg['expires']}")
        bank_now = self._command_clock()
        if bank_now is not None and expires <= bank_now:
            raise CommandRejected(f"command expired at {msg['expires']}: the bank's own later "
                                  f"commands show that {utc_timestamp(bank_now)} has passed")
        if issued > now + CLOCK_SKEW:
            raise CommandRejected(f"command issued in the future ({msg['issued']})")
        if expires <= issued:
            raise CommandRejected("command expires before it was issued")
        return Command(msg["id"], msg["device"], msg["type"], issued, expires, msg["body"],
                       msg["kid"], signed=msg)

    def _command_clock(self) -> datetime | None:
        """The latest `issued` of an accepted command: the bank's time as the device last
        heard it. Unlike the device's wall clock (fake-hwclock, a wrong NTP answer) it never
        goes back, so seen ids are forgotten by it, and a command it shows to have expired is
        refused whatever the wall clock says."""
        rows = self.outbox.read("SELECT value FROM meta WHERE key = 'command_clock'")
        return parse_utc_timestamp(rows[0][0]) if rows and rows[0][0] else None

    def _remember(self, execute, cmd: Command) -> None:
        row = execute("SELECT value FROM meta WHERE key = 'command_clock'").fetchone()
        clock = cmd.issued
        if row and row[0]:
            clock = max(clock, parse_utc_timestamp(row[0]))
        # An id is forgotten only once the bank's own clock is past its expiry: from then on
        # the command is refused as expired anyway, however the device's clock moves.
        execute("DELETE FROM seen_commands WHERE expires < ?", (utc_timestamp(clock),))
        execute("UPDATE meta SET value = ? WHERE key = 'command_clock'", (utc_timestamp(clock),))
        try:
            execute(
                "INSERT INTO seen_commands (id, expires, seen_at) VALUES (?, ?, ?)",
                (cmd.id, utc_timestamp(cmd.expires), time.time()),
            )
        except sqlite3.IntegrityError:
            raise CommandRejected(f"replay: command {cmd.id} was already received") from None
        except Exception as exc:  # apsw raises its own ConstraintError
            if "constraint" in type(exc).__name__.lower() or "UNIQUE" in str(exc):
                raise CommandRejected(f"replay: command {cmd.id} was already received") from None
            raise

    def _refuse(self, summary: dict, reason: str) -> None:
        log.warning("command refused (%s %s): %s", summary.get("type"), summary.get("id"), reason)
        body = {"reason": reason}
        for key in ("id", "type"):
            if isinstance(summary.get(key), str):
                body[key] = summary[key][:MAX_ID_LEN]
        self.outbox.append(Draft("command.refused", "alert", body))

    def _run_handler(self, cmd: Command) -> None:
        try:
            result = self.handlers[cmd.type](cmd)
            done = Draft("command.done", "alert",
                         {"id": cmd.id, "type": cmd.type, "result": result or {}})
        except Exception as exc:  # a handler's bug must not stop the commands after it
            if isinstance(exc, CocoonError):
                log.warning("command %s failed: %s", cmd.id, exc)
                reason = str(exc)
            else:
                log.exception("command %s: handler for %s crashed", cmd.id, cmd.type)
                reason = f"handler error: {type(exc).__name__}: {exc}"
            self.outbox.append(Draft("command.failed", "alert",
                                     {"id": cmd.id, "type": cmd.type, "reason": reason[:500]}))
            return
        self.outbox.append(done)
