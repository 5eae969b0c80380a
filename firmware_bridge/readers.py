"""The field box's inputs through the same driver interfaces as directly attached devices.

- `BridgeTagReader`: a `drivers.tags.reads.TagReader` (TagRead, ReaderHealth, `run`), so
  presence and custody take reads from the box's antennas as from a serial RFID module.
- `BridgeScaleReader`: the shape of `drivers.scale.ScaleReader` (start/stop/context manager,
  `on_event` with `Reading` and `LinkEvent`), so the station's stability detector and sale
  checks judge the box's load cell like any indicator. Weights are whole grams, exact.
- `BridgeClimate`: `read()` -> `drivers.climate.ClimateReading`, like the SHT3x driver.
- `BridgeInputs`: typed `InputChange` readings for doors, tamper switches and power sense.

Each adapter takes a `Bridge`; several adapters share one box (one port, one link).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from drivers.climate import ClimateError, ClimateReading
from drivers.scale import CommandUnsupported, LinkEvent, LinkState, Reading, Unit
from drivers.tags.reads import ReaderHealth, TagRead

from . import messages as m
from .bridge import Bridge, BridgeState, BridgeStatus

PROTOCOL_NAME = "firmware-bridge"


def _mono_ms() -> int:
    return time.monotonic_ns() // 10**6


class BridgeTagReader:
    """The box's antennas as one TagReader named `name`. Every message from the box while it
    is online (its heartbeat comes every second) adds one to `answers`: the box reports reads,
    not empty inventory rounds, so a box that talks but reads nothing is taken to be watching
    an empty field."""

    def __init__(self, bridge: Bridge, name: str | None = None):
        self.bridge = bridge
        self.name = name or f"field box {bridge.url}"
        self.answers = 0

    def run(self, on_read: Callable[[TagRead], None],
            on_health: Callable[[ReaderHealth], None], stop: threading.Event) -> None:
        online: list[bool | None] = [None]

        def on_item(item) -> None:
            if isinstance(item, m.Message) and online[0]:
                self.answers += 1
            if isinstance(item, m.TagSeen):
                if item.epc:
                    on_read(TagRead(item.epc.hex(), item.rssi, item.antenna, _mono_ms()))
            elif isinstance(item, BridgeStatus):
                now = item.state is BridgeState.ONLINE
                if online[0] is None and item.state is BridgeState.CONNECTING:
                    return              # still starting up: not an outage to report
                if now != online[0]:
                    online[0] = now
                    on_health(ReaderHealth(self.name, now, item.detail or item.state.value,
                                           _mono_ms()))

        self.bridge.acquire()
        unsubscribe = self.bridge.subscribe(on_item)
        try:
            stop.wait()
        finally:
            unsubscribe()
            self.bridge.release()


_LINK_STATES = {
    BridgeState.ONLINE: LinkState.OPEN,
    BridgeState.SILENT: LinkState.SILENT,
    BridgeState.CONNECTING: LinkState.LOST,
    BridgeState.LOST: LinkState.LOST,
    BridgeState.INCOMPATIBLE: LinkState.LOST,
    BridgeState.CLOSED: LinkState.CLOSED,
}


def weight_reading(sample: m.WeightSample) -> Reading:
    """A WeightSample as the scale layer's Reading: whole grams, the box's stable flag."""
    weight = None if sample.overload or sample.underload else Decimal(sample.grams)
    return Reading(PROTOCOL_NAME, m.encode(sample), weight, Unit.G, stable=sample.stable,
                   overload=sample.overload, underload=sample.underload)


class BridgeScaleReader:
    """The box's load cell `channel` with ScaleReader's interface."""

    def __init__(self, bridge: Bridge, on_event: Callable[[object], None], *, channel: int = 0,
                 silence_s: float = 2.0):
        self.bridge, self.on_event, self.channel = bridge, on_event, channel
        self.url = bridge.url
        self.silence_s = silence_s     # no sample this long while the box is online: SILENT
        self.state: LinkState | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._last_sample = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> BridgeScaleReader:
        if self._unsubscribe is None:
            self._stop.clear()
            self._last_sample = time.monotonic()
            self.bridge.acquire()
            self._unsubscribe = self.bridge.subscribe(self._on_item)
            threading.Thread(target=self._watch_silence, daemon=True,
                             name=f"box-scale {self.url}").start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._unsubscribe is not None:
            self._stop.set()
            self._unsubscribe()
            self._unsubscribe = None
            self.bridge.release()
            self._set_state(LinkState.CLOSED, "")

    def _watch_silence(self) -> None:
        """A box that stays online while its load cell stops sampling (an ADC fault) must
        not leave the last weight standing: the station would sell on a stale weight."""
        while not self._stop.wait(min(0.25, self.silence_s / 4)):
            quiet = time.monotonic() - self._last_sample
            if self.state is LinkState.OPEN and quiet >= self.silence_s:
                self._set_state(LinkState.SILENT, f"no weight sample for {quiet:.1f} s")

    def __enter__(self) -> BridgeScaleReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._unsubscribe is not None

    def send(self, data: bytes) -> None:
        raise CommandUnsupported("the field box's load cell takes no indicator commands")

    def request(self, command, timeout: float = 2.0):
        raise CommandUnsupported("the field box's load cell takes no indicator commands")

    def _on_item(self, item) -> None:
        if isinstance(item, m.WeightSample) and item.channel == self.channel:
            self._last_sample = time.monotonic()
            if self.state is LinkState.SILENT:
                self._set_state(LinkState.OPEN, "weight samples again")
            self.on_event(weight_reading(item))
        elif isinstance(item, BridgeStatus):
            self._set_state(_LINK_STATES[item.state], item.detail)

    def _set_state(self, state: LinkState, detail: str) -> None:
        with self._lock:
            if state is self.state:
                return
            self.state = state
        self.on_event(LinkEvent(state, self.url, detail))


class BridgeClimate:
    """The box's climate sensor `sensor`: `read()` returns the latest sample, as the SHT3x
    driver does, and raises ClimateError when there is none fresh or the sensor failed."""

    def __init__(self, bridge: Bridge, sensor: int = 0, max_age_s: float = 5.0):
        self.bridge, self.sensor, self.max_age_s = bridge, sensor, max_age_s
        self._latest: tuple[float, m.ClimateSample] | None = None
        self._first = threading.Event()
        self._since = time.monotonic()
        bridge.acquire()
        self._unsubscribe = bridge.subscribe(self._on_item)

    def _on_item(self, item) -> None:
        if isinstance(item, m.ClimateSample) and item.sensor == self.sensor:
            self._latest = (time.monotonic(), item)
            self._first.set()

    def read(self) -> ClimateReading:
        """The latest sample. The first call waits up to `max_age_s` from when this adapter
        was made for the box to come up and send one: a box still connecting is not a
        failed sensor."""
        if not self._first.is_set():
            self._first.wait(max(0.0, self._since + self.max_age_s - time.monotonic()))
        latest = self._latest
        if latest is None or time.monotonic() - latest[0] > self.max_age_s:
            raise ClimateError(f"no climate sample from the field box on {self.bridge.url} "
                               f"within {self.max_age_s:g} s ({self.bridge.status.state.value})")
        sample = latest[1]
        if not sample.ok:
            raise ClimateError(f"the field box on {self.bridge.url} reports its climate "
                               f"sensor {self.sensor} failed")
        return ClimateReading(sample.temp_c100, sample.rh_c100)

    def close(self) -> None:
        self._unsubscribe()
        self.bridge.release()


@dataclass(frozen=True)
class InputChange:
    """A debounced digital input of the box changed."""

    input: int
    level: bool
    box_ms: int      # the box's uptime at the edge (precise, relative)
    mono_ms: int     # the Pi's monotonic milliseconds when it arrived


class BridgeInputs:
    """Calls `on_change` with an InputChange for every edge the box reports."""

    def __init__(self, bridge: Bridge, on_change: Callable[[InputChange], None]):
        self.bridge, self.on_change = bridge, on_change
        bridge.acquire()
        self._unsubscribe = bridge.subscribe(self._on_item)

    def _on_item(self, item) -> None:
        if isinstance(item, m.InputEdge):
            self.on_change(InputChange(item.input, item.level, item.at_ms, _mono_ms()))

    def close(self) -> None:
        self._unsubscribe()
        self.bridge.release()
