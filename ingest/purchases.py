"""Purchases at the bank: each verified `purchase.recorded` recomputed (ingest/recompute.py)
and kept with its result and payment state; the bank's copy of the price tables the backend
signed.

A purchase is stored in the same transaction as its event. Its payment state is

    unpaid   recomputed to the same amount: may be paid
    held     the recomputation did not match, or could not be made (see `result`, `reason`):
             not to be paid until people have looked; an alert `purchase.mismatch` is open
    paid     `cocoon-ingest mark-paid` recorded the bank's payment (`payment_ref`)
    voided   the station voided it (`purchase.voided`) before it was paid

A price table is added from the signed `price_table.set` command the backend sent a station
(`cocoon-ingest price-tables add FILE`), verified with the backend's public key
(`[ingest] backend_public_key_file`). Its body is the table document; the bank keeps one
document per (id, version), and refuses another document under a name it already holds.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from agent.contract.envelope import verify_object
from agent.contract.errors import CocoonError, SignatureError
from agent.contract.pricing.tables import PriceTable, parse_price_table
from ingest.recompute import MATCH, recompute_purchase

UNPAID, HELD, PAID, VOIDED = "unpaid", "held", "paid", "voided"
MISMATCH_ALERT = "purchase.mismatch"
COLUMNS = ("device", "seq", "voucher", "day", "farmer_id", "net_g", "amount", "amount_fen",
           "recomputed", "recomputed_fen", "result", "reason", "payment", "payment_ref",
           "paid_at", "recorded_at")
VOUCHER_DAY = re.compile(r"-(\d{8})-\d{4,}$")    # DEVICE-YYYYMMDD-NNNN (agent.station.sales)


class PriceTableRefusedByBank(CocoonError):
    """A price table the bank will not hold: unsigned, not the backend's, or a second
    document under an id and version it already holds."""


class PurchaseNotFound(CocoonError):
    """No verified purchase at that device and seq."""


def find_table(db, table_id: str, version: int) -> PriceTable | None:
    row = db.execute("SELECT document FROM price_tables WHERE table_id = ? AND version = ?",
                     (table_id, version)).fetchone()
    return parse_price_table(json.loads(row[0])) if row else None


def add_price_table(db, signed: Any, verifier) -> dict:
    """Verify a signed `price_table.set` with the backend's key and keep its table; a summary
    (`added` False when the same document was already held)."""
    if verifier is None:
        raise PriceTableRefusedByBank("[ingest] backend_public_key_file is not set: the bank "
                                      "cannot check that a price table is the backend's")
    if not isinstance(signed, dict) or signed.get("type") != "price_table.set":
        raise PriceTableRefusedByBank("not a signed price_table.set command")
    try:
        verify_object(signed, verifier, alg=verifier.alg)
    except SignatureError as exc:
        raise PriceTableRefusedByBank(f"the price table's signature is not the backend's: "
                                      f"{exc}") from None
    table = parse_price_table(signed["body"])
    held = db.execute("SELECT digest FROM price_tables WHERE table_id = ? AND version = ?",
                      (table.table_id, table.version)).fetchone()
    summary = {"table": table.table_id, "version": table.version, "digest": table.digest}
    if held:
        if held[0] != table.digest:
            raise PriceTableRefusedByBank(
                f"the bank holds another document as {table.table_id} v{table.version} "
                f"(digest {held[0]}); a version names one table")
        return {**summary, "added": False}
    db.execute("INSERT INTO price_tables (table_id, version, digest, document, added_at)"
               " VALUES (?, ?, ?, ?, ?)",
               (table.table_id, table.version, table.digest,
                json.dumps(signed["body"], sort_keys=True, ensure_ascii=False), time.time()))
    return {**summary, "added": True}


def record_purchase(store, device: str, seq: int, event: dict) -> str:
    """Recompute a verified purchase and keep it (in the caller's transaction); its result."""
    body = event["body"]
    got = recompute_purchase(body, lambda i, v: find_table(store.db, i, v))
    scale = body.get("scale") if isinstance(body.get("scale"), dict) else {}
    farmer = body.get("farmer") if isinstance(body.get("farmer"), dict) else {}
    net = scale.get("net_g")
    voucher = _str(body.get("voucher"))
    day = VOUCHER_DAY.search(voucher) if voucher else None
    store.db.execute(
        "INSERT INTO purchase_state (device, seq, voucher, day, farmer_id, net_g, amount,"
        " amount_fen, recomputed, recomputed_fen, result, reason, payment, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (device, seq, voucher, day.group(1) if day else None, _str(farmer.get("farmer_id")),
         _grams(net), _str(body.get("amount")), fen(body.get("amount")), got.amount,
         fen(got.amount), got.result, got.reason[:500],
         UNPAID if got.result == MATCH else HELD, event.get("ts")))
    if isinstance(body.get("corrects"), dict):
        record_void(store, device, body["corrects"])
    if got.result != MATCH:
        store.open_alert(device, MISMATCH_ALERT,
                         f"seq {seq} voucher {body.get('voucher')}: {got.result}: "
                         f"{got.reason}"[:500])
    return got.result


def record_void(store, device: str, body: dict) -> None:
    """A station voided one of its sales (`purchase.voided`, or a correction's `corrects`):
    an unpaid or held one is no longer to be paid."""
    seq = body.get("original_seq", body.get("seq"))
    if isinstance(seq, int):
        store.db.execute("UPDATE purchase_state SET payment = ? WHERE device = ? AND seq = ? AND "
                         "payment IN (?, ?)", (VOIDED, device, seq, UNPAID, HELD))


def list_purchases(store, device: str | None = None) -> list[dict]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM purchase_state"
    args: tuple = ()
    if device:
        sql, args = sql + " WHERE device = ?", (device,)
    rows = store.db.execute(sql + " ORDER BY device, seq", args).fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def mark_paid(store, device: str, seq: int, ref: str) -> dict:
    """Record the bank's payment of an unpaid purchase; PurchaseNotFound or CocoonError."""
    row = store.db.execute("SELECT payment, amount, voucher FROM purchase_state WHERE device = ? "
                           "AND seq = ?", (device, seq)).fetchone()
    if row is None:
        raise PurchaseNotFound(f"no verified purchase {device}/{seq} at the bank")
    payment, amount, voucher = row
    if payment == PAID:
        raise CocoonError(f"purchase {device}/{seq} is already paid")
    if payment != UNPAID:
        raise CocoonError(f"purchase {device}/{seq} is {payment}: it may not be paid "
                          "(see `cocoon-ingest purchases`)")
    store.db.execute("UPDATE purchase_state SET payment = ?, payment_ref = ?, paid_at = ? WHERE "
                     "device = ? AND seq = ?", (PAID, ref, time.time(), device, seq))
    return {"device": device, "seq": seq, "voucher": voucher, "amount": amount, "ref": ref}


def record_day_closed(store, device: str, seq: int, event: dict) -> None:
    """Keep a station's signed end of day, for the `reconciliation` view."""
    body = event["body"]
    day = body.get("day")
    if not isinstance(day, str) or not re.fullmatch(r"\d{8}", day):
        return
    store.db.execute(
        "INSERT INTO day_closures (device, day, seq, count, net_g, amount, amount_fen, voided,"
        " acknowledged, closed_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (device, day, seq, _int(body.get("count")), _grams(body.get("net_g")),
         _str(body.get("amount")), fen(body.get("amount")), _int(body.get("voided")),
         _int(body.get("acknowledged")), event.get("ts")))


def fen(amount) -> int | None:
    """An amount in yuan (a decimal string) as exact integer fen; None unless it is one."""
    try:
        value = Decimal(amount) * 100 if isinstance(amount, str) else None
    except InvalidOperation:
        return None
    return int(value) if value is not None and value == value.to_integral_value() else None


def _grams(value) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value) -> str | None:
    return value if isinstance(value, str) else None
