"""Warehouse scenarios through a simulated "BB ... 7E" module on a socat pty pair.

The module is the tag drivers' simulator (`drivers.tags.simulator`: a seeded field with missed
reads, RSSI noise and cross-reads, real frames on the wire); the agent's side is the real
`BB7EReader` opening the other end of the pair as it would /dev/ttyUSB0, feeding the real
`Warehouse` service with gpiozero mock pins, a real outbox and the real Dispatcher. Only the
monotonic clock can jump, so ten minutes of absence take no time at all.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
from gpiozero.pins.mock import MockFactory

from agent.contract.clock import utc_timestamp
from agent.contract.commands import BANK, make_command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import Ed25519Signer, Verifier
from agent.spine.dispatcher import Dispatcher
from agent.warehouse.presence import TagStatus
from agent.warehouse.service import Warehouse
from agent.warehouse.store import WarehouseStore
from drivers.tags.bb7e_reader import BB7EReader
from drivers.tags.errors import FrameError
from drivers.tags.sim_field import TagField
from drivers.tags.simulator import BB7ESimulator
from tests.support.waiting import wait_for
from tests.test_warehouse_scenarios import DEV, Clock, warehouse_config

pytest_plugins = ("tests.support.pty",)

LOT = [f"e28011700000020{i:09x}" for i in range(4)]
OTHER = [f"300833b2ddd9014000000{i:03x}" for i in range(2)]


class PtyRig:
    """A simulated module on the pty's far end, the real reader on its near end, the service."""

    def __init__(self, tmp_path, pty_pair, outbox, factory, reader_silent_s=900):
        self.tmp_path, self.pty, self.outbox, self.factory = tmp_path, pty_pair, outbox, factory
        self.field = TagField(4, seed=11, miss_rate=0.2, rssi_noise_db=2, cross_read_rate=0.1)
        for epc in LOT:
            self.field.add(epc, antenna=1, rssi=-60)
        for epc in OTHER:
            self.field.add(epc, antenna=3, rssi=-55)
        self.rejected: list = []
        self.reader = BB7EReader(str(pty_pair.device), name="dock", silence_s=2,
                                 backoff_initial=0.05, backoff_max=0.2,
                                 on_error=self.rejected.append)
        self.clock = Clock()
        self.bank = Ed25519Signer.generate()
        config = warehouse_config(tmp_path, reader_silent_s=reader_silent_s)
        self.w = Warehouse(outbox, config, tmp_path, readers=[self.reader],
                           pin_factory=factory, mono_ms=self.clock.mono_ms,
                           utc_now=lambda: self.clock.utc, local_time=lambda: self.clock.local,
                           shutdown=lambda: None)
        self.dispatcher = Dispatcher(DEV, outbox, {BANK: Verifier.from_pem(
            self.bank.public_key_pem())}, now=lambda: self.clock.utc)
        self.w.register(self.dispatcher)
        for pin in (5, 6):  # door and enclosure closed
            factory.pin(pin).drive_low()
        self.sim: BB7ESimulator | None = None
        self.stop = threading.Event()

    def start(self, garbage_rate: float = 0.0) -> None:
        self.start_module(garbage_rate)
        self.w.start(self.stop)
        self.wait_read(LOT + OTHER)

    def start_module(self, garbage_rate: float = 0.0) -> None:
        self.sim = BB7ESimulator(str(self.pty.peer), self.field, rounds_per_s=25,
                                 garbage_rate=garbage_rate).start()

    def close(self) -> None:
        self.stop.set()
        self.w.close()
        if self.sim is not None:
            self.sim.stop()

    # -- looking at the service -----------------------------------------------------------

    def events(self, type_=None):
        rows = [parse_json_object(s.payload) for s in self.outbox.pending(100_000)]
        return [e for e in rows if type_ is None or e["type"] == type_]

    def wait_read(self, epcs, since_ms: int | None = None, timeout: float = 5.0) -> None:
        """Until every tag in `epcs` has been read (after `since_ms`, the service's clock)."""
        def read():
            with self.w.lock:
                tags = [self.w.presence.tags.get(e) for e in epcs]
                return all(t is not None and t.status is TagStatus.PRESENT
                           and (since_ms is None or t.last_seen_ms > since_ms) for t in tags)
        wait_for(read, timeout, what=f"reads of {len(epcs)} tags through the pty")

    def time_passes(self, seconds: float, read: list[str]) -> None:
        """Warehouse time passes in two halves while the module keeps reading; `read` must be
        seen again after each half (so no half is ever long enough to depart a tag that is
        there), then departures are checked."""
        for _ in range(2):
            self.clock.jump(seconds / 2)
            self.wait_read(read, self.clock.mono_ms() - 1)
        self.w.housekeeping()

    def time_passes_empty(self, seconds: float) -> None:
        """Warehouse time passes in two halves while the module answers with an empty field
        (it must answer again after each half), then departures are checked."""
        for _ in range(2):
            self.clock.jump(seconds / 2)
            answers = self.reader.answers
            wait_for(lambda n=answers: self.reader.answers > n, 5, what="the module answering")
            self.w.housekeeping()

    # -- the bank -------------------------------------------------------------------------

    def receive_and_pledge(self) -> None:
        store = WarehouseStore(self.tmp_path / "warehouse.sqlite")
        rid = store.add_receipt("LOT-1", ["station-01/42"], LOT, "200.5")
        self.w.housekeeping()
        assert store.receipt(rid) == (1, None)
        store.close()
        cmd = make_command(DEV, "pledge.create", {"lots": ["LOT-1"], "tags": 4, "kg": "200.5"},
                           self.bank, now=self.clock.utc)
        self.dispatcher.handle(json.dumps(cmd).encode())
        assert self.w.custody.pledges, self.events("command.failed")


@pytest.fixture
def rig(tmp_path, pty_pair, make_outbox):
    factory = MockFactory()
    r = PtyRig(tmp_path, pty_pair, make_outbox(), factory)
    yield r
    r.close()
    factory.reset()


def test_garbage_between_notices_is_survived_and_reported(rig, caplog):
    caplog.set_level(logging.WARNING, logger="drivers.tags.bb7e_reader")
    rig.start(garbage_rate=0.1)
    wait_for(lambda: len(rig.rejected) >= 20 and rig.reader.reads >= 250, 10,
             what="reads and rejected frames")
    arrived = {e["body"]["epc"] for e in wait_for(
        lambda: len(rig.events("tag.arrived")) >= 6 and rig.events("tag.arrived"), 5)}
    assert arrived == set(LOT + OTHER)                    # noise never became a tag
    assert all(isinstance(e, FrameError) for e in rig.rejected)
    assert set(rig.w.presence.tags) == set(LOT + OTHER)
    assert rig.events("reader.offline") == []             # noise is not an outage
    assert rig.reader.rejected >= 20
    (line,) = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert line.startswith("tag reader dock:")            # one line, not one per frame


def test_unplugged_reader_is_one_alert_and_returns_without_a_departure_storm(rig):
    rig.start()
    rig.receive_and_pledge()
    rig.sim.stop()
    rig.pty.unplug()
    (off,) = wait_for(lambda: rig.events("reader.offline"), 5, what="reader.offline")
    assert off["priority"] == "alert" and off["body"]["reason"] == "offline"
    assert off["body"]["tags_unknown"] == 6
    for _ in range(6):                                    # an hour unplugged
        rig.clock.jump(600)
        rig.w.housekeeping()
    assert rig.events("tag.departed") == [] and rig.events("custody.breach") == []
    assert rig.events("custody.shortfall") == []          # unknown counts as in stock
    mark = rig.clock.mono_ms()
    rig.pty.plug()
    rig.start_module()
    (on,) = wait_for(lambda: rig.events("reader.online"), 5, what="reader.online")
    assert on["body"]["down_s"] >= 3600
    rig.wait_read(LOT + OTHER, mark)
    rig.time_passes(601, LOT + OTHER)
    assert rig.events("tag.departed") == [] and rig.events("custody.breach") == []
    assert len(rig.events("reader.offline")) == 1         # one outage, one alert


def test_a_bale_moves_between_antennas(rig):
    rig.start()
    wait_for(lambda: rig.w.presence.tags[LOT[0]].location == ("dock", 1), 5,
             what="the bale placed at antenna 1")
    rig.field.move(LOT[0], 2, rssi=-42)

    def moved_to_2():  # (a first sighting by a cross-read may make an earlier move)
        return [e for e in rig.events("tag.moved")
                if e["body"]["epc"] == LOT[0] and e["body"]["to"] == "dock#2"]
    (moved,) = wait_for(moved_to_2, 5, what="tag.moved to antenna 2")
    body = moved["body"]
    assert body["from"] == "dock#1"
    # the new antenna's moving average (earlier cross-reads there included) beat the old one
    assert -75 < float(body["rssi_avg"]) <= -40
    assert rig.w.presence.tags[LOT[0]].location == ("dock", 2)


def test_a_lot_leaves_without_a_release_and_custody_is_breached(rig):
    rig.start()
    rig.receive_and_pledge()
    for epc in LOT[:2]:
        rig.field.remove(epc)
    rig.time_passes(601, LOT[2:] + OTHER)
    breaches = wait_for(lambda: rig.events("custody.breach"), 2, what="custody.breach")
    assert sorted(b["body"]["epc"] for b in breaches) == LOT[:2]
    assert all(b["priority"] == "alert" and b["body"]["lot"] == "LOT-1"
               and b["body"]["location"] == "dock#1" for b in breaches)
    (short,) = rig.events("custody.shortfall")
    assert short["body"]["in_stock_tags"] == 2
    assert rig.factory.pin(26).state is True              # the alert light
    assert rig.events("tag.departed") == []               # the others stayed


def test_the_whole_field_emptied_under_an_answering_module_is_a_breach(
        tmp_path, pty_pair, make_outbox):
    """Every bale under the reader is carried out; the module goes on answering "no tag" to
    the reader's probes. With the default reader_silent_s (as long as departed_after_s) the
    pledged bales are breached and the pledge falls short; no reader outage is reported."""
    factory = MockFactory()
    rig = PtyRig(tmp_path, pty_pair, make_outbox(), factory, reader_silent_s=600)
    try:
        rig.start()
        rig.receive_and_pledge()
        for epc in LOT + OTHER:
            rig.field.remove(epc)
        rig.time_passes_empty(601)
        breaches = wait_for(lambda: rig.events("custody.breach"), 2, what="custody.breach")
        assert sorted(b["body"]["epc"] for b in breaches) == LOT
        (short,) = rig.events("custody.shortfall")
        assert short["body"]["in_stock_tags"] == 0
        assert sorted(d["body"]["epc"] for d in rig.events("tag.departed")) == OTHER
        assert rig.events("reader.offline") == []
    finally:
        rig.close()
        factory.reset()


def test_a_lot_leaves_under_a_release_and_nothing_is_breached(rig):
    rig.start()
    rig.receive_and_pledge()
    cmd = make_command(DEV, "release.authorize", {
        "lot": "LOT-1", "tags": 2,
        "not_before": utc_timestamp(rig.clock.utc - timedelta(minutes=1)),
        "not_after": utc_timestamp(rig.clock.utc + timedelta(hours=2))}, rig.bank,
        now=rig.clock.utc)
    rig.dispatcher.handle(json.dumps(cmd).encode())
    for epc in LOT[:2]:
        rig.field.remove(epc)
    rig.time_passes(601, LOT[2:] + OTHER)
    departed = wait_for(lambda: rig.events("tag.departed"), 2, what="tag.departed")
    assert sorted(d["body"]["epc"] for d in departed) == LOT[:2]
    assert {d["body"]["release"] for d in departed} == {cmd["id"]}
    assert rig.events("custody.breach") == [] and rig.events("custody.shortfall") == []


def test_expired_and_forged_releases_are_refused_and_the_bale_is_breached(rig):
    rig.start()
    rig.receive_and_pledge()
    now = rig.clock.utc

    def send(signer, issued, start, end):
        cmd = make_command(DEV, "release.authorize", {
            "lot": "LOT-1", "tags": 4, "not_before": utc_timestamp(start),
            "not_after": utc_timestamp(end)}, signer, expires_in_s=60, now=issued)
        rig.dispatcher.handle(json.dumps(cmd).encode())

    window = (now - timedelta(hours=1), now + timedelta(hours=2))
    send(Ed25519Signer.generate(), now, *window)                  # forged: not the bank's key
    send(rig.bank, now - timedelta(hours=2), *window)              # the command expired
    send(rig.bank, now, now - timedelta(hours=3), now - timedelta(hours=1))   # window over
    refused = [e["body"]["reason"] for e in rig.events("command.refused")]
    assert any("signature not from the bank key" in r for r in refused)
    assert any("expired" in r for r in refused)
    assert any("window ended" in e["body"]["reason"] for e in rig.events("command.failed"))
    assert rig.w.custody.releases == {}
    rig.field.remove(LOT[0])
    rig.time_passes(601, LOT[1:] + OTHER)
    breaches = wait_for(lambda: rig.events("custody.breach"), 2, what="custody.breach")
    assert [b["body"]["epc"] for b in breaches] == [LOT[0]]
    assert rig.events("tag.departed") == []


def test_a_module_that_stops_answering_is_one_alert_and_no_departures(rig):
    rig.start()
    rig.receive_and_pledge()
    rig.sim.hang()                                        # port open, nothing answers
    (off,) = wait_for(lambda: rig.events("reader.offline"), 6, what="reader.offline")
    assert "no answer from the module" in off["body"]["detail"]
    rig.clock.jump(1200)
    rig.w.housekeeping()
    assert rig.events("tag.departed") == [] and rig.events("custody.breach") == []
    mark = rig.clock.mono_ms()
    rig.sim.resume()
    wait_for(lambda: rig.events("reader.online"), 6, what="reader.online")
    rig.time_passes(601, LOT + OTHER)
    assert rig.events("tag.departed") == [] and rig.events("custody.breach") == []
    assert len(rig.events("reader.offline")) == 1
    assert rig.w.presence.tags[LOT[0]].last_seen_ms > mark
