"""The station as a part of the running agent: card reader, scale, printer, lights, commands.

Built from the configuration's [station], [card], [scale] and optional [printer] and
[signals] sections (agent.station.config). It connects the I/O edges to the purchase flow:

    CardMonitor -> CardDesk ----\\
    ScaleReader -> ScaleJudge ---+--> EffectRunner (one thread, the pure PurchaseFlow) --> outbox
    clerk's keys (console) -----/         |-> card (CardDesk.write_card), printer, buzzer

and registers the station's command handlers with the agent's dispatcher: `payment.confirmed`
(the bank marks a sale paid), `price_table.set` and `blacklist.set` (the backend's tables).
The status light shows online / offline-queuing / fault from the link and the devices.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from agent.contract.commands import BACKEND
from agent.contract.legal import running_legal_id
from agent.contract.signing import Verifier
from agent.errors import ConfigError
from agent.station import purchase as p
from agent.station.blacklist import Blacklist
from agent.station.card_desk import CardDesk
from agent.station.effects import EffectRunner, payment_handler
from agent.station.legal import LegalRecord, legal_parameters
from agent.station.messages import message
from agent.station.price_store import (
    PriceTableRefused,
    PriceTableStore,
    make_price_table_handler,
)
from agent.station.trusted_time import TrustedTime
from agent.station.view import StationView, render, sale_lines, start_of_day
from agent.station.weighing import ScaleJudge
from drivers.pcsc import CardMonitor
from drivers.scale import Reading, SalePolicy, StabilityDetector
from drivers.scale.reader import LinkEvent, LinkState

log = logging.getLogger(__name__)


def load_m1_master_key(path: Path | None) -> bytes | None:
    """The 16-byte MIFARE master key from its file (32 hex digits), or None."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the M1 master key (32 hex digits): {exc}"
                          ) from None
    if len(key) != 16:
        raise ConfigError(f"{path}: the M1 master key must be 16 bytes (32 hex digits), "
                          f"found {len(key)}")
    return key


def open_scale_reader(scale, on_event):
    """The reader for the [scale] section (not started), from firmware_bridge.sources: the
    field box's load cell for `coproc`; otherwise a reader for the protocol spec, which asks the
    indicator for each weight where the protocol needs it (MT-SICS `SI`; XK3190-A9 command
    mode: tare, then net, joined into one reading with the indicator's tare)."""
    from firmware_bridge.sources import SCALE, open_source

    return open_source(SCALE, scale.port, scale.protocol, on_event=on_event,
                       baudrate=scale.baudrate, name=f"scale {scale.scale_id}")


class StationPart:
    def __init__(self, agent, *, pin_factory=None, printer=None):
        config = agent.config
        st, card, scale = (config.section(n) for n in ("station", "card", "scale"))
        if card is None or scale is None:
            raise ConfigError(f"{config.path}: a station needs the [card] and [scale] sections")
        self.agent = agent
        self.device = config.device.id
        self.outbox = agent.outbox
        self.message = "Swipe a staff card to start."
        self.refused = False    # the last message came with the refusal beep
        self._changed = threading.Condition()
        self._version = 0
        self.prices = PriceTableStore(st.price_tables_dir or config.device.data_dir,
                                      agent.dispatcher.verifiers.get(BACKEND), self.device)
        self._install_price_table = make_price_table_handler(self.prices)
        self.blacklist = Blacklist(agent.outbox)

        printer_cfg = config.section("printer")
        if printer is None and printer_cfg is not None:
            from drivers.printer import open_printer

            printer = open_printer(printer_cfg.url)
        self.signals = None
        signals_cfg = config.section("signals")
        if signals_cfg is not None:
            from drivers.signals import SignalPins, Signals

            self.signals = Signals(SignalPins(signals_cfg.status_light, signals_cfg.buzzer,
                                              signals_cfg.factory), pin_factory=pin_factory)

        self.station = EffectRunner(self.device, agent.outbox, write_card=self._write_card,
                                    display=self._show, buzzer=self._beep, printer=printer,
                                    prices=self.prices, timeouts=st.timeouts, tz=st.timezone,
                                    trusted=TrustedTime(agent.outbox, st.untrusted_time_max_h),
                                    language=st.language)
        self.scale_config = scale
        self.legal = LegalRecord(agent.outbox, running_legal_id(),
                                 legal_parameters(scale, self._tables_for_the_record()))
        self.station.legal_record = self.legal
        self.station.flow.legal = self.legal.legal_id
        self.desk = CardDesk(reader=card.reader,
                             issuer_verifier=Verifier.from_file(card.issuer_public_key_file),
                             outbox=agent.outbox, submit=self.submit, blacklist=self.blacklist,
                             m1_master_key=load_m1_master_key(card.m1_master_key_file),
                             require_card_key=card.internal_authenticate,
                             auth=card.auth, sam_reader=card.sam_reader,
                             allow_m1=card.allow_m1,
                             blacklist_max_age_h=card.blacklist_max_age_h,
                             blacklist_refuse_age_h=card.blacklist_refuse_age_h,
                             tz=st.timezone)
        self.judge = ScaleJudge(
            scale.scale_id,
            SalePolicy(scale.division_g, scale.min_divisions, scale.capacity_g),
            tare_g=scale.tare_g,
            detector=StabilityDetector(scale.stable_count, scale.stable_window_s),
            protocol=scale.protocol)
        self.scale_reader = open_scale_reader(scale, self._on_scale)
        self.monitor = CardMonitor(self.desk.observe)
        self.weighing: p.Weighing | None = None
        self.scale_fault = ""

        agent.dispatcher.register("payment.confirmed", payment_handler(agent.outbox,
                                                                       self._paid))
        agent.dispatcher.register("price_table.set", self._price_table_set)
        agent.dispatcher.register("blacklist.set", self.blacklist.handle)
        self._threads: list[threading.Thread] = []

    def _price_table_set(self, cmd) -> dict:
        """Install the table, then record the change of the legal parameters it makes."""
        summary = self._install_price_table(cmd)
        self.legal.parameters = legal_parameters(self.scale_config,
                                                 self._tables_for_the_record())
        self.legal.check("price_table.set")
        return summary

    def _tables_for_the_record(self) -> list:
        """The installed tables that verify (none while they are refused: the refusal is
        what the record then shows, and pricing says why)."""
        try:
            return self.prices.tables()
        except PriceTableRefused:
            return []

    # -- inputs -----------------------------------------------------------------------------

    def submit(self, event) -> None:
        self.station.submit(event)

    def grade(self, measurements: dict) -> None:
        self.station.grade(measurements)

    def _on_scale(self, event) -> None:
        if isinstance(event, Reading):
            weighing = self.judge.feed(event, time.monotonic())
            self.scale_fault = ""
        elif isinstance(event, LinkEvent) and event.state is not LinkState.OPEN:
            self.judge.detector.reset()
            weighing = None
            self.scale_fault = event.detail or event.state.value
        else:
            return
        if weighing != self.weighing:
            self.weighing = weighing
            self.submit(p.ScaleUpdate(weighing))
            self._touch()

    # -- effects' outlets -------------------------------------------------------------------

    def _write_card(self, farmer, sale) -> None:
        self.desk.write_card(farmer, sale)

    def _show(self, text: str) -> None:
        log.info("station: %s", text)
        # the card desk's notices (an M1 card is the weaker kind, an old blacklist) go along
        self.message = " | ".join([text, *self.desk.notices()])
        self.refused = False
        self._touch()

    def _beep(self, kind: str) -> None:
        if kind == "refuse":
            self.refused = True
            self._touch()
        if self.signals is not None:
            self.signals.beep(kind)

    def _paid(self, sale) -> None:
        self._show(f"Voucher {sale.voucher} paid by the bank ({sale.payment_ref})")

    def _touch(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait_change(self, version: int, timeout: float) -> int:
        """Block until the view may have changed after `version`; the new version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout)
            return self._version

    # -- the clerk's view -------------------------------------------------------------------

    def view(self) -> StationView:
        flow = self.station.flow
        sale = flow.sale
        clerk = flow.clerk
        stats = self.outbox.stats()
        return StationView(
            device=self.device, phase=flow.phase.value,
            clerk=None if clerk is None else f"{clerk.name} ({clerk.role})",
            farmer=None if sale is None else f"{sale.farmer.name} ({sale.farmer.farmer_id})",
            weighing=self.weighing, priced=None if sale is None else sale.priced,
            message=self.message, online=self.agent.link.status.connected,
            queued=stats.counts["pending"] + stats.counts["sent"],
            sales=sale_lines(self.outbox, start_of_day(tz=self.station.tz)))

    def screen(self) -> str:
        return render(self.view())

    # -- life cycle -------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        # After agent.started: what changed since the last identification is recorded, and a
        # change of the software holds sales until a supervisor acknowledges it.
        self.legal.check("start")
        self.station.flow.legal_hold = self.legal.hold
        if self.legal.hold:
            self._show(message("legal_hold"))
        self.scale_reader.start()
        self.monitor.start()
        station = threading.Thread(target=self.station.run, args=(stop,), daemon=True,
                                   name="station")
        station.start()
        self._threads.append(station)
        if self.signals is not None:
            lights = threading.Thread(target=self._light_loop, args=(stop,), daemon=True,
                                      name="station-light")
            lights.start()
            self._threads.append(lights)

    def card_reader_fault(self) -> str:
        """Why the card reader cannot be used ('' when it can): pcscd gone, or the configured
        reader missing from the readers the card monitor sees."""
        monitor = self.monitor
        if monitor.service_available is False:
            return "the card service (pcscd) is not available"
        if monitor.service_available and not self.desk.reader_present(monitor.snapshot()):
            wanted = f"{self.desk.reader!r}" if self.desk.reader else "any"
            return f"card reader {wanted} missing"
        return ""

    def _light_loop(self, stop: threading.Event) -> None:
        from drivers.signals import Status

        while not stop.wait(0.5):
            if self.scale_fault or self.card_reader_fault():
                status = Status.FAULT
            elif self.agent.link.status.connected:
                status = Status.ONLINE
            else:
                status = Status.OFFLINE
            try:
                self.signals.show(status)
            except Exception as exc:  # a GPIO fault must not stop the station; say it once
                if self.signals.status is not None:
                    log.error("station: status light failed: %s", exc)
                self.signals.status = None

    def close(self) -> None:
        self.scale_reader.stop()
        self.monitor.stop()
        self.desk.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.signals is not None:
            self.signals.close()
