"""The station's configuration sections: [station], [card], [scale], [printer], [signals].

Parsed by agent.config (they are listed in its PLUGGED_SECTIONS) into frozen objects, with
errors that name the file, the key and what was expected. A device is a station when its file
has a [station] section; [card] and [scale] are then required, [printer] and [signals] are
optional (no printer: the voucher is shown on screen only).
"""

from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfoNotFoundError

import msgspec

from agent.contract.settings import (
    DECIMAL,
    FLAG,
    PATH,
    Schema,
    decode,
    integer,
    one_of,
    seconds,
    text,
)
from agent.errors import ConfigError
from agent.station.sales import DEFAULT_TIMEZONE, local_zone
from agent.station.timeouts import Timeouts
from agent.station.trusted_time import DEFAULT_MAX_UNTRUSTED_H

COPROC = "coproc"  # the field box's load cell (opened by firmware_bridge.sources)
GPIO_FACTORIES = ("", "rpigpio", "lgpio", "mock")


@dataclass(frozen=True)
class StationConfig:
    timeouts: Timeouts
    price_tables_dir: Path | None   # default: the device's data_dir
    staff_reader: str               # "" = the card reader; else a part of another reader's name
    timezone: tzinfo                # the station's local time: voucher days, today's sales
    untrusted_time_max_h: int = DEFAULT_MAX_UNTRUSTED_H  # price by the last trusted time
    language: str = "zh-CN"         # the station's language: the farmer's voucher


@dataclass(frozen=True)
class CardConfig:
    reader: str                     # any unique part of the PC/SC reader name; "" = the first
    issuer_public_key_file: Path
    m1_master_key_file: Path | None
    internal_authenticate: bool     # ed25519: refuse CPU cards without a key of their own
    auth: str = "psam"              # "psam", "ed25519" or "none": how CPU cards are challenged
    sam_reader: str = ""            # a part of the PSAM's reader name; "" = any other reader
    allow_m1: bool = True           # MIFARE Classic cards accepted (the weaker kind)
    blacklist_max_age_h: int = 24   # past this the station warns
    blacklist_refuse_age_h: int = 72    # past this it sells no more until a fresh list


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


class StationSection(Schema, kw_only=True):
    signed_in_s: seconds(1, 86400) = Timeouts.signed_in_s
    weighing_s: seconds(1, 86400) = Timeouts.weighing_s
    grading_s: seconds(1, 86400) = Timeouts.grading_s
    confirming_s: seconds(1, 86400) = Timeouts.confirming_s
    duplicate_window_s: seconds(1, 86400) = Timeouts.duplicate_window_s
    card_write_s: seconds(1, 86400) = Timeouts.card_write_s
    price_tables_dir: PATH | None = None
    staff_reader: str = ""
    timezone: text() = DEFAULT_TIMEZONE
    untrusted_time_max_h: integer(1, 8760) = DEFAULT_MAX_UNTRUSTED_H
    language: one_of("zh-CN", "en") = "zh-CN"


def parse_station(path: Path, table) -> StationConfig:
    st = decode(path, "station", table, StationSection)
    timeouts = Timeouts(**{name: float(getattr(st, name)) for name in (
        "signed_in_s", "weighing_s", "grading_s", "confirming_s", "duplicate_window_s",
        "card_write_s")})
    return StationConfig(timeouts=timeouts, price_tables_dir=st.price_tables_dir,
                         staff_reader=st.staff_reader, timezone=_timezone(path, st.timezone),
                         untrusted_time_max_h=st.untrusted_time_max_h, language=st.language)


def _timezone(path: Path, name: str) -> tzinfo:
    try:
        return local_zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(f"{path}: [station] timezone: expected an IANA time zone name such "
                          f"as {DEFAULT_TIMEZONE!r}, got {name!r} ({exc})") from None


AUTH_MODES = ("psam", "ed25519", "none")


class CardSection(Schema, kw_only=True):
    reader: str = ""
    issuer_public_key_file: PATH
    m1_master_key_file: PATH | None = None
    internal_authenticate: FLAG = False
    auth: one_of(*AUTH_MODES) = "psam"
    sam_reader: str = ""
    allow_m1: FLAG = True
    blacklist_max_age_h: integer(1, 8760) = 24
    blacklist_refuse_age_h: integer(1, 8760) = 72


def parse_card(path: Path, table) -> CardConfig:
    cd = decode(path, "card", table, CardSection)
    if cd.blacklist_refuse_age_h < cd.blacklist_max_age_h:
        raise ConfigError(f"{path}: [card] blacklist_refuse_age_h ({cd.blacklist_refuse_age_h})"
                          f" must not be below blacklist_max_age_h ({cd.blacklist_max_age_h}):"
                          " the station warns before it refuses")
    if cd.internal_authenticate and cd.auth == "none":
        # (with "psam" it is what happens anyway: every CPU card is challenged)
        raise ConfigError(f"{path}: [card] internal_authenticate = true asks for a challenge "
                          "that auth = \"none\" switches off: choose auth = \"psam\" or "
                          "\"ed25519\", or remove internal_authenticate")
    return CardConfig(**msgspec.structs.asdict(cd))


class ScaleSection(Schema, kw_only=True):
    port: text()
    protocol: text()
    id: text() = "scale-1"
    baudrate: integer(300, 921600) | None = None
    division_g: DECIMAL = Decimal("20")
    min_divisions: integer(0, 100_000) = 20
    capacity_g: DECIMAL | None = None
    tare_g: integer(0, 10_000_000) = 0
    stable_count: integer(1, 1000) = 5
    stable_window_s: seconds(0.05, 60) = 1.0


def parse_scale(path: Path, table) -> ScaleConfig:
    sc = decode(path, "scale", table, ScaleSection)
    config = ScaleConfig(
        port=sc.port,
        protocol=_scale_protocol(path, sc.protocol),
        scale_id=sc.id,
        baudrate=sc.baudrate,
        division_g=Decimal(sc.division_g),
        min_divisions=sc.min_divisions,
        capacity_g=None if sc.capacity_g is None else Decimal(sc.capacity_g),
        tare_g=sc.tare_g,
        stable_count=sc.stable_count,
        stable_window_s=sc.stable_window_s,
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


def _scale_protocol(path: Path, spec: str) -> str:
    """The protocol spec as `cocoon-agent scale watch --protocol` takes it: a name with its
    options (`xk3190-a9?mode=command&unit=g`, `toledo?model=wildcat`), checked here so that a
    wrong name or option is a configuration error, not a scale that never reads."""
    from drivers.scale import NAMES, ProtocolNotFound, get_protocol

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


class PrinterSection(Schema, kw_only=True):
    url: text()


def parse_printer(path: Path, table) -> PrinterConfig:
    url = decode(path, "printer", table, PrinterSection).url
    if url.split("://", 1)[0] not in ("usb", "serial", "file", "dummy") or "://" not in url:
        raise ConfigError(f"{path}: [printer] url: expected usb://VID:PID, serial://DEVICE, "
                          f"file://PATH or dummy://, got {url!r}")
    return PrinterConfig(url)


class SignalsSection(Schema, kw_only=True):
    status_light: integer(0, 53)
    buzzer: integer(0, 53)
    factory: one_of(*GPIO_FACTORIES) = ""


def parse_signals(path: Path, table) -> SignalsConfig:
    sg = decode(path, "signals", table, SignalsSection)
    return SignalsConfig(sg.status_light, sg.buzzer, sg.factory)
