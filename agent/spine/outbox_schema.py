"""The outbox's schema, as named migrations (applied by agent.spine.migrations)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.contract.events import GENESIS_PREV

if TYPE_CHECKING:  # imported by agent.spine.migrations only when a migration runs
    import sqlite_utils


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


def _m004_sent_index(db: sqlite_utils.Database) -> None:
    # The ack-timeout check looks for sent rows older than a cutoff every few seconds; without
    # an index it scans the whole table (tens of milliseconds at 100,000 rows).
    db.execute("CREATE INDEX events_sent ON events(seq) WHERE state = 1")


def _m005_station_cards(db: sqlite_utils.Database) -> None:
    # A sale the card could not take (pulled out while writing) is owed to the card until its
    # next swipe: the card sale is kept here, beside the sale, until it is written.
    db["sales"].add_column("card_owed", str)
    # The backend's list of refused cards (blacklist.set), replaced whole by each command.
    db["blacklist"].create({"card_uid": str, "reason": str}, pk="card_uid")
    db["meta"].insert({"key": "blacklist_version", "value": "0"})


def _m006_emit_keys_and_command_clock(db: sqlite_utils.Database) -> None:
    # `emit --idempotency-key`: the seq each key recorded, so that a retry records nothing new.
    db["emit_keys"].create({"key": str, "seq": int, "created": float}, pk="key")
    # The latest `issued` of an accepted command: the bank's clock as the device last heard
    # it, which never goes back; seen command ids are forgotten by it, not by the wall clock.
    db["meta"].insert({"key": "command_clock", "value": ""})


def _m007_sales_grade_and_voucher(db: sqlite_utils.Database) -> None:
    # The end-of-day report sums the day's sales per grade (day.closed), and a voucher can be
    # printed again, marked as a copy, from the very document first printed.
    db["sales"].add_column("grade", str)
    db["sales"].add_column("voucher_doc", str)


MIGRATIONS = [
    ("0001-events-and-meta", _m001_events),
    ("0002-seen-commands", _m002_seen_commands),
    ("0003-station-sales", _m003_sales),
    ("0004-events-sent-index", _m004_sent_index),
    ("0005-station-cards", _m005_station_cards),
    ("0006-emit-keys-and-command-clock", _m006_emit_keys_and_command_clock),
    ("0007-sales-grade-and-voucher", _m007_sales_grade_and_voucher),
]
