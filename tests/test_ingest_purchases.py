"""The bank recomputes every purchase: on both stores, and end to end with a deliberately
altered device (its event priced with an edited table, signed with its own key) forwarded by
the real link to the real ingest, which stores and acknowledges it, holds it from payment and
raises an alert."""

from __future__ import annotations

import copy
import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from agent.contract import events
from agent.contract.commands import make_command
from agent.contract.events import Draft
from agent.contract.pricing.amount import Lot, price
from agent.contract.pricing.record import pricing_record
from agent.contract.pricing.tables import parse_price_table
from agent.contract.signing import Ed25519Signer, Verifier
from ingest.purchases import (
    PriceTableRefusedByBank,
    add_price_table,
    list_purchases,
    mark_paid,
)
from ingest.store import ACCEPTED, IngestStore
from tests.support.running import BIN, add_device
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
DOC = json.loads((ROOT / "config" / "price-table.example.json").read_text())
BACKEND = Ed25519Signer.generate()
LOT = Lot(net_g=51_800, shell_g=Decimal("9.35"), moisture_pct=Decimal("18"),
          reelable_pct=Decimal("100"),
          defects_pct={"perforated": "0", "stained": "1", "thin": "0", "mouldy": "0"})


def purchase_body(doc=DOC, voucher="st-1-20260601-0001", amount_delta="0") -> dict:
    """A purchase as a station prices it with `doc`; `amount_delta` alters its amount (and its
    pricing record's) as a dishonest program would."""
    quote = price(parse_price_table(doc), LOT)
    record = pricing_record(quote)
    amount = str(quote.amount + Decimal(amount_delta))
    record["amount"] = amount
    return {"station": "st-1", "clerk": "s-01", "voucher": voucher,
            "farmer": {"farmer_id": "F-1", "card_uid": "04a1", "card_kind": "cpu",
                       "card_counter": 1, "account_ref": "acct"},
            "scale": {"id": "bench-1", "gross_g": "52000", "tare_g": "200", "net_g": "51800",
                      "frames_digest": "d" * 64},
            "grade": quote.grade.label, "unit_price": str(quote.unit_price), "amount": amount,
            "currency": "CNY", "pricing": record}


class Registry:
    def __init__(self, device, signer):
        self.device, self.verifier = device, Verifier.from_pem(signer.public_key_pem())

    def get(self, device):
        return self.verifier if device == self.device else None


@pytest.fixture
def store(ingest_store_location):
    s = IngestStore(ingest_store_location)
    with s.db.transaction(()):
        add_price_table(s.db, make_command("st-1", "price_table.set", DOC, BACKEND),
                        Verifier.from_pem(BACKEND.public_key_pem()))
    yield s
    s.close()


def test_each_purchase_is_recomputed_held_when_it_does_not_match_and_paid_once(store):
    device = Ed25519Signer.generate()
    altered = {**copy.deepcopy(DOC), "base_price": "45.00"}
    drafts = [Draft("purchase.recorded", "money", purchase_body()),
              Draft("purchase.recorded", "money",
                    purchase_body(voucher="st-1-20260601-0002", amount_delta="0.01")),
              Draft("purchase.recorded", "money",
                    purchase_body(altered, voucher="st-1-20260601-0003")),
              Draft("purchase.recorded", "money", purchase_body(voucher="st-1-20260601-0004")),
              Draft("purchase.voided", "money", {"original_seq": 4,
                                                 "original_voucher": "st-1-20260601-0004",
                                                 "supervisor": "s-09", "reason": "test"})]
    prev, sealed = events.GENESIS_PREV, []
    for seq, draft in enumerate(drafts, 1):
        sealed.append(events.seal(draft, device="st-1", seq=seq, prev=prev, signer=device))
        prev = events.event_hash(sealed[-1])
    outcomes, _ = store.process_batch(
        [("cocoon/v1/st-1/events", json.dumps(e).encode()) for e in sealed],
        Registry("st-1", device))
    assert all(o.status == ACCEPTED for o in outcomes)          # stored and acknowledged
    rows = {r["seq"]: r for r in list_purchases(store)}
    assert (rows[1]["result"], rows[1]["payment"]) == ("match", "unpaid")
    assert rows[1]["recomputed"] == rows[1]["amount"]
    assert (rows[2]["result"], rows[2]["payment"]) == ("mismatch", "held")
    assert rows[2]["recomputed"] == rows[1]["amount"] != rows[2]["amount"]
    assert (rows[3]["result"], rows[3]["payment"]) == ("mismatch", "held")
    assert "is not the bank's" in rows[3]["reason"]
    assert rows[4]["payment"] == "voided"
    assert [a["kind"] for a in store.open_alerts("st-1")] == ["purchase.mismatch"]
    with store.db.transaction(("st-1",)):
        assert mark_paid(store, "st-1", 1, "B-1")["amount"] == rows[1]["amount"]
    for seq, words in ((1, "already paid"), (2, "held"), (4, "voided")):
        with pytest.raises(Exception, match=words), store.db.transaction(("st-1",)):
            mark_paid(store, "st-1", seq, "B-2")
    assert {r["seq"]: r["payment"] for r in list_purchases(store)}[1] == "paid"


def test_the_bank_holds_only_the_backends_tables_one_document_per_version(store):
    verifier = Verifier.from_pem(BACKEND.public_key_pem())
    again = add_price_table(store.db, make_command("st-2", "price_table.set", DOC, BACKEND),
                            verifier)
    assert again["added"] is False
    with pytest.raises(PriceTableRefusedByBank, match="another document"):
        add_price_table(store.db, make_command("st-1", "price_table.set",
                                               {**DOC, "base_price": "45.00"}, BACKEND),
                        verifier)
    with pytest.raises(PriceTableRefusedByBank, match="not the backend's"):
        add_price_table(store.db, make_command("st-1", "price_table.set", DOC,
                                               Ed25519Signer.generate()), verifier)
    with pytest.raises(PriceTableRefusedByBank, match="backend_public_key_file"):
        add_price_table(store.db, make_command("st-1", "price_table.set", DOC, BACKEND), None)


def cocoon_ingest(site, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cocoon-ingest"), "--config", str(site.ingest_config),
                           *map(str, args)], capture_output=True, text=True, timeout=60)


def test_an_altered_devices_purchase_is_stored_acknowledged_held_and_alerted(site, services,
                                                                             tmp_path):
    """A device whose program priced with an edited table (its digest is not the bank's) and
    signed the result with its own key: the real link forwards it, the ingest stores and
    acknowledges it (the device may forget it), holds it from payment, raises the alert, and
    mark-paid refuses it."""
    signed = make_command("dev-1", "price_table.set", DOC, _site_backend(site))
    table_file = tmp_path / "table.json"
    table_file.write_text(json.dumps(signed))
    config = add_device(site, "dev-1")
    services.ingest(site.ingest_config)
    added = cocoon_ingest(site, "price-tables", "add", table_file)
    assert added.returncode == 0 and ": added" in added.stdout, added.stderr
    running = services.agent(config)
    altered = {**copy.deepcopy(DOC), "base_price": "45.00"}
    honest = running.agent.outbox.append(Draft("purchase.recorded", "money", purchase_body()))
    forged = running.agent.outbox.append(Draft("purchase.recorded", "money",
                                               purchase_body(altered, voucher="v-2")))
    wait_for(lambda: running.outbox.acked_seq() >= forged, 20,
             what="both purchases stored and acknowledged")
    rows = {r["seq"]: r for r in json.loads(cocoon_ingest(site, "purchases", "--json").stdout)}
    assert (rows[honest]["result"], rows[honest]["payment"]) == ("match", "unpaid")
    assert (rows[forged]["result"], rows[forged]["payment"]) == ("mismatch", "held")
    status = json.loads(cocoon_ingest(site, "status", "--json").stdout)
    assert "purchase.mismatch" in next(d for d in status if d["device"] == "dev-1")[
        "open_alerts"]
    refused = cocoon_ingest(site, "mark-paid", f"dev-1/{forged}", "--ref", "B-9", "--key",
                            site.bank_key, "--operator", site.operator_config)
    assert refused.returncode != 0 and "held: it may not be paid" in refused.stderr


def _site_backend(site):
    from agent.contract.signing import load_signer

    return load_signer(site.backend_key)


def _sealed_purchases(device_key, n=1, start=1, prev=events.GENESIS_PREV):
    out = []
    for seq in range(start, start + n):
        out.append(events.seal(Draft("purchase.recorded", "money",
                                     purchase_body(voucher=f"st-1-20260601-{seq:04d}")),
                               device="st-1", seq=seq, prev=prev, signer=device_key))
        prev = events.event_hash(out[-1])
    return out


def _batch(store, sealed, device_key):
    return store.process_batch([("cocoon/v1/st-1/events", json.dumps(e).encode())
                                for e in sealed], Registry("st-1", device_key))


def test_the_purchases_view_reads_as_the_contract_says(store):
    device = Ed25519Signer.generate()
    (sealed,) = _sealed_purchases(device)
    _batch(store, [sealed], device)
    assert store.query("SELECT version FROM schema_version") == [(1,)]
    cur = store.db.execute("SELECT * FROM purchases")
    columns = [d[0] for d in cur.description]
    assert columns == ["device", "seq", "voucher", "day", "farmer_id", "net_g", "amount",
                       "amount_fen", "recomputed", "recomputed_fen", "result", "reason",
                       "payment", "payment_ref", "paid_at", "recorded_at", "hash", "event"]
    (row,) = cur.fetchall()
    view = dict(zip(columns, row, strict=True))
    assert (view["result"], view["payment"], view["hash"]) == ("match", "unpaid",
                                                               events.event_hash(sealed))
    assert json.loads(view["event"]) == sealed     # the signed event, to verify again
    assert view["day"] == "20260601" and view["amount_fen"] == int(
        Decimal(view["amount"]) * 100) == view["recomputed_fen"]


def test_each_stations_day_is_reconciled_against_what_the_bank_stored(store):
    """The station's signed day.closed against the bank's purchases of that day: reconciled
    when count, net and amount agree; a later close of the same day is the one that counts."""
    device = Ed25519Signer.generate()
    sealed = _sealed_purchases(device, 2)
    amount = Decimal(sealed[0]["body"]["amount"])

    def closed(seq, prev, count, total):
        return events.seal(Draft("day.closed", "money", {
            "station": "st-1", "clerk": "s-01", "day": "20260601", "count": count,
            "net_g": str(51_800 * count), "amount": str(total), "by_grade": [], "voided": 0,
            "acknowledged": 0, "paid": 0, "first_seq": 1, "last_seq": 2}),
            device="st-1", seq=seq, prev=prev, signer=device)

    early = closed(3, events.event_hash(sealed[-1]), 1, amount)      # closed too soon
    _batch(store, [*sealed, early], device)
    cols = ["device", "day", "closed_seq", "station_count", "bank_count", "station_amount_fen",
            "bank_amount_fen", "bank_held", "reconciled"]
    (row,) = store.query(f"SELECT {', '.join(cols)} FROM reconciliation")
    fen = int(amount * 100)
    assert dict(zip(cols, row, strict=True)) == {
        "device": "st-1", "day": "20260601", "closed_seq": 3, "station_count": 1,
        "bank_count": 2, "station_amount_fen": fen, "bank_amount_fen": 2 * fen,
        "bank_held": 0, "reconciled": 0}
    again = closed(4, events.event_hash(early), 2, 2 * amount)
    _batch(store, [again], device)
    (row,) = store.query(f"SELECT {', '.join(cols)} FROM reconciliation")
    assert dict(zip(cols, row, strict=True))["closed_seq"] == 4
    assert dict(zip(cols, row, strict=True))["reconciled"] == 1


@pytest.fixture
def pg_store(postgres_url):
    s = IngestStore(postgres_url)
    with s.db.transaction(()):
        add_price_table(s.db, make_command("st-1", "price_table.set", DOC, BACKEND),
                        Verifier.from_pem(BACKEND.public_key_pem()))
    yield s, postgres_url
    s.close()


def test_each_new_money_event_is_notified_on_cocoon_money_after_commit(pg_store):
    import psycopg

    store, url = pg_store
    device = Ed25519Signer.generate()
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN cocoon_money")
        sealed = _sealed_purchases(device, 2)
        heartbeat = events.seal(Draft("device.heartbeat", "telemetry", {"uptime_s": 1}),
                                device="st-1", seq=3, prev=events.event_hash(sealed[-1]),
                                signer=device)
        _batch(store, [*sealed, heartbeat], device)
        _batch(store, sealed, device)                          # duplicates: nothing new
        heard = [json.loads(n.payload) for n in listener.notifies(timeout=2)]
    assert heard == [{"device": "st-1", "seq": 1}, {"device": "st-1", "seq": 2}]


def test_a_reader_role_reads_the_views_and_nothing_else(pg_store, postgres, tmp_path):
    import psycopg

    store, url = pg_store
    device = Ed25519Signer.generate()
    _batch(store, _sealed_purchases(device), device)
    role = "reader_" + url.rsplit("/", 1)[1]
    postgres.admin(f"CREATE ROLE {role} LOGIN")
    done = subprocess.run([str(BIN / "cocoon-ingest"), "--config", str(_config(url, tmp_path)),
                           "grant-reader", role], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    as_reader = url.replace("postgresql://postgres@", f"postgresql://{role}@")
    with psycopg.connect(as_reader, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM purchases").fetchone() == (1,)
        for sql in ("SELECT * FROM events", "SELECT * FROM purchase_state",
                    "UPDATE purchase_state SET payment = 'paid'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def _config(url: str, folder: Path) -> Path:
    """An ingest file naming the PostgreSQL store (its [mqtt] is never used here)."""
    (folder / "ingest.toml").write_text(
        f'[ingest]\ndata_dir = "{folder}"\ndevices_dir = "{folder}"\n'
        f'[store]\nurl = "{url}"\n[mqtt]\nhost = "127.0.0.1"\nca_file = "x"\n'
        'cert_file = "x"\nkey_file = "x"\n')
    return folder / "ingest.toml"


def test_the_devices_and_custody_alerts_views(store):
    """A warehouse's breach, opened and then closed by its events, whatever order they came
    in; the device's open alerts and its revocation in `devices`."""
    device = Ed25519Signer.generate()
    drafts = [Draft("custody.breach", "alert", {"lot": "L-1", "epc": "E1", "pledge": "P-1"}),
              Draft("tamper.detected", "alert", {"input": "lid"}),
              Draft("tag.arrived", "telemetry", {"epc": "E1", "reader": "r1", "lot": "L-1"})]
    prev, sealed = events.GENESIS_PREV, []
    for seq, draft in enumerate(drafts, 1):
        sealed.append(events.seal(draft, device="wh-1", seq=seq, prev=prev, signer=device))
        prev = events.event_hash(sealed[-1])
    registry = type("R", (), {"get": lambda self, d: Verifier.from_pem(
        device.public_key_pem()) if d == "wh-1" else None})()
    store.process_batch([("cocoon/v1/wh-1/events", json.dumps(e).encode())
                         for e in reversed(sealed)], registry)
    cols = ["device", "alert", "opened_seq", "opened_ts", "closed_seq", "open"]
    rows = sorted(store.query(f"SELECT {', '.join(cols)} FROM custody_alerts"))
    assert [dict(zip(cols, r, strict=True)) for r in rows] == [
        {"device": "wh-1", "alert": "custody.breach:E1", "opened_seq": 1,
         "opened_ts": sealed[0]["ts"], "closed_seq": 3, "open": 0},
        {"device": "wh-1", "alert": "tamper.detected:lid", "opened_seq": 2,
         "opened_ts": sealed[1]["ts"], "closed_seq": None, "open": 1}]
    store.revoke("wh-1", "stolen")
    cols = ["device", "watermark", "accepted", "revoked_after_seq", "open_alerts"]
    (row,) = store.query(f"SELECT {', '.join(cols)} FROM devices")
    assert dict(zip(cols, row, strict=True)) == {
        "device": "wh-1", "watermark": 3, "accepted": 3, "revoked_after_seq": 3,
        "open_alerts": 1}
