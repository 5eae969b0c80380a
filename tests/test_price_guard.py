"""Price tables guarded at every use, and chosen by a trusted time: the station's real outbox,
signed store and effect runner, with the clock's synchronisation state given by the test.

- editing the stored table (base_price) no longer changes the next sale's price: the station
  says it cannot price and raises one `price_table.refused` alert;
- a wall clock that is not synchronised no longer chooses the table: the bank's time (a signed
  time hint, the ingest's signed ack) does, else the last trusted time for at most
  `untrusted_time_max_h`, and each purchase records `table_chosen_by`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.contract.clock import boot_id, time_note
from agent.contract.commands import make_command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import Ed25519Signer, Verifier
from agent.station import purchase as p
from agent.station.effects import EffectRunner
from agent.station.price_store import FILE_NAME, PriceTableStore
from agent.station.trusted_time import TrustedTime
from tests.support.running import add_device
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
CLERK = p.Staff("s-01", "Clerk Li", "clerk")
FARMER = p.Farmer("04a1b2c3", "cpu", "F-0001", "Zhang San", "acct-1", 7)
WEIGHED = p.Weighing("scale-1", 52_400, 60, 52_340, True, True, frames_digest="d" * 64)
GRADE = {"shell_g": "9.35", "moisture_pct": "16", "reelable_pct": "100",
         "defects_pct": {"perforated": "0", "stained": "1", "thin": "0", "mouldy": "0"}}
JUNE = datetime(2026, 6, 10, 8, tzinfo=timezone.utc)
BACKEND = Ed25519Signer.generate()


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


def table(version: int, base_price: str, valid_from: datetime, valid_until: datetime) -> dict:
    doc = json.loads((ROOT / "config" / "price-table.example.json").read_text())
    doc.update(version=version, base_price=base_price,
               valid_from=valid_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
               valid_until=valid_until.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return doc


@pytest.fixture
def station(make_outbox, tmp_path):
    """A station with June's table (v3, to June 30) and July's (v4, from June 30), both
    signed by the backend."""
    outbox = make_outbox(device="station-01")
    store = PriceTableStore(tmp_path / "prices", Verifier.from_pem(BACKEND.public_key_pem()),
                            "station-01")
    for version, price, start, days in ((3, "38.50", JUNE - timedelta(days=10), 30),
                                        (4, "44.00", JUNE + timedelta(days=20), 20)):
        store.install(make_command("station-01", "price_table.set",
                                   table(version, price, start, start + timedelta(days=days)),
                                   BACKEND))
    shown: list[str] = []

    def make(synced: bool, wall: datetime, max_h: float = 72) -> EffectRunner:
        runner = EffectRunner("station-01", outbox, write_card=lambda f, s: None,
                              display=shown.append, prices=store, clock=Clock(),
                              trusted=TrustedTime(outbox, max_h, synced=lambda: synced,
                                                  wall=wall.timestamp))
        for event in (p.StaffCard(CLERK), p.FarmerCard(FARMER), p.ScaleUpdate(WEIGHED)):
            runner.handle(event)
        return runner

    make.outbox, make.shown, make.path = outbox, shown, tmp_path / "prices" / FILE_NAME
    return make


def grade(runner: EffectRunner) -> None:
    runner.grade(GRADE)
    runner.handle(runner.inputs.get_nowait())


def sell(runner: EffectRunner) -> dict:
    grade(runner)
    assert runner.flow.phase is p.Phase.CONFIRMING, runner.flow
    runner.handle(p.Confirm())
    events = [parse_json_object(s.payload) for s in runner.outbox.pending(100)]
    return [e for e in events if e["type"] == "purchase.recorded"][-1]["body"]


def note(outbox, key: str, utc: datetime) -> None:
    outbox.write("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                 "value = excluded.value", [(key, time_note(utc))])


def earlier_boot(outbox, utc: datetime) -> None:
    """A synchronised clock seen at `utc`, in a boot before this one."""
    outbox.write("INSERT INTO meta (key, value) VALUES ('trusted_time', ?) ON CONFLICT(key) DO "
                 "UPDATE SET value = excluded.value",
                 [(json.dumps({"utc": utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "mono_ms": 1,
                               "boot_id": "an-earlier-boot"}),)])


def test_a_synchronised_clock_is_trusted(station):
    body = sell(station(synced=True, wall=JUNE))
    assert body["table_chosen_by"] == "trusted"
    assert body["pricing"]["table"]["version"] == "3"


@pytest.mark.parametrize("key", ["ingest_time", "time_hint"])
def test_an_unsynchronised_clock_prices_by_the_banks_time(station, key):
    """The wall clock says July (table v4, 44.00); the bank's signed time, heard in this boot,
    says June: June's table prices the sale."""
    runner = station(synced=False, wall=JUNE + timedelta(days=25))
    note(runner.outbox, key, JUNE)
    body = sell(runner)
    assert (body["table_chosen_by"], body["pricing"]["table"]["version"]) == ("trusted", "3")


def test_without_a_trusted_time_in_this_boot_the_last_one_chooses(station):
    """The wall clock says July 1 (v4); the last trusted time, 36 h before, was June 29 (v3):
    June's table prices, recorded as chosen by the last trusted time."""
    runner = station(synced=False, wall=datetime(2026, 7, 1, tzinfo=timezone.utc))
    # A trusted time written down before this boot: not carried forward, but the last known.
    earlier_boot(runner.outbox, datetime(2026, 6, 29, 12, tzinfo=timezone.utc))
    body = sell(runner)
    assert (body["table_chosen_by"], body["pricing"]["table"]["version"]) == ("last_trusted",
                                                                              "3")


def test_past_the_limit_or_with_no_trusted_time_it_refuses_to_price(station):
    runner = station(synced=False, wall=JUNE, max_h=72)
    grade(runner)
    assert runner.flow.phase is p.Phase.GRADING
    assert "never had a trusted time" in station.shown[-1]
    earlier_boot(runner.outbox, JUNE - timedelta(hours=100))
    grade(runner)
    assert runner.flow.phase is p.Phase.GRADING
    assert "100 h old, more than 72 h" in station.shown[-1]


def test_an_edited_table_is_refused_and_alerted_once(station):
    runner = station(synced=True, wall=JUNE)
    path = station.path
    path.write_text(path.read_text().replace('"38.50"', '"30.00"'))
    grade(runner)
    grade(runner)
    assert runner.flow.phase is p.Phase.GRADING     # nothing priced
    assert "The station CANNOT PRICE" in station.shown[-1]
    assert "fails its signature check" in station.shown[-1]
    alerts = [parse_json_object(s.payload) for s in runner.outbox.pending(100)]
    refused = [e for e in alerts if e["type"] == "price_table.refused"]
    assert len(refused) == 1 and refused[0]["priority"] == "alert"
    assert "altered after the backend signed it" in refused[0]["body"]["reason"]


def test_the_link_keeps_the_ingests_time_from_the_acks_it_applies(site, services):
    """The real link and ingest: the signed ack that moves the watermark leaves the bank's
    time in the outbox, with this boot's id, for the station to price by."""
    config = add_device(site, "dev-1")
    services.ingest(site.ingest_config)
    running = services.agent(config)
    outbox = running.agent.outbox

    def noted():
        rows = outbox.read("SELECT value FROM meta WHERE key = 'ingest_time'")
        return json.loads(rows[0][0]) if rows else None

    kept = wait_for(noted, 20, what="the ingest's time from an ack")
    assert kept["boot_id"] == boot_id()
    assert abs(datetime.strptime(kept["utc"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc) - datetime.now(timezone.utc)) < timedelta(seconds=30)
    when, how = TrustedTime(outbox, synced=lambda: False).now()
    assert how == "trusted" and abs(when - datetime.now(timezone.utc)) < timedelta(seconds=30)
