"""Warehouse scenarios through the service: scripted tag readers (calling on_read/on_health as
a driver does), gpiozero mock pins, a simulated SHT3x, a real outbox and the real Dispatcher."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.contract.clock import utc_timestamp
from agent.contract.commands import BANK, make_command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import Ed25519Signer, Verifier
from agent.spine.dispatcher import Dispatcher
from agent.warehouse.service import Warehouse
from agent.warehouse.store import WarehouseStore
from drivers.climate import SHT3x, SimulatedSht3x
from drivers.tags import ReaderHealth, TagRead
from tests.support.waiting import wait_for

DEV = "dev-a"
LOT = [f"e28011700000020{i:09x}" for i in range(4)]
OTHER = [f"300833b2ddd9014000000{i:03x}" for i in range(2)]


class ScriptedReader:
    """A TagReader that replays what the test queues, as a driver would report it."""

    def __init__(self, name: str, online_at_start: bool = True):
        self.name = name
        self.online_at_start = online_at_start
        self.inbox: queue.Queue = queue.Queue()
        self.started = threading.Event()
        self.answers = 0    # answers from the device, tags or not (an empty inventory round)

    def run(self, on_read, on_health, stop: threading.Event) -> None:
        on_health(ReaderHealth(self.name, self.online_at_start,
                               "connected" if self.online_at_start else "cable"))
        self.started.set()
        while not stop.is_set():
            try:
                item = self.inbox.get(timeout=0.02)
            except queue.Empty:
                continue
            try:
                if isinstance(item, TagRead):
                    on_read(item)
                else:
                    on_health(item)
            finally:
                self.inbox.task_done()

    def reads(self, epcs, antenna=1, rssi=-60, times=1):
        for _ in range(times):
            for epc in epcs:
                self.inbox.put(TagRead(epc, rssi, antenna, time.monotonic_ns() // 10**6))
        self.inbox.join()

    def health(self, online: bool, detail: str = ""):
        self.inbox.put(ReaderHealth(self.name, online, detail))
        self.inbox.join()

    def answer(self):
        """An inventory round that found no tag: the device answers, reads nothing."""
        self.answers += 1


class Clock:
    """Real monotonic time plus a jump the test controls, so debouncing runs in real time
    while ten minutes of silence take no time at all. The wall clock moves with it (from
    2026-06-01 08:00 UTC), so a read's wall time follows from its monotonic time."""

    def __init__(self):
        self.offset_ms = 0
        self._start_ms = self.mono_ms()
        self._start_utc = datetime(2026, 6, 1, 8, tzinfo=timezone.utc)
        self.local = dtime(10, 0)

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 10**6 + self.offset_ms

    @property
    def utc(self) -> datetime:
        return self._start_utc + timedelta(milliseconds=self.mono_ms() - self._start_ms)

    def jump(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


def warehouse_config(tmp_path: Path, **extra) -> object:
    table = {"departed_after_s": 600, "reader_silent_s": 900, "check_interval_s": 30,
             "snapshot_interval_s": 3600, "open_hours": "07:00-19:00", "gpio_factory": "mock",
             "doors": {"main": 5}, "tamper_pin": 6, "power_pin": 13, "siren_pin": 19,
             "light_pin": 26, "debounce_ms": 30, "gpio_poll_ms": 5, "power_grace_s": 2,
             "climate_telemetry_s": 0, **extra}
    raw = {"device": {"id": DEV, "data_dir": str(tmp_path)},
           "mqtt": {"host": "127.0.0.1", "ca_file": "ca", "cert_file": "c", "key_file": "k"},
           "keys": {"ingest_public_key_file": "i"}, "warehouse": table}
    return parse_config(raw, tmp_path / "agent.toml").section("warehouse")


class Rig:
    def __init__(self, tmp_path, outbox, factory, *, start=True, clock=None,
                 online_at_start=True, **extra):
        self.tmp_path, self.outbox, self.factory = tmp_path, outbox, factory
        self.clock = clock or Clock()
        self.reader = ScriptedReader("dock", online_at_start)
        self.chip = SimulatedSht3x(rh_pct="65.00")
        self.shutdowns = []          # the ingest's ack watermark when each shutdown ran
        self.shutdown_at = []        # and when (time.monotonic())
        self.bank = Ed25519Signer.generate()
        self.config = warehouse_config(tmp_path, **extra)
        self.w = Warehouse(outbox, self.config, tmp_path, readers=[self.reader],
                           pin_factory=factory, climate_sensor=SHT3x(self.chip),
                           mono_ms=self.clock.mono_ms, utc_now=lambda: self.clock.utc,
                           local_time=lambda: self.clock.local,
                           shutdown=self._shutdown)
        self.dispatcher = Dispatcher(DEV, outbox, {BANK: Verifier.from_pem(
            self.bank.public_key_pem())}, now=lambda: self.clock.utc)
        self.w.register(self.dispatcher)
        self.stop = threading.Event()
        for pin in (5, 6):  # door and enclosure closed (their contacts pull the pins low)
            factory.pin(pin).drive_low()
        if start:
            self.start()

    def _shutdown(self):
        self.shutdown_at.append(time.monotonic())
        self.shutdowns.append(self.outbox.acked_seq())

    def start(self):
        self.w.start(self.stop)
        wait_for(self.reader.started.is_set, 5, what="the reader's first report")

    def close(self):
        self.stop.set()
        self.w.close()

    def events(self, type_=None):
        rows = [parse_json_object(s.payload) for s in self.outbox.pending(100_000)]
        return [e for e in rows if type_ is None or e["type"] == type_]

    def command(self, type_, body, **kw):
        kw.setdefault("now", self.clock.utc)
        cmd = make_command(DEV, type_, body, kw.pop("signer", self.bank), **kw)
        self.dispatcher.handle(json.dumps(cmd).encode())
        return cmd["id"]

    def receive(self, lot="LOT-1", epcs=LOT):
        store = WarehouseStore(self.tmp_path / "warehouse.sqlite")
        rid = store.add_receipt(lot, ["station-01/42"], epcs, "200.5")
        self.w.housekeeping()
        assert store.receipt(rid) == (1, None)
        store.close()

    def pledge(self, lot="LOT-1", tags=4, type_="pledge", **kw):
        return self.command(type_, {"lots": [lot], "tags": tags, "kg": "200.5"}, **kw)

    def release(self, tags, start_h=-1.0, end_h=2.0, **kw):
        return self.command("release.authorize", {
            "lot": "LOT-1", "tags": tags,
            "not_before": utc_timestamp(self.clock.utc + timedelta(hours=start_h)),
            "not_after": utc_timestamp(self.clock.utc + timedelta(hours=end_h))}, **kw)

    def leave_with(self, stays, seconds=601):
        """Time passes while only `stays` are read; departures are checked."""
        self.clock.jump(seconds / 2)
        self.reader.reads(stays)
        self.clock.jump(seconds / 2)
        self.reader.reads(stays)
        self.w.housekeeping()


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def rig(tmp_path, make_outbox, factory):
    r = Rig(tmp_path, make_outbox(), factory)
    r.reader.reads(LOT + OTHER)
    r.receive()
    r.pledge()
    yield r
    r.close()


def test_a_lot_leaves_without_a_release_breach_shortfall_siren(rig, factory):
    rig.leave_with(LOT[2:] + OTHER)
    breaches = rig.events("custody.breach")
    assert sorted(b["body"]["epc"] for b in breaches) == LOT[:2]
    assert all(b["priority"] == "alert" and b["body"]["lot"] == "LOT-1" for b in breaches)
    (short,) = rig.events("custody.shortfall")
    assert short["body"]["in_stock_tags"] == 2 and short["body"]["required_tags"] == 4
    assert factory.pin(26).state is True                       # alert light on
    wait_for(lambda: factory.pin(19).state is True, 2, what="the siren")


def test_a_lot_leaves_with_a_release(rig, factory):
    rig.release(2)
    (done,) = [e for e in rig.events("command.done") if e["body"]["type"] == "release.authorize"]
    assert done["body"]["type"] == "release.authorize"
    rig.leave_with(LOT[2:] + OTHER)
    departed = rig.events("tag.departed")
    assert sorted(d["body"]["epc"] for d in departed) == LOT[:2]
    assert all(d["body"]["release"] == done["body"]["id"] for d in departed)
    assert rig.events("custody.breach") == [] and rig.events("custody.shortfall") == []
    assert factory.pin(19).state is False and factory.pin(26).state is False
    # the release is used up: the next one to leave is a breach
    rig.leave_with(LOT[3:] + OTHER)
    assert [b["body"]["epc"] for b in rig.events("custody.breach")] == [LOT[2]]


def test_a_release_whose_window_ends_after_the_last_read_covers_the_departure(rig):
    """The bales were last read at 08:00, inside a window that ends at 08:05; the departure
    is noticed at 08:10. They left under the release: no breach."""
    rig.release(2, start_h=-1, end_h=5 / 60)
    rig.leave_with(LOT[2:] + OTHER)
    assert sorted(d["body"]["epc"] for d in rig.events("tag.departed")) == LOT[:2]
    assert rig.events("custody.breach") == []


def test_a_release_whose_window_opens_after_the_last_read_does_not_cover_it(rig):
    """The bales were last read at 08:00 and left before a window that opens at 08:05; the
    departure is noticed at 08:10, inside the window. They left without a release."""
    rig.release(2, start_h=5 / 60, end_h=2)
    rig.leave_with(LOT[2:] + OTHER)
    assert sorted(b["body"]["epc"] for b in rig.events("custody.breach")) == LOT[:2]
    assert rig.w.custody.releases and all(r.used == 0 for r in rig.w.custody.releases.values())


@pytest.mark.parametrize("type_", ["pledge", "pledge.create"])
def test_the_banks_pledge_by_its_name_or_its_alias(tmp_path, make_outbox, factory, type_):
    """`pledge` is the bank's command; `pledge.create` is the same command by its earlier
    name. Both need the bank's key: signed by anyone else, neither pledges anything."""
    rig = Rig(tmp_path, make_outbox(), factory)
    try:
        rig.reader.reads(LOT)
        rig.receive()
        rig.pledge(type_=type_, signer=Ed25519Signer.generate())       # not the bank
        (refused,) = rig.events("command.refused")
        assert refused["body"]["type"] == type_
        assert "signature not from the bank key" in refused["body"]["reason"]
        assert rig.w.custody.pledges == {}
        cmd_id = rig.pledge(type_=type_)
        (done,) = rig.events("command.done")
        assert done["body"]["type"] == type_ and done["body"]["result"]["pledge"] == cmd_id
        assert rig.w.custody.pledges[cmd_id].lots == ("LOT-1",)
        rig.leave_with(LOT[1:])
        assert [b["body"]["pledge"] for b in rig.events("custody.breach")] == [cmd_id]
    finally:
        rig.close()


def test_expired_forged_and_unknown_releases_are_refused(rig):
    forger = Ed25519Signer.generate()
    rig.release(4, signer=forger)
    rig.release(4, expires_in_s=60, now=rig.clock.utc - timedelta(hours=2))   # command expired
    rig.release(4, start_h=-3, end_h=-1)                                      # window over
    rig.command("release.authorize", {"lot": "LOT-9", "tags": 1, "not_before":
                                      utc_timestamp(rig.clock.utc),
                                      "not_after": utc_timestamp(rig.clock.utc
                                                                 + timedelta(hours=1))})
    reasons = [e["body"]["reason"] for e in rig.events("command.refused")]
    assert any("signature not from the bank key" in r for r in reasons)
    assert any("expired" in r for r in reasons)
    failed = [e["body"]["reason"] for e in rig.events("command.failed")]
    assert any("window ended" in r for r in failed) and any("never received" in r for r in failed)
    assert rig.w.custody.releases == {}
    rig.leave_with(LOT[1:] + OTHER)
    assert [b["body"]["epc"] for b in rig.events("custody.breach")] == [LOT[0]]


def test_a_tag_that_stops_being_read_departs_once(rig):
    rig.leave_with(LOT + OTHER[1:])
    (gone,) = wait_for(lambda: rig.events("tag.departed"), 2, what="telemetry tag.departed")
    assert gone["body"]["epc"] == OTHER[0] and gone["priority"] == "telemetry"
    rig.leave_with(LOT + OTHER[1:])
    assert len(rig.events("tag.departed")) == 1
    rig.reader.reads(OTHER[:1])
    wait_for(lambda: rig.events("tag.arrived")[-1]["body"]["returned"], 2, what="its return")


def test_a_bale_moves_between_antennas(rig):
    rig.reader.reads(LOT[:1], antenna=2, rssi=-45)
    assert rig.events("tag.moved") == []  # one read is not enough
    rig.reader.reads(LOT[:1], antenna=2, rssi=-47)
    (moved,) = wait_for(lambda: rig.events("tag.moved"), 2, what="tag.moved")
    assert moved["body"] == {"epc": LOT[0], "from": "dock#1", "to": "dock#2",
                             "rssi_avg": "-46.0", "lot": "LOT-1"}


def test_the_reader_disconnects_and_returns_without_a_storm(rig):
    rig.reader.health(False, "port /dev/ttyUSB0 vanished")
    rig.reader.health(False, "still gone")
    (off,) = rig.events("reader.offline")
    assert off["body"]["tags_unknown"] == 6 and off["body"]["reason"] == "offline"
    for _ in range(5):  # an hour of outage
        rig.clock.jump(720)
        rig.w.housekeeping()
    assert rig.events("custody.breach") == [] and rig.events("tag.departed") == []
    assert rig.events("custody.shortfall") == []
    rig.reader.health(True, "connected")
    (on,) = rig.events("reader.online")
    assert on["body"]["down_s"] >= 3600
    rig.leave_with(LOT)  # back: the others were taken during the outage
    wait_for(lambda: len(rig.events("tag.departed")) == 2, 2, what="two departures")
    assert sorted(e["body"]["epc"] for e in rig.events("tag.departed")) == OTHER
    assert rig.events("custody.breach") == []


def test_a_silent_reader_is_one_alert_and_cleared_by_its_next_read(rig):
    rig.clock.jump(901)
    rig.w.housekeeping()
    (off,) = rig.events("reader.offline")
    assert off["body"]["reason"] == "silent"
    assert rig.events("tag.departed") == []
    rig.reader.reads(LOT + OTHER)
    assert len(rig.events("reader.online")) == 1
    assert WarehouseStore(rig.tmp_path / "warehouse.sqlite").open_alerts() == []


def test_a_whole_pledged_lot_taken_from_a_reader_that_keeps_answering_is_breached(
        tmp_path, make_outbox, factory):
    """Every tag under the reader is carried out; the reader goes on answering with empty
    rounds. With reader_silent_s as long as departed_after_s (the defaults), that must be a
    breach of every pledged tag and a shortfall, not a reader outage that hides the theft."""
    rig = Rig(tmp_path, make_outbox(), factory, reader_silent_s=600)
    try:
        rig.reader.reads(LOT)
        rig.receive()
        rig.pledge()
        for _ in range(4):                 # 10 minutes of empty rounds
            rig.clock.jump(151)
            rig.reader.answer()
            rig.w.housekeeping()
        breaches = rig.events("custody.breach")
        assert sorted(b["body"]["epc"] for b in breaches) == sorted(LOT)
        (short,) = rig.events("custody.shortfall")
        assert short["body"]["in_stock_tags"] == 0 and short["body"]["required_tags"] == 4
        assert rig.events("reader.offline") == []
        assert {kind for _, kind, _, _ in rig.w.store.open_alerts()} == {
            "custody.breach", "custody.shortfall"}
    finally:
        rig.close()


def test_a_reader_that_stops_answering_hides_nothing_but_breaches_nobody(
        tmp_path, make_outbox, factory):
    """The same theft under a reader that stops answering at the same moment: one outage
    alert, the tags unknown; when it answers again its tags get a full T, then depart."""
    rig = Rig(tmp_path, make_outbox(), factory, reader_silent_s=600)
    try:
        rig.reader.reads(LOT)
        rig.receive()
        rig.pledge()
        rig.clock.jump(601)
        rig.w.housekeeping()
        (off,) = rig.events("reader.offline")
        assert off["body"]["reason"] == "silent" and off["body"]["tags_unknown"] == 4
        assert rig.events("custody.breach") == []
        rig.reader.answer()
        rig.w.housekeeping()
        assert len(rig.events("reader.online")) == 1
        for _ in range(4):
            rig.clock.jump(151)
            rig.reader.answer()
            rig.w.housekeeping()
        assert len(rig.events("custody.breach")) == 4
        assert len(rig.events("custody.shortfall")) == 1
    finally:
        rig.close()


def test_snapshot_is_signed_hourly_per_lot(rig):
    rig.w.housekeeping()
    assert rig.events("inventory.snapshot") == []
    rig.clock.jump(3601)
    rig.reader.reads(LOT + OTHER)
    rig.w.housekeeping()
    (snap,) = rig.events("inventory.snapshot")
    assert snap["body"]["count"] == 4 and snap["body"]["tags"] == sorted(LOT)


def test_door_out_of_hours_tamper_and_power_loss(rig, factory):
    door, tamper, power = factory.pin(5), factory.pin(6), factory.pin(13)
    rig.clock.local = dtime(23, 0)
    door.drive_high()
    door.drive_low()  # chatter shorter than the debounce
    door.drive_high()
    opened = wait_for(lambda: rig.events("door.opened"), 2, what="door.opened")
    assert len(opened) == 1 and opened[0]["priority"] == "alert"
    wait_for(lambda: factory.pin(19).state, 2, what="the siren")
    door.drive_low()
    wait_for(lambda: rig.events("door.closed"), 2, what="door.closed")
    tamper.drive_low()
    tamper.drive_high()
    wait_for(lambda: rig.events("tamper.detected"), 2, what="tamper.detected")
    cut = time.monotonic()
    power.drive_low()
    (lost,) = wait_for(lambda: rig.events("power.lost"), 2, what="power.lost")
    # no ingest acknowledges here: the shutdown waits for the grace time, then goes ahead
    wait_for(lambda: rig.shutdowns, 5, what="the shutdown")
    assert lost["seq"] > 0 and lost["priority"] == "alert"
    assert rig.shutdowns == [rig.outbox.acked_seq()] and rig.shutdowns[0] < lost["seq"]
    assert rig.shutdown_at[0] - cut >= rig.config.power_grace_s   # the whole grace time


def test_the_shutdown_waits_for_the_ingests_ack_of_the_power_alert(
        tmp_path, make_outbox, factory):
    """With an ingest answering, the device goes dark as soon as the bank has the alert:
    not before the ack, and not a whole grace time later."""
    rig = Rig(tmp_path, make_outbox(), factory, power_grace_s=30)
    try:
        factory.pin(13).drive_low()
        (lost,) = wait_for(lambda: rig.events("power.lost"), 2, what="power.lost")
        time.sleep(0.5)
        assert rig.shutdowns == []                       # waiting for the bank to have it
        seq = lost["seq"]
        acked = time.monotonic()
        rig.outbox.acknowledge(seq, rig.outbox.event_hash(seq))   # the ingest's ack
        wait_for(lambda: rig.shutdowns, 5, what="the shutdown after the ack")
        assert rig.shutdowns == [seq]                    # the alert was acknowledged first
        assert rig.shutdown_at[0] - acked < 5            # not the 30 s grace time
    finally:
        rig.close()


def test_climate_crossings_and_sensor_faults(rig):
    rig.w.poll_climate()
    rig.chip.rh_pct = type(rig.chip.rh_pct)("71.20")
    rig.w.poll_climate()
    (high,) = rig.events("climate.out_of_range")
    assert high["body"]["band"] == "high" and high["body"]["rh_pct"] == "71.20"
    rig.chip.unplugged = True
    rig.w.poll_climate()
    rig.w.poll_climate()
    assert len(rig.events("climate.sensor_failed")) == 1
    rig.chip.unplugged = False
    rig.chip.rh_pct = type(rig.chip.rh_pct)("66.00")
    rig.w.poll_climate()
    alerts = [e["type"] for e in rig.events()   # telemetry (climate.reading) lands in between
              if e["type"].startswith("climate.") and e["type"] != "climate.reading"]
    assert alerts[-2:] == ["climate.sensor_restored", "climate.in_range"]
    wait_for(lambda: len(rig.events("climate.reading")) >= 3, 2, what="telemetry")


def test_state_survives_a_restart(tmp_path, make_outbox, factory):
    outbox = make_outbox()
    first = Rig(tmp_path, outbox, factory)
    first.reader.reads(LOT + OTHER)
    first.receive()
    first.pledge()
    first.release(1)
    first.reader.health(False, "cable")
    first.close()
    factory.reset()
    again = Rig(tmp_path, outbox, factory, clock=first.clock, online_at_start=False)
    try:
        again.reader.health(False, "cable")  # the same outage: no second alert
        assert len(again.events("reader.offline")) == 1
        again.reader.health(True, "")
        again.leave_with(LOT[1:] + OTHER)
        (gone,) = again.events("tag.departed")
        assert gone["body"]["epc"] == LOT[0] and "release" in gone["body"]
        assert again.events("custody.breach") == []
    finally:
        again.close()


def _open_alert_keys(rig):
    return {key for key, *_ in rig.w.store.open_alerts()}


def test_power_lost_then_back_after_the_restart_is_restored_and_closed(
        tmp_path, make_outbox, factory):
    """Power fails, the agent shuts the device down; it boots again on mains power. The
    open power alert must be closed by a signed power.restored, not stay open for ever."""
    outbox = make_outbox()
    first = Rig(tmp_path, outbox, factory)
    factory.pin(13).drive_low()
    wait_for(lambda: first.events("power.lost"), 2, what="power.lost")
    wait_for(lambda: first.shutdowns, 5, what="the shutdown")
    assert "power" in _open_alert_keys(first)
    first.close()
    factory.reset()                                  # back up, with mains power
    again = Rig(tmp_path, outbox, factory, clock=first.clock)
    try:
        (restored,) = again.events("power.restored")
        assert restored["priority"] == "alert" and restored["body"] == {"input": "power"}
        assert len(again.events("power.lost")) == 1
        assert _open_alert_keys(again) == set()
        assert factory.pin(26).state is False        # the alert light is off
        time.sleep(0.1)
        assert again.shutdowns == []
    finally:
        again.close()


def test_power_still_lost_after_the_restart_is_not_repeated_and_shuts_down_again(
        tmp_path, make_outbox, factory):
    outbox = make_outbox()
    first = Rig(tmp_path, outbox, factory)
    factory.pin(13).drive_low()
    wait_for(lambda: first.shutdowns, 5, what="the shutdown")
    first.close()
    factory.reset()
    again = Rig(tmp_path, outbox, factory, clock=first.clock, start=False)
    try:
        factory.pin(13).drive_low()                  # still on the UPS
        again.start()
        wait_for(lambda: again.shutdowns, 5, what="the shutdown after the restart")
        assert len(again.events("power.lost")) == 1 and again.events("power.restored") == []
        assert _open_alert_keys(again) == {"power"}
    finally:
        again.close()


def test_a_climate_alert_open_across_a_restart_is_closed_by_the_first_reading_in_range(
        tmp_path, make_outbox, factory):
    outbox = make_outbox()
    first = Rig(tmp_path, outbox, factory)
    first.chip.rh_pct = type(first.chip.rh_pct)("71.20")
    first.w.poll_climate()
    assert "climate" in _open_alert_keys(first)
    first.close()
    factory.reset()
    again = Rig(tmp_path, outbox, factory, clock=first.clock)
    try:
        again.chip.rh_pct = type(again.chip.rh_pct)("71.50")
        again.w.poll_climate()                       # still too humid: nothing repeated
        assert len(again.events("climate.out_of_range")) == 1
        again.chip.rh_pct = type(again.chip.rh_pct)("66.00")
        again.w.poll_climate()
        (back,) = again.events("climate.in_range")
        assert back["body"]["was"] == "high" and back["body"]["rh_pct"] == "66.00"
        assert _open_alert_keys(again) == set()
    finally:
        again.close()


def test_a_healthy_reader_is_listed_for_the_monitor_from_the_start(rig):
    assert ("dock", "", "") in rig.w.store.load_readers()


def test_forgotten_tags_leave_the_store(tmp_path, make_outbox, factory):
    rig = Rig(tmp_path, make_outbox(device=DEV), factory, forget_departed_s=3600,
              departed_after_s=600)
    try:
        rig.reader.reads(["e200" + "0" * 20])
        rig.clock.jump(601)
        rig.w.housekeeping()
        assert [t[1] for t in rig.w.store.load_tags()] == ["departed"]
        rig.clock.jump(3600)
        rig.w.housekeeping()
        assert rig.w.store.load_tags() == []
    finally:
        rig.close()
