"""Signed commands from the bank and the backend, and the dispatcher that admits them.

A command `{v, id, device, type, issued, expires, body, kid, sig}` is admitted only when its
signature verifies against the key its type requires (the bank's key for money and collateral
decisions, the backend's key for operational data), it is addressed to this device, it is within
its validity window, and its id has not been seen before. The seen id is stored in the same
transaction as the `command.accepted` event, so a replay is refused even after a power cut.
Every acceptance and every refusal is a signed event.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from agent.contract.envelope import parse_json_object, sign_object, verify_object
from agent.contract.events import Draft
from agent.contract.signing import Signer, Verifier
from agent.errors import CocoonError, CommandRejected, EventFormatError, SignatureError
from agent.spine.clock import parse_utc_timestamp, utc_timestamp

log = logging.getLogger(__name__)

BANK = "bank"
BACKEND = "backend"
# Which key must sign which command type (docs/events.md, "Commands").
SIGNER_OF = {
    "payment.confirmed": BANK,
    "pledge": BANK,
    "pledge.create": BANK,      # the same command by its earlier name, still accepted
    "release.authorize": BANK,
    "price_table.set": BACKEND,
    "blacklist.set": BACKEND,
    "config.set": BACKEND,
    "time.hint": BACKEND,
}
# Event types are dotted; a command type may be one word (the bank's `pledge`).
COMMAND_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
COMMAND_FIELDS = {"v", "id", "device", "type", "issued", "expires", "body", "kid", "sig"}
CLOCK_SKEW = timedelta(minutes=5)
MAX_ID_LEN = 128


@dataclass(frozen=True)
class Command:
    id: str
    device: str
    type: str
    issued: datetime
    expires: datetime
    body: dict
    kid: str


def make_command(device: str, type_: str, body: dict, signer: Signer, *,
                 expires_in_s: float = 3600, command_id: str | None = None,
                 now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    return sign_object(
        {
            "v": 1,
            "id": command_id or str(uuid.uuid4()),
            "device": device,
            "type": type_,
            "issued": utc_timestamp(now),
            "expires": utc_timestamp(now + timedelta(seconds=expires_in_s)),
            "body": body,
            "kid": signer.kid,
        },
        signer,
    )


def parse_command(payload: bytes) -> dict:
    msg = parse_json_object(payload, "command")
    if set(msg) != COMMAND_FIELDS:
        raise EventFormatError(f"command fields must be {sorted(COMMAND_FIELDS)}")
    if msg["v"] != 1:
        raise EventFormatError("command v must be 1")
    if not isinstance(msg["id"], str) or not 0 < len(msg["id"]) <= MAX_ID_LEN:
        raise EventFormatError("command id must be a string of 1-128 characters")
    if not isinstance(msg["type"], str) or not COMMAND_TYPE_RE.match(msg["type"]):
        raise EventFormatError("command type must be a lowercase name, dotted or not")
    if not isinstance(msg["body"], dict):
        raise EventFormatError("command body must be an object")
    return msg


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
        if issued > now + CLOCK_SKEW:
            raise CommandRejected(f"command issued in the future ({msg['issued']})")
        if expires <= issued:
            raise CommandRejected("command expires before it was issued")
        return Command(msg["id"], msg["device"], msg["type"], issued, expires, msg["body"],
                       msg["kid"])

    def _remember(self, execute, cmd: Command) -> None:
        execute("DELETE FROM seen_commands WHERE expires < ?", (utc_timestamp(self._now()),))
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
