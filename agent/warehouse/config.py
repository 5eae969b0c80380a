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

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent.contract.settings import Section
from agent.errors import ConfigError
from agent.warehouse.climate import ClimateSettings
from agent.warehouse.doors import Hours
from agent.warehouse.presence import PresenceSettings

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
READER_KEYS = {"name", "port", "protocol", "antennas", "silence_s"}
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


def _pin(sec: Section, key: str) -> int | None:
    return sec.int(key, None, lo=0, hi=53) if key in sec.table else None


def _pct(sec: Section, key: str, default: str) -> int:
    value = sec.table.get(key, default)
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidOperation
        hundredths = Decimal(str(value)) * 100
        if hundredths != hundredths.to_integral_value() or not 0 <= hundredths <= 10000:
            raise InvalidOperation
    except InvalidOperation:
        raise sec._fail(key, "a percentage from 0 to 100 with at most 2 decimals, "
                        'as a string like "65.5"', value) from None
    return int(hundredths)


CLIMATE_BUS_HELP = ('an I2C bus number ("1"), "/dev/i2c-1", "sim" (a simulated SHT3x), or '
                    '"coproc:" and the field box\'s port URL ("coproc:/dev/ttyAMA0") for its '
                    'climate sensor')


def _climate_bus(path: Path, sec: Section) -> str | None:
    bus = sec.str("climate_bus", None)
    if bus is None:
        return None
    port = bus.removeprefix("coproc:")
    if (not bus.startswith("coproc:") and bus != "sim"
            and not bus.removeprefix("/dev/i2c-").isdigit()) or not port.strip():
        raise sec._fail("climate_bus", CLIMATE_BUS_HELP, bus)
    return bus


def parse_warehouse(path: Path, table: Any) -> WarehouseConfig:
    w = Section(path, "warehouse", table)
    known = {"departed_after_s", "moved_min_reads", "moved_window_s", "moved_margin_db",
             "rssi_window", "reader_silent_s", "check_interval_s", "snapshot_interval_s",
             "readers", "open_hours", "gpio_factory", "doors", "tamper_pin", "power_pin",
             "door_open_level", "tamper_level", "power_lost_level", "pull_up", "debounce_ms",
             "gpio_poll_ms", "siren_pin", "light_pin", "siren_s", "power_grace_s",
             "shutdown_command", "climate_bus", "climate_address", "climate_poll_s", "rh_low",
             "rh_high", "rh_hysteresis", "climate_telemetry_s", "forget_departed_s"}
    unknown = sorted(set(w.table) - known)
    if unknown:
        raise ConfigError(f"{path}: [warehouse] unknown key(s) {', '.join(unknown)}")
    presence = PresenceSettings(
        departed_after_ms=int(w.seconds("departed_after_s", 600, lo=1, hi=7 * 86400) * 1000),
        moved_min_reads=w.int("moved_min_reads", 2, lo=1, hi=1000),
        moved_window_ms=int(w.seconds("moved_window_s", 60, lo=1, hi=86400) * 1000),
        moved_margin_db=w.int("moved_margin_db", 0, lo=0, hi=60),
        rssi_window=w.int("rssi_window", 5, lo=1, hi=1000),
        forget_departed_ms=int(w.seconds("forget_departed_s", 30 * 86400, lo=0,
                                         hi=10 * 365 * 86400) * 1000),
        reader_silent_ms=int(w.seconds("reader_silent_s", 600, lo=0, hi=7 * 86400) * 1000),
    )
    readers = []
    raw_readers = w.table.get("readers", [])
    if not isinstance(raw_readers, list):
        raise ConfigError(f"{path}: [warehouse] readers: use [[warehouse.readers]] tables")
    from drivers.tags.llrp_reader import parse_url
    from firmware_bridge.sources import TAG_PROTOCOLS as PROTOCOLS

    for i, raw in enumerate(raw_readers):
        r = Section(path, f"warehouse.readers[{i}]", raw)
        unknown = sorted(set(r.table) - READER_KEYS)
        if unknown:
            raise ConfigError(f"{path}: [warehouse.readers[{i}]] unknown key(s) "
                              f"{', '.join(unknown)}; expected {', '.join(sorted(READER_KEYS))}")
        antennas = r.table.get("antennas", [])
        if not isinstance(antennas, list) or not all(
                isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= 64
                for a in antennas):
            raise ConfigError(f"{path}: [warehouse.readers] antennas: expected a list of "
                              "antenna numbers from 1 to 64, e.g. [1, 2]")
        spec = ReaderSpec(r.str("name", f"reader-{i + 1}", pattern=NAME_RE),
                          r.str("port", None) or "", r.choice("protocol", tuple(PROTOCOLS),
                                                              "bb7e"),
                          tuple(antennas),
                          r.seconds("silence_s", None, lo=0.1, hi=3600)
                          if "silence_s" in r.table else None)
        if not spec.port:
            raise ConfigError(f"{path}: [warehouse.readers] {spec.name}: port is missing")
        if spec.protocol == "llrp":
            try:
                parse_url(spec.port)
            except ValueError:
                raise r._fail("port", "llrp://HOST[:5084] for an llrp reader",
                              spec.port) from None
        readers.append(spec)
    if len({r.name for r in readers}) != len(readers):
        raise ConfigError(f"{path}: [warehouse.readers] names must be unique")
    doors = w.table.get("doors", {})
    if not isinstance(doors, dict) or not all(
            NAME_RE.match(k) and isinstance(v, int) and not isinstance(v, bool)
            and 0 <= v <= 53 for k, v in doors.items()):
        raise ConfigError(f"{path}: [warehouse] doors: expected a table of name = BCM pin, "
                          "e.g. doors = { main = 5, back = 12 }")
    hours = w.table.get("open_hours", "07:00-19:00")
    try:
        open_hours = Hours.parse(hours)
    except ConfigError as exc:
        raise ConfigError(f"{path}: [warehouse] {exc}") from None
    shutdown = w.str("shutdown_command", None)
    low, high = _pct(w, "rh_low", "60"), _pct(w, "rh_high", "70")
    if low >= high:
        raise ConfigError(f"{path}: [warehouse] rh_low must be below rh_high")
    config = WarehouseConfig(
        presence=presence,
        check_interval_s=w.seconds("check_interval_s", 30, lo=0.01, hi=86400),
        snapshot_interval_s=w.seconds("snapshot_interval_s", 3600, lo=1, hi=7 * 86400),
        readers=tuple(readers),
        open_hours=open_hours,
        gpio_factory=w.choice("gpio_factory", ("", "rpigpio", "lgpio", "mock"), ""),
        doors=tuple(sorted(doors.items())),
        tamper_pin=_pin(w, "tamper_pin"),
        power_pin=_pin(w, "power_pin"),
        door_open_level=w.choice("door_open_level", LEVELS, "high"),
        tamper_level=w.choice("tamper_level", LEVELS, "high"),
        power_lost_level=w.choice("power_lost_level", LEVELS, "low"),
        pull_up=w.bool("pull_up", True),
        debounce_ms=w.int("debounce_ms", 50, lo=0, hi=10_000),
        gpio_poll_ms=w.int("gpio_poll_ms", 20, lo=1, hi=10_000),
        siren_pin=_pin(w, "siren_pin"),
        light_pin=_pin(w, "light_pin"),
        siren_s=w.seconds("siren_s", 60, lo=0.01, hi=3600),
        power_grace_s=w.seconds("power_grace_s", 20, lo=0, hi=600),
        shutdown_command=tuple(shlex.split(shutdown)) if shutdown else (),
        climate_bus=_climate_bus(path, w),
        climate_address=w.int("climate_address", 0x44, lo=0x44, hi=0x45),
        climate_poll_s=w.seconds("climate_poll_s", 10, lo=0.05, hi=3600),
        climate=ClimateSettings(
            rh_low_c100=low, rh_high_c100=high,
            hysteresis_c100=_pct(w, "rh_hysteresis", "2"),
            telemetry_every_ms=int(w.seconds("climate_telemetry_s", 300, lo=0, hi=86400)
                                   * 1000)),
    )
    pins = [p for _, p in config.doors] + [p for p in (
        config.tamper_pin, config.power_pin, config.siren_pin, config.light_pin)
        if p is not None]
    if len(set(pins)) != len(pins):
        raise ConfigError(f"{path}: [warehouse] a GPIO pin is used twice: {sorted(pins)}")
    return config
