"""The warehouse at run time: readers, pins and the climate sensor in; signed events out.

Threads: one per tag reader (its `run` owns the connection), one sampling the GPIO inputs, one
polling the climate sensor, and one housekeeping loop (receipts from `cocoon-agent warehouse
receive`, departures and silent readers, snapshots, saving tag state). All of them, and the
bank's commands, go through one lock around the state machines, so each change is decided and
recorded in one order. Money and alert drafts are appended durably; telemetry is submitted.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from agent.contract.clock import parse_utc_timestamp, utc_timestamp
from agent.contract.events import Draft
from agent.errors import CocoonError
from agent.warehouse.alerts import alert_change, guard_inputs
from agent.warehouse.climate import ClimateWatch
from agent.warehouse.config import ReaderSpec, WarehouseConfig
from agent.warehouse.custody import CustodyError
from agent.warehouse.doors import Guard
from agent.warehouse.pins import Pins
from agent.warehouse.presence import (
    Arrived,
    Departed,
    Forgotten,
    Moved,
    Presence,
    ReaderDown,
    ReaderUp,
    TagStatus,
    location_name,
)
from agent.warehouse.snapshot import snapshot_drafts
from agent.warehouse.store import WarehouseStore

log = logging.getLogger(__name__)

STORE_NAME = "warehouse.sqlite"
ALIVE_EVERY_S = 5.0           # how often the housekeeping loop says it runs (meta `alive`)
CLIMATE_LOG_EVERY_S = 60.0    # one reading a minute for the day's chart
NOTE_MAX = 500                # characters of an acknowledgement's note
STAFF_MAX = 64


class AcknowledgeError(CocoonError):
    """An acknowledgement that cannot be recorded; the message says why."""


def _mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Warehouse:
    def __init__(self, outbox, config: WarehouseConfig, data_dir: Path, *,
                 readers: list | None = None, pin_factory=None, climate_sensor=None,
                 mono_ms: Callable[[], int] = _mono_ms, utc_now: Callable[[], datetime] = _utc_now,
                 local_time=lambda: datetime.now().time(),
                 shutdown: Callable[[], None] | None = None):
        self.outbox = outbox
        self.config = config
        self.mono_ms, self.utc_now, self.local_time = mono_ms, utc_now, local_time
        self.store = WarehouseStore(Path(data_dir) / STORE_NAME)
        self.readers = list(readers) if readers is not None else \
            [reader_for(spec) for spec in config.readers]
        self.lock = threading.RLock()
        self._dirty: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._shutdown = shutdown or self._run_shutdown_command
        now = mono_ms()
        self.presence = Presence(config.presence)
        down = {name: (reason, detail) for name, reason, detail in self.store.load_readers()
                if reason}
        for reader in self.readers:
            reason, detail = down.get(reader.name, ("", ""))
            self.presence.add_reader(reader.name, now, down_reason=reason, detail=detail)
            # Listed from the start, so the monitor's view shows a healthy reader too.
            self.store.save_reader(reader.name, reason, detail)
        self.presence.restore(self.store.load_tags(), now)
        self.custody = self.store.load_custody()
        self.climate = ClimateWatch(config.climate)
        self._restore_climate()
        self.sensor = climate_sensor
        if self.sensor is None and config.climate_bus:
            self.sensor = open_climate(config.climate_bus, config.climate_address)
        self.pins = Pins(config, pin_factory=pin_factory)
        self.guard = Guard([inp for inp, _ in self.pins.inputs], config.open_hours,
                           config.debounce_ms)
        self._next_check = now
        # Each reader's count of answers (see drivers.tags.reads.TagReader) when last looked.
        self._answers = {r.name: getattr(r, "answers", None) for r in self.readers}
        self.power_lost_seq: int | None = None
        # Views (the dashboard) wait on this for a change worth showing.
        self._changed = threading.Condition()
        self._version = 0
        self._alive_at = 0.0
        self._climate_logged_at = 0.0

    # -- for views ------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Moves on with every change a view may show (and every few seconds while the
        housekeeping runs)."""
        with self._changed:
            return self._version

    def wait_change(self, version: int, timeout: float) -> int:
        """Block until something may have changed after `version`; the new version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout)
            return self._version

    def _touch(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def acknowledge(self, alert_seq: int, note: str, staff: str) -> int:
        """A monitor saw the open alert opened by event `alert_seq`: a signed
        `alert.acknowledged` (its seq returned). The alert stays open until the event that
        closes it; the light stays on."""
        if isinstance(alert_seq, bool) or not isinstance(alert_seq, int):
            raise AcknowledgeError("alert_seq must be the seq of the event that opened it")
        note = note.strip() if isinstance(note, str) else ""
        staff = staff.strip() if isinstance(staff, str) else ""
        if not staff:
            raise AcknowledgeError("who acknowledges it is not known: sign in first")
        if len(note) > NOTE_MAX or len(staff) > STAFF_MAX:
            raise AcknowledgeError(f"the note is longer than {NOTE_MAX} characters")
        with self.lock:
            rows = [r for r in self.store.alert_rows() if r[4] == alert_seq]
            if not rows:
                raise AcknowledgeError(f"no open alert was opened by event {alert_seq}")
            key, kind = rows[0][0], rows[0][1]
            seq = self.outbox.append(Draft("alert.acknowledged", "alert", {
                "alert_seq": alert_seq, "alert": kind, "note": note, "staff": staff}))
            self.store.add_ack(key, alert_seq, seq, staff, note)
        log.info("alert seq %d (%s) acknowledged by %s", alert_seq, kind, staff)
        self._touch()
        return seq

    # -- wiring ---------------------------------------------------------------------------

    def register(self, dispatcher) -> None:
        dispatcher.register("pledge", self.handle_pledge)
        dispatcher.register("pledge.create", self.handle_pledge)    # its earlier name
        dispatcher.register("release.authorize", self.handle_release)

    def start(self, stop: threading.Event) -> None:
        with self.lock:
            still_open = guard_inputs(key for key, *_ in self.store.open_alerts())
            drafts = self.guard.start(self.pins.levels(), self.mono_ms(), self.local_time(),
                                      still_open)
            self._emit(drafts)
            if self.guard.alarm.get("power") and "power" in still_open:
                # Still on the UPS after a restart: the alert went out before; shut down again
                # once it is acknowledged (or after the grace time).
                seq = int(self.store.meta("power_lost_seq") or 0)
                self.power_lost_seq = seq
                self._spawn("warehouse-power", self._power_lost, seq)
            self.pins.show_alerts(bool(self.store.open_alerts()))
        for reader in self.readers:
            self._spawn(f"tags-{reader.name}", self._run_reader, reader, stop)
        self._spawn("warehouse-housekeeping", self._loop, stop, 1.0, self.housekeeping)
        if self.pins.inputs:
            self._spawn("warehouse-gpio", self._loop, stop, self.config.gpio_poll_ms / 1000,
                        self.sample_pins)
        if self.sensor is not None:
            self._spawn("warehouse-climate", self._loop, stop, self.config.climate_poll_s,
                        self.poll_climate)

    def close(self) -> None:
        for thread in self._threads:
            thread.join(5)
        with self.lock:
            self._flush_tags()
        close_sensor = getattr(self.sensor, "close", None)
        if close_sensor is not None:
            close_sensor()
        self.pins.close()
        self.store.close()

    def _spawn(self, name, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    @staticmethod
    def _loop(stop: threading.Event, interval_s: float, fn) -> None:
        while not stop.is_set():
            try:
                fn()
            except Exception:  # one failed turn must not end the watch
                log.exception("warehouse: %s failed", getattr(fn, "__name__", fn))
            stop.wait(interval_s)

    def _run_reader(self, reader, stop: threading.Event) -> None:
        name = reader.name
        try:
            reader.run(lambda read: self.on_read(name, read),
                       lambda health: self.on_health(name, health), stop)
        except Exception as exc:  # a reader must report faults as health, but never trust it
            log.exception("tag reader %s stopped", name)
            self.on_health(name, _Health(False, f"reader stopped: {exc}"))

    # -- inputs ---------------------------------------------------------------------------

    def on_read(self, reader: str, read) -> None:
        with self.lock:
            changes = self.presence.read(reader, read.epc, read.antenna, read.rssi,
                                         self.mono_ms())
            if changes:
                self._apply(changes)

    def on_health(self, reader: str, health) -> None:
        with self.lock:
            changes = self.presence.health(reader, health.online, health.detail,
                                           self.mono_ms())
            if changes:
                self._apply(changes)

    def housekeeping(self) -> None:
        """Take in received lots; note which readers answered; every check interval,
        departures and silent readers; a snapshot when due; save changed tags."""
        with self.lock:
            self.take_receipts()
            now = self.mono_ms()
            self._take_answers(now)
            if time.monotonic() - self._alive_at >= ALIVE_EVERY_S:
                self._alive_at = time.monotonic()
                self.store.set_meta("alive", str(time.time()))
                self._touch()       # ages on the dashboard move on
            if now >= self._next_check:
                self._next_check = now + int(self.config.check_interval_s * 1000)
                self._apply(self.presence.tick(now))
            self._snapshot_if_due()
            self._flush_tags()

    def _take_answers(self, now: int) -> None:
        """A reader whose driver counted an answer since the last look is alive, even if it
        read nothing: its empty field is empty, not unwatched."""
        changes: list = []
        for reader in self.readers:
            count = getattr(reader, "answers", None)
            if count is None or count == self._answers.get(reader.name):
                continue
            self._answers[reader.name] = count
            changes += self.presence.answered(reader.name, now)
        if changes:
            self._apply(changes)

    def sample_pins(self) -> None:
        levels = self.pins.levels()
        with self.lock:
            now, local = self.mono_ms(), self.local_time()
            for name, level in levels.items():
                self._emit(self.guard.sample(name, level, now, local))

    def _restore_climate(self) -> None:
        """The band and the sensor fault whose alerts are still open from before a restart,
        so the first reading in range closes them (and one still out of range repeats
        nothing)."""
        alerts = {key: detail for key, _, detail, _ in self.store.open_alerts()}
        band = ""
        if "climate" in alerts:
            saved = self.store.load_climate()
            band = saved[2] if saved and saved[2] in ("high", "low") else \
                alerts["climate"].rsplit(" ", 1)[-1]
            band = band if band in ("high", "low") else "high"
        failed = alerts.get("climate-sensor", "")
        failed = failed.removeprefix("climate sensor: ") or ("no answer" if failed else "")
        self.climate.restore(band, failed)

    def poll_climate(self) -> None:
        from drivers.climate import ClimateError

        try:
            reading = self.sensor.read()
        except ClimateError as exc:
            log.warning("climate: %s", exc)
            with self.lock:
                self._emit(self.climate.failure(str(exc)))
                self.store.save_climate(None, None, self.climate.band, str(exc)[:300])
            return
        with self.lock:
            self._emit(self.climate.reading(reading.temp_c100, reading.rh_c100, self.mono_ms()))
            self.store.save_climate(str(reading.temp_c), str(reading.rh_pct),
                                    self.climate.band, None)
            if time.monotonic() - self._climate_logged_at >= CLIMATE_LOG_EVERY_S:
                self._climate_logged_at = time.monotonic()
                self.store.log_climate(str(reading.temp_c), str(reading.rh_pct))
        self._touch()

    def take_receipts(self) -> None:
        with self.lock:
            for rid, lot, purchases, epcs, kg in self.store.pending_receipts():
                try:
                    draft = self.custody.receive(lot, purchases, epcs, kg)
                except CustodyError as exc:
                    log.warning("lot %s not received: %s", lot, exc)
                    self.store.finish_receipt(rid, str(exc))
                    continue
                self._emit([draft])
                self.store.save_custody(self.custody)
                self.store.finish_receipt(rid)

    def snapshot(self) -> list[int]:
        with self.lock:
            drafts = snapshot_drafts(self.custody, self.presence)
            seqs = [self.outbox.append(d) for d in drafts]
            self.store.set_meta("last_snapshot", utc_timestamp(self.utc_now()))
            return seqs

    def _snapshot_if_due(self) -> None:
        last = self.store.meta("last_snapshot")
        now = self.utc_now()
        if last is None:
            self.store.set_meta("last_snapshot", utc_timestamp(now))  # first one an interval on
            return
        if (now - parse_utc_timestamp(last)).total_seconds() >= self.config.snapshot_interval_s:
            self.snapshot()

    # -- the bank's commands --------------------------------------------------------------

    def handle_pledge(self, cmd) -> dict:
        with self.lock:
            result = self.custody.pledge(cmd.id, cmd.body)
            self.store.save_custody(self.custody)
            self._check_stock()
            return result

    def handle_release(self, cmd) -> dict:
        with self.lock:
            result = self.custody.authorize_release(cmd.id, cmd.body, self.utc_now())
            self.store.save_custody(self.custody)
            return result

    # -- changes to drafts ----------------------------------------------------------------

    def _apply(self, changes: list) -> None:
        drafts: list[Draft] = []
        custody_changed = False
        for c in changes:
            if isinstance(c, Arrived):
                drafts.append(self.custody.arrived(c.epc, location_name(c.location), c.returned))
                self._dirty.add(c.epc)
                custody_changed = True
            elif isinstance(c, Moved):
                body = {"epc": c.epc, "from": location_name(c.from_),
                        "to": location_name(c.to), "rssi_avg": _tenths(c.rssi_avg)}
                lot = self.custody.lot_of(c.epc)
                if lot:
                    body["lot"] = lot
                drafts.append(Draft("tag.moved", "telemetry", body))
                self._dirty.add(c.epc)
            elif isinstance(c, Departed):
                # A release covers a tag that left inside its window: the tag was last read
                # then, not when the departure was noticed up to a check interval later.
                last_seen = self.utc_now() - timedelta(milliseconds=c.unread_ms)
                drafts.append(self.custody.departed(c.epc, location_name(c.location),
                                                    c.unread_ms // 1000, last_seen))
                self._dirty.add(c.epc)
                custody_changed = True
            elif isinstance(c, Forgotten):
                self._dirty.add(c.epc)       # flushed as a deletion: no longer in presence
            elif isinstance(c, ReaderDown):
                drafts.append(Draft("reader.offline", "alert", {
                    "reader": c.reader, "reason": c.reason, "detail": c.detail[:300],
                    "tags_unknown": c.tags_unknown}))
                self.store.save_reader(c.reader, c.reason, c.detail[:300])
                self._dirty.update(t.epc for t in self.presence.tags.values()
                                   if t.location[0] == c.reader)
            elif isinstance(c, ReaderUp):
                drafts.append(Draft("reader.online", "alert", {
                    "reader": c.reader, "down_s": c.down_ms // 1000, "was": c.reason}))
                self.store.save_reader(c.reader, "", "")
                custody_changed = True
        self._emit(drafts)
        if custody_changed:
            if any(d.type in ("custody.breach", "tag.departed") for d in drafts):
                self.store.save_custody(self.custody)
                self._flush_tags()  # a departure must not be detected twice after a crash
            self._check_stock()

    def _check_stock(self) -> None:
        def in_stock(epc: str) -> bool:
            return self.presence.status(epc) in (TagStatus.PRESENT, TagStatus.UNKNOWN)

        drafts = self.custody.check_stock(in_stock)
        if drafts:
            self._emit(drafts)
            self.store.save_custody(self.custody)

    def _emit(self, drafts: list[Draft]) -> None:
        siren = False
        for draft in drafts:
            try:
                if draft.priority == "telemetry":
                    self.outbox.submit(draft)
                    seq = None
                else:
                    seq = self.outbox.append(draft)
            except CocoonError as exc:
                log.error("warehouse: could not record %s: %s", draft.type, exc)
                continue
            change = alert_change(draft)
            if change is not None:
                if change.open:
                    log.warning("ALERT %s", change.detail)
                    self.store.open_alert(change.key, draft.type, change.detail, seq)
                    siren = siren or change.siren
                else:
                    self.store.close_alert(change.key)
            if draft.type == "power.lost":
                self.power_lost_seq = seq
                self.store.set_meta("power_lost_seq", str(seq))
                self._spawn("warehouse-power", self._power_lost, seq)
        if siren:
            self.pins.sound_siren()
        if drafts:
            self.pins.show_alerts(bool(self.store.open_alerts()))
            self._touch()

    def _flush_tags(self) -> None:
        if not self._dirty:
            return
        rows, forgotten = [], []
        for epc in self._dirty:
            tag = self.presence.tags.get(epc)
            if tag is not None:
                rows.append((epc, tag.status.value, tag.location[0], tag.location[1]))
            else:
                forgotten.append(epc)
        self.store.save_tags(rows)
        if forgotten:
            self.store.forget_tags(forgotten)
        self._dirty.clear()
        self._touch()       # the counts a view reads from the store changed only now

    # -- power loss -----------------------------------------------------------------------

    def _power_lost(self, seq: int) -> None:
        """Give the uplink `power_grace_s` to deliver the alert, then shut down (if
        configured): the bank hears of the power loss before the device goes dark."""
        deadline = time.monotonic() + self.config.power_grace_s
        while time.monotonic() < deadline and self.outbox.acked_seq() < seq:
            time.sleep(0.05)
        delivered = self.outbox.acked_seq() >= seq
        log.warning("power lost: alert seq %d %s; shutting down", seq,
                    "acknowledged by the bank" if delivered else "not yet acknowledged")
        self._shutdown()

    def _run_shutdown_command(self) -> None:
        if not self.config.shutdown_command:
            return
        try:
            subprocess.run(self.config.shutdown_command, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("shutdown command %s failed: %s", self.config.shutdown_command, exc)


class _Health:
    def __init__(self, online: bool, detail: str):
        self.online, self.detail = online, detail


def _tenths(value) -> str:
    return str((Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.1")))


def reader_for(spec: ReaderSpec):
    """The tag reader a [[warehouse.readers]] entry names, from firmware_bridge.sources: a
    driver of drivers.tags, or the field box's antennas for `coproc`."""
    try:
        from firmware_bridge.sources import TAG_READER, open_source
    except ImportError:
        raise CocoonError(f"reader {spec.name}: this installation has no tag reader drivers "
                          f"for protocol {spec.protocol!r}") from None
    return open_source(TAG_READER, spec.port, spec.protocol, name=spec.name,
                       antennas=spec.antennas, silence_s=spec.silence_s)


def open_climate(bus: str, address: int):
    """The climate sensor `climate_bus` names: an SHT3x on an I2C bus (or `sim`), or with
    `coproc:<port URL>` the field box's sensor through the bridge its port shares with the
    box's other adapters (the `coproc` tag reader on the same port included)."""
    if bus.startswith("coproc:"):
        from firmware_bridge.readers import BridgeClimate
        from firmware_bridge.shared import shared_bridge

        return BridgeClimate(shared_bridge(bus.removeprefix("coproc:")))
    from drivers.climate import SHT3x, open_bus

    return SHT3x(open_bus(bus), address)


def part(agent) -> Warehouse:
    """The agent's optional part for a [warehouse] section (agent.ops.service.PARTS)."""
    warehouse = Warehouse(agent.outbox, agent.config.section("warehouse"),
                          agent.config.device.data_dir)
    warehouse.register(agent.dispatcher)
    return warehouse
