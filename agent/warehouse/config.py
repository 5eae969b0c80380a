"""The `[warehouse]` configuration section, parsed once into a frozen object.

    [warehouse]
    departed_after_s = 600        # a tag unread this long (reader healthy) has departed
    moved_min_reads = 2           # reads at a new antenna before a move counts
    reader_silent_s = 600         # a reader with no read this long is suspected (0: never)
    check_interval_s = 30         # how often departures and silence are checked
    snapshot_interval_s = 3600    # signed inventory.snapshot per lot
    open_hours = "07:00-19:00"    # local time; doors opened outside are alerts
    gpio_factory = ""             # "", rpigpio, lgpio, mock
    doors = { main = 5 }          # door contacts: name = BCM pin
    tamper_pin = 6
    power_pin = 13                # undervoltage / UPS signal
    siren_pin = 19
    light_pin = 26
    climate_bus = "1"             # I2C bus of the SHT3x, "sim", or "coproc:<port URL>" (the
                                  # field box's sensor); absent: no climate
    rh_low = "60"                 # relative humidity band, percent
    rh_high = "70"

    [[warehouse.readers]]
    name = "dock"
    port = "/dev/ttyUSB0"
    protocol = "bb7e"

Every key is optional; see docs/warehouse.md for the rest.
"""

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contract.settings import FLAG, PERCENT, Schema, decode, integer, one_of, seconds, text
from agent.errors import ConfigError
from agent.warehouse.climate import ClimateSettings
from agent.warehouse.doors import Hours
from agent.warehouse.presence import PresenceSettings

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
LEVELS = ("high", "low")


@dataclass(frozen=True)
class ReaderSpec:
    name: str
    port: str
    protocol: str
    antennas: tuple[int, ...] = ()      # bb7e: the antenna of notices without one; llrp: used
    silence_s: float | None = None      # no answer this long: offline (driver default if None)


@dataclass(frozen=True)
class WarehouseConfig:
    presence: PresenceSettings
    check_interval_s: float
    snapshot_interval_s: float
    readers: tuple[ReaderSpec, ...]
    open_hours: Hours
    gpio_factory: str
    doors: tuple[tuple[str, int], ...]
    tamper_pin: int | None
    power_pin: int | None
    door_open_level: str
    tamper_level: str
    power_lost_level: str
    pull_up: bool
    debounce_ms: int
    gpio_poll_ms: int
    siren_pin: int | None
    light_pin: int | None
    siren_s: float
    power_grace_s: float
    shutdown_command: tuple[str, ...]
    climate_bus: str | None
    climate_address: int
    climate_poll_s: float
    climate: ClimateSettings


CLIMATE_BUS_HELP = ('an I2C bus number ("1"), "/dev/i2c-1", "sim" (a simulated SHT3x), or '
                    '"coproc:" and the field box\'s port URL ("coproc:/dev/ttyAMA0") for its '
                    'climate sensor')


def _climate_bus(path: Path, bus: str | None) -> str | None:
    if bus is None:
        return None
    port = bus.removeprefix("coproc:")
    if (not bus.startswith("coproc:") and bus != "sim"
            and not bus.removeprefix("/dev/i2c-").isdigit()) or not port.strip():
        raise ConfigError(f"{path}: [warehouse] climate_bus: expected {CLIMATE_BUS_HELP}, "
                          f"got {bus!r}")
    return bus


PIN = integer(0, 53)
LEVEL = one_of(*LEVELS)


class ReaderSection(Schema, kw_only=True):
    name: text(NAME_RE) | None = None
    port: str = ""
    protocol: text() = "bb7e"
    antennas: tuple[int, ...] = ()
    silence_s: seconds(0.1, 3600) | None = None


class WarehouseSection(Schema, kw_only=True):
    departed_after_s: seconds(1, 7 * 86400) = 600.0
    moved_min_reads: integer(1, 1000) = 2
    moved_window_s: seconds(1, 86400) = 60.0
    moved_margin_db: integer(0, 60) = 0
    rssi_window: integer(1, 1000) = 5
    forget_departed_s: seconds(0, 10 * 365 * 86400) = 30 * 86400.0
    reader_silent_s: seconds(0, 7 * 86400) = 600.0
    check_interval_s: seconds(0.01, 86400) = 30.0
    snapshot_interval_s: seconds(1, 7 * 86400) = 3600.0
    readers: tuple[ReaderSection, ...] = ()
    open_hours: str = "07:00-19:00"
    gpio_factory: one_of("", "rpigpio", "lgpio", "mock") = ""
    doors: dict[str, int] = {}
    tamper_pin: PIN | None = None
    power_pin: PIN | None = None
    door_open_level: LEVEL = "high"
    tamper_level: LEVEL = "high"
    power_lost_level: LEVEL = "low"
    pull_up: FLAG = True
    debounce_ms: integer(0, 10_000) = 50
    gpio_poll_ms: integer(1, 10_000) = 20
    siren_pin: PIN | None = None
    light_pin: PIN | None = None
    siren_s: seconds(0.01, 3600) = 60.0
    power_grace_s: seconds(0, 600) = 20.0
    shutdown_command: text() | None = None
    climate_bus: text() | None = None
    climate_address: integer(0x44, 0x45) = 0x44
    climate_poll_s: seconds(0.05, 3600) = 10.0
    rh_low: PERCENT = 6000
    rh_high: PERCENT = 7000
    rh_hysteresis: PERCENT = 200
    climate_telemetry_s: seconds(0, 86400) = 300.0


def _readers(path: Path, table: Any, sections: tuple[ReaderSection, ...]) -> tuple:
    from drivers.tags.llrp_reader import parse_url
    from firmware_bridge.sources import TAG_PROTOCOLS as PROTOCOLS

    readers = []
    for i, r in enumerate(sections):
        where = f"{path}: [warehouse.readers[{i}]]"
        if r.protocol not in PROTOCOLS:
            raise ConfigError(f"{where} protocol: expected one of {', '.join(PROTOCOLS)}, "
                              f"got {r.protocol!r}")
        if not all(1 <= a <= 64 for a in r.antennas):
            raise ConfigError(f"{path}: [warehouse.readers] antennas: expected a list of "
                              "antenna numbers from 1 to 64, e.g. [1, 2]")
        spec = ReaderSpec(r.name or f"reader-{i + 1}", r.port, r.protocol, r.antennas,
                          r.silence_s)
        if not spec.port:
            raise ConfigError(f"{path}: [warehouse.readers] {spec.name}: port is missing")
        if spec.protocol == "llrp":
            try:
                parse_url(spec.port)
            except ValueError:
                raise ConfigError(f"{where} port: expected llrp://HOST[:5084] for an llrp "
                                  f"reader, got {spec.port!r}") from None
        readers.append(spec)
    if len({r.name for r in readers}) != len(readers):
        raise ConfigError(f"{path}: [warehouse.readers] names must be unique")
    return tuple(readers)


def parse_warehouse(path: Path, table: Any) -> WarehouseConfig:
    if isinstance(table, dict):
        if "readers" in table and not isinstance(table["readers"], list):
            raise ConfigError(f"{path}: [warehouse] readers: use [[warehouse.readers]] tables")
        for raw in table.get("readers", ()):
            antennas = raw.get("antennas", []) if isinstance(raw, dict) else []
            if not isinstance(antennas, list) or any(
                    isinstance(a, bool) or not isinstance(a, int) for a in antennas):
                raise ConfigError(f"{path}: [warehouse.readers] antennas: expected a list of "
                                  "antenna numbers from 1 to 64, e.g. [1, 2]")
        doors = table.get("doors", {})
        if not isinstance(doors, dict) or not all(
                NAME_RE.match(k) and isinstance(v, int) and not isinstance(v, bool)
                and 0 <= v <= 53 for k, v in doors.items()):
            raise ConfigError(f"{path}: [warehouse] doors: expected a table of name = BCM "
                              "pin, e.g. doors = { main = 5, back = 12 }")
    w = decode(path, "warehouse", table, WarehouseSection)
    presence = PresenceSettings(
        departed_after_ms=int(w.departed_after_s * 1000),
        moved_min_reads=w.moved_min_reads,
        moved_window_ms=int(w.moved_window_s * 1000),
        moved_margin_db=w.moved_margin_db,
        rssi_window=w.rssi_window,
        forget_departed_ms=int(w.forget_departed_s * 1000),
        reader_silent_ms=int(w.reader_silent_s * 1000),
    )
    try:
        open_hours = Hours.parse(w.open_hours)
    except ConfigError as exc:
        raise ConfigError(f"{path}: [warehouse] {exc}") from None
    low, high = int(w.rh_low), int(w.rh_high)
    if low >= high:
        raise ConfigError(f"{path}: [warehouse] rh_low must be below rh_high")
    config = WarehouseConfig(
        presence=presence,
        check_interval_s=w.check_interval_s,
        snapshot_interval_s=w.snapshot_interval_s,
        readers=_readers(path, table, w.readers),
        open_hours=open_hours,
        gpio_factory=w.gpio_factory,
        doors=tuple(sorted(w.doors.items())),
        tamper_pin=w.tamper_pin,
        power_pin=w.power_pin,
        door_open_level=w.door_open_level,
        tamper_level=w.tamper_level,
        power_lost_level=w.power_lost_level,
        pull_up=w.pull_up,
        debounce_ms=w.debounce_ms,
        gpio_poll_ms=w.gpio_poll_ms,
        siren_pin=w.siren_pin,
        light_pin=w.light_pin,
        siren_s=w.siren_s,
        power_grace_s=w.power_grace_s,
        shutdown_command=tuple(shlex.split(w.shutdown_command)) if w.shutdown_command else (),
        climate_bus=_climate_bus(path, w.climate_bus),
        climate_address=w.climate_address,
        climate_poll_s=w.climate_poll_s,
        climate=ClimateSettings(
            rh_low_c100=low, rh_high_c100=high,
            hysteresis_c100=int(w.rh_hysteresis),
            telemetry_every_ms=int(w.climate_telemetry_s * 1000)),
    )
    pins = [p for _, p in config.doors] + [p for p in (
        config.tamper_pin, config.power_pin, config.siren_pin, config.light_pin)
        if p is not None]
    if len(set(pins)) != len(pins):
        raise ConfigError(f"{path}: [warehouse] a GPIO pin is used twice: {sorted(pins)}")
    return config
