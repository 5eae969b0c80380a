"""The outbox's schema, as named migrations (applied by agent.migrations)."""

from __future__ import annotations

import sqlite_utils

from .events import GENESIS_PREV


def _m001_events(db: sqlite_utils.Database) -> None:
    db["events"].create(
        {
            "seq": int,
            "priority": str,
            "type": str,
            "state": int,
            "hash": str,
            "payload": bytes,
            "size": int,
            "created": float,
            "sent_at": float,
            "attempts": int,
        },
        pk="seq",
        not_null={"priority", "type", "state", "hash", "payload", "size", "created"},
        defaults={"attempts": 0},
    )
    db.execute("CREATE INDEX events_pending ON events(seq) WHERE state = 0")
    db.execute("CREATE INDEX events_telemetry ON events(seq) WHERE priority = 'telemetry'")
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["meta"].insert_all(
        [
            {"key": "head_seq", "value": "0"},
            {"key": "head_hash", "value": GENESIS_PREV},
            {"key": "acked_seq", "value": "0"},
            {"key": "acked_hash", "value": GENESIS_PREV},
            {"key": "used_bytes", "value": "0"},
            {"key": "evicted_total", "value": "0"},
        ]
    )


def _m002_seen_commands(db: sqlite_utils.Database) -> None:
    db["seen_commands"].create({"id": str, "expires": str, "seen_at": float}, pk="id")


def _m003_sales(db: sqlite_utils.Database) -> None:
    # Station records kept beside the events they belong to, written in the same transaction.
    db["vouchers"].create({"day": str, "last": int}, pk="day")
    db["sales"].create(
        {"seq": int, "voucher": str, "farmer_id": str, "card_uid": str, "net_g": int,
         "amount": str, "created": float, "paid_at": float, "payment_ref": str,
         "voided_by": int},
        pk="seq",
    )
    db["sales"].create_index(["voucher"], unique=True)


MIGRATIONS = [
    ("0001-events-and-meta", _m001_events),
    ("0002-seen-commands", _m002_seen_commands),
    ("0003-station-sales", _m003_sales),
]
