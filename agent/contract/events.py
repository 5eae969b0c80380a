"""The event: the wire contract every integrator relies on (see docs/events.md).

An event is sealed once, inside the outbox transaction that gives it its sequence number: the
writer fills in the chain link (`prev`), the time fields and the signature. Nothing changes an
event after that; its hash is the SHA-256 of its complete canonical JSON, signature included.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from agent.contract.clock import boot_id, mono_ms, utc_timestamp, wall_clock_synced
from agent.contract.envelope import canonical, check_values, sha256_hex, verify_object
from agent.contract.errors import EventFormatError
from agent.contract.signing import Signer, Verifier, b64url

FORMAT_VERSION = 1
GENESIS_PREV = "0" * 64
PRIORITIES = ("money", "alert", "telemetry")
TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
DEVICE_RE = re.compile(r"^[a-z0-9-]+$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FIELDS = (
    "v", "device", "boot", "seq", "prev", "type", "priority", "ts",
    "clock_synced", "mono_ms", "body", "alg", "kid", "sig",
)  # fmt: skip

SEQ_SKIPPED = "seq.skipped"
CHAIN_RESUMED = "chain.resumed"


@dataclass(frozen=True)
class Draft:
    """What a workflow asks to record: a type, a priority and a JSON body."""

    type: str
    priority: str
    body: dict

    def __post_init__(self):
        if not isinstance(self.type, str) or not TYPE_RE.match(self.type):
            raise EventFormatError(
                f"event type {self.type!r} must be dotted lowercase words, e.g. 'purchase.recorded'"
            )
        if self.priority not in PRIORITIES:
            raise EventFormatError(f"priority must be one of {', '.join(PRIORITIES)}")
        if not isinstance(self.body, dict):
            raise EventFormatError("event body must be a JSON object")
        check_values(self.body)  # refuse floats, Decimal and unsafe integers up front


@dataclass(frozen=True)
class Context:
    """Where and when: taken once per event at sealing time."""

    boot: str
    ts: str
    clock_synced: bool
    mono_ms: int

    @classmethod
    def now(cls) -> Context:
        return cls(boot_id(), utc_timestamp(), wall_clock_synced(), mono_ms())


def seal(draft: Draft, *, device: str, seq: int, prev: str, signer: Signer,
         context: Context | None = None) -> dict:
    """Build and sign the event with sequence number `seq` chained to `prev`."""
    return seal_encoded(draft, device=device, seq=seq, prev=prev, signer=signer,
                        context=context)[0]


def seal_encoded(draft: Draft, *, device: str, seq: int, prev: str, signer: Signer,
                 context: Context | None = None) -> tuple[dict, bytes]:
    """Seal an event and return it with its canonical bytes, canonicalising it once.

    The top-level members are fixed ASCII names, and `sig` sorts between `seq` and `ts`: the
    canonical JSON of the members before `sig` and of those after it, joined, are the signed
    bytes; with `"sig":"..."` between them, they are the event's bytes. Values are checked
    (no floats, safe integers) by `canonical` itself.
    """
    if context is None:
        boot, ts, synced, mono = boot_id(), _utc_now(), wall_clock_synced(), mono_ms()
    else:
        boot, ts, synced, mono = context.boot, context.ts, context.clock_synced, context.mono_ms
    head = {
        "alg": signer.alg,
        "body": draft.body,
        "boot": boot,
        "clock_synced": synced,
        "device": device,
        "kid": signer.kid,
        "mono_ms": mono,
        "prev": prev,
        "priority": draft.priority,
        "seq": seq,
    }
    tail = {"ts": ts, "type": draft.type, "v": FORMAT_VERSION}
    try:
        before, after = canonical(head)[:-1], canonical(tail)[1:]  # "{...", "...}"
    except EventFormatError as exc:
        raise EventFormatError(f"cannot canonicalise the event: {exc}") from None
    sig = b64url(signer.sign(before + b"," + after))
    return {**head, **tail, "sig": sig}, before + b',"sig":"' + sig.encode("ascii") + b'",' + after


# The wall-clock text of every event; the date and time of day change once a second, so they are
# formatted once a second (strftime costs more than the rest of the timestamp).
_second: tuple[int, str] = (-1, "")


def _utc_now() -> str:
    """`clock.utc_timestamp()` for this very moment, in a fraction of its time."""
    global _second
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    cached, prefix = _second
    if sec != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _second = (sec, prefix)
    return f"{prefix}.{ns // 1000:06d}Z"


def encode(event: dict) -> bytes:
    """The event's canonical bytes, as stored, sent and hashed."""
    return canonical(event)


def event_hash(event: dict) -> str:
    return sha256_hex(canonical(event))


def check_shape(event: Any) -> dict:
    """Raise EventFormatError unless `event` has exactly the contract's fields and types."""
    if not isinstance(event, dict):
        raise EventFormatError("event must be a JSON object")
    missing = [f for f in FIELDS if f not in event]
    extra = sorted(set(event) - set(FIELDS))
    if missing or extra:
        raise EventFormatError(f"event fields: missing {missing}, unexpected {extra}")
    checks = (
        ("v", event["v"] == FORMAT_VERSION and type(event["v"]) is int, f"{FORMAT_VERSION}"),
        ("device", isinstance(event["device"], str) and DEVICE_RE.match(event["device"]),
         "a device id [a-z0-9-]+"),
        ("boot", isinstance(event["boot"], str) and UUID_RE.match(event["boot"]), "a UUID"),
        ("seq", type(event["seq"]) is int and 1 <= event["seq"] <= 2**53 - 1, "an integer >= 1"),
        ("prev", isinstance(event["prev"], str) and HEX64_RE.match(event["prev"]), "64 hex digits"),
        ("type", isinstance(event["type"], str) and TYPE_RE.match(event["type"]), "a dotted type"),
        ("priority", event["priority"] in PRIORITIES, "money, alert or telemetry"),
        ("ts", isinstance(event["ts"], str) and TS_RE.match(event["ts"]), "RFC 3339 UTC with µs"),
        ("clock_synced", type(event["clock_synced"]) is bool, "true or false"),
        ("mono_ms", type(event["mono_ms"]) is int and event["mono_ms"] >= 0, "an integer >= 0"),
        ("body", isinstance(event["body"], dict), "an object"),
        ("alg", event["alg"] in ("Ed25519", "ES256"), "Ed25519 or ES256"),
        ("kid", isinstance(event["kid"], str) and HEX64_RE.match(event["kid"]), "64 hex digits"),
        ("sig", isinstance(event["sig"], str), "base64url text"),
    )
    for name, ok, expected in checks:
        if not ok:
            raise EventFormatError(f"event field {name!r}: expected {expected}")
    return event


def verify(event: dict, verifier: Verifier) -> None:
    """Check shape and signature; raises EventFormatError or SignatureError."""
    check_shape(event)
    verify_object(event, verifier)


def skipped_ranges(event: dict) -> list[tuple[int, int, str]]:
    """The (first, last, last_hash) ranges a `seq.skipped` event declares, validated."""
    ranges = event.get("body", {}).get("ranges")
    if not isinstance(ranges, list) or not ranges:
        raise EventFormatError("seq.skipped body.ranges must be a non-empty list")
    out = []
    for r in ranges:
        try:
            first, last, last_hash = r["from"], r["to"], r["last_hash"]
        except (TypeError, KeyError):
            raise EventFormatError("seq.skipped range needs from, to and last_hash") from None
        if not (type(first) is int and type(last) is int and 1 <= first <= last < event["seq"]):
            raise EventFormatError("seq.skipped range must lie before the declaring event")
        if not (isinstance(last_hash, str) and HEX64_RE.match(last_hash)):
            raise EventFormatError("seq.skipped last_hash must be 64 hex digits")
        out.append((first, last, last_hash))
    return out


def resumed_chain(event: dict) -> tuple[int, str, list[tuple[int, int]]]:
    """(after_seq, after_hash, lost ranges) of a `chain.resumed` event, validated.

    The device vouches for its chain up to `after_seq` (whose hash is `after_hash`, and which
    this event's `prev` names), and declares the ranges in `lost` as seqs it cannot vouch for:
    events it may have recorded and can no longer read. Those are never sent again."""
    body = event.get("body", {})
    after_seq, after_hash, lost = body.get("after_seq"), body.get("after_hash"), body.get("lost")
    if not (type(after_seq) is int and 0 <= after_seq < event["seq"]):
        raise EventFormatError("chain.resumed after_seq must be a seq before the event")
    if not (isinstance(after_hash, str) and HEX64_RE.match(after_hash)):
        raise EventFormatError("chain.resumed after_hash must be 64 hex digits")
    if event.get("prev") != after_hash:
        raise EventFormatError("chain.resumed prev must be its after_hash")
    if not isinstance(lost, list):
        raise EventFormatError("chain.resumed lost must be a list of ranges")
    out = []
    for r in lost:
        try:
            first, last = r["from"], r["to"]
        except (TypeError, KeyError):
            raise EventFormatError("chain.resumed lost range needs from and to") from None
        if not (type(first) is int and type(last) is int and 1 <= first <= last < event["seq"]):
            raise EventFormatError("chain.resumed lost range must lie before the event")
        out.append((first, last))
    return after_seq, after_hash, out
