"""The station's configuration sections: [station], [card], [scale], [printer], [signals].

Parsed by agent.config (they are listed in its PLUGGED_SECTIONS) into frozen objects, with
errors that name the file, the key and what was expected. A device is a station when its file
has a [station] section; [card] and [scale] are then required, [printer] and [signals] are
optional (no printer: the voucher is shown on screen only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfoNotFoundError

from agent.contract.settings import REQUIRED, Section
from agent.errors import ConfigError
from agent.station.purchase import Timeouts
from agent.station.sales import DEFAULT_TIMEZONE, local_zone

COPROC = "coproc"  # the field box's load cell (opened by firmware_bridge.sources)
GPIO_FACTORIES = ("", "rpigpio", "lgpio", "mock")


@dataclass(frozen=True)
class StationConfig:
    timeouts: Timeouts
    price_tables_dir: Path | None   # default: the device's data_dir
    staff_reader: str               # "" = the card reader; else a part of another reader's name
    timezone: tzinfo                # the station's local time: voucher days, today's sales


@dataclass(frozen=True)
class CardConfig:
    reader: str                     # any unique part of the PC/SC reader name; "" = the first
    issuer_public_key_file: Path
    m1_master_key_file: Path | None
    internal_authenticate: bool     # refuse CPU cards that cannot answer a challenge


@dataclass(frozen=True)
class ScaleConfig:
    port: str                       # a serial_for_url URL
    protocol: str                   # a protocol spec, NAME?KEY=VALUE&... (or coproc)
    scale_id: str
    baudrate: int | None
    division_g: Decimal             # e, the verification scale interval
    min_divisions: int
    capacity_g: Decimal | None
    tare_g: int
    stable_count: int
    stable_window_s: float


@dataclass(frozen=True)
class PrinterConfig:
    url: str


@dataclass(frozen=True)
class SignalsConfig:
    status_light: int
    buzzer: int
    factory: str


def parse_station(path: Path, table) -> StationConfig:
    st = Section(path, "station", table)
    defaults = Timeouts()
    timeouts = Timeouts(**{
        name: st.seconds(name, getattr(defaults, name), lo=1, hi=86400)
        for name in ("signed_in_s", "weighing_s", "grading_s", "confirming_s",
                     "duplicate_window_s", "card_write_s")})
    return StationConfig(timeouts=timeouts,
                         price_tables_dir=st.path("price_tables_dir", None),
                         staff_reader=st.str("staff_reader", ""),
                         timezone=_timezone(path, st))


def _timezone(path: Path, st: Section) -> tzinfo:
    name = st.str("timezone", DEFAULT_TIMEZONE)
    try:
        return local_zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(f"{path}: [station] timezone: expected an IANA time zone name such "
                          f"as {DEFAULT_TIMEZONE!r}, got {name!r} ({exc})") from None


def parse_card(path: Path, table) -> CardConfig:
    cd = Section(path, "card", table)
    return CardConfig(
        reader=cd.str("reader", ""),
        issuer_public_key_file=cd.path("issuer_public_key_file", REQUIRED),
        m1_master_key_file=cd.path("m1_master_key_file", None),
        internal_authenticate=cd.bool("internal_authenticate", False),
    )


def parse_scale(path: Path, table) -> ScaleConfig:
    sc = Section(path, "scale", table)
    tare = sc.int("tare_g", 0, lo=0, hi=10_000_000)
    config = ScaleConfig(
        port=sc.str("port", REQUIRED),
        protocol=_scale_protocol(path, sc),
        scale_id=sc.str("id", "scale-1"),
        baudrate=sc.int("baudrate", None, lo=300, hi=921600) if "baudrate" in sc.table
        else None,
        division_g=sc.decimal("division_g", Decimal("20")),
        min_divisions=sc.int("min_divisions", 20, lo=0, hi=100_000),
        capacity_g=sc.decimal("capacity_g", None),
        tare_g=tare,
        stable_count=sc.int("stable_count", 5, lo=1, hi=1000),
        stable_window_s=sc.seconds("stable_window_s", 1.0, lo=0.05, hi=60),
    )
    if config.capacity_g is not None and config.capacity_g <= config.division_g:
        raise ConfigError(f"{path}: [scale] capacity_g must be above division_g")
    if config.capacity_g is None and not _reports_overload(config.protocol):
        raise ConfigError(
            f"{path}: [scale] capacity_g: missing, expected the scale's capacity (Max) in "
            f"grams as a string, e.g. capacity_g = \"150000\": {config.protocol} frames carry "
            "no overload flag, so only capacity_g keeps an overloaded reading out of a sale")
    return config


def _reports_overload(spec: str) -> bool:
    from drivers.scale import get_protocol

    return spec == COPROC or get_protocol(spec).overload_flag


def _scale_protocol(path: Path, sc: Section) -> str:
    """The protocol spec as `cocoon-agent scale watch --protocol` takes it: a name with its
    options (`xk3190-a9?mode=command&unit=g`, `toledo?model=wildcat`), checked here so that a
    wrong name or option is a configuration error, not a scale that never reads."""
    from drivers.scale import NAMES, ProtocolNotFound, get_protocol

    spec = sc.str("protocol", REQUIRED)
    if spec == COPROC:
        return spec
    try:
        get_protocol(spec)
    except ProtocolNotFound as exc:
        raise ConfigError(
            f"{path}: [scale] protocol: expected one of {', '.join((*NAMES, COPROC))}, with "
            f"options as NAME?KEY=VALUE&... (`cocoon-agent scale protocols` lists them), "
            f"got {spec!r}: {exc}") from None
    return spec


def parse_printer(path: Path, table) -> PrinterConfig:
    pr = Section(path, "printer", table)
    url = pr.str("url", REQUIRED)
    if url.split("://", 1)[0] not in ("usb", "serial", "file", "dummy") or "://" not in url:
        raise ConfigError(f"{path}: [printer] url: expected usb://VID:PID, serial://DEVICE, "
                          f"file://PATH or dummy://, got {url!r}")
    return PrinterConfig(url)


def parse_signals(path: Path, table) -> SignalsConfig:
    sg = Section(path, "signals", table)
    return SignalsConfig(
        status_light=sg.int("status_light", REQUIRED, lo=0, hi=53),
        buzzer=sg.int("buzzer", REQUIRED, lo=0, hi=53),
        factory=sg.choice("factory", GPIO_FACTORIES, ""),
    )
