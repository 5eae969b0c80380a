"""The protocol registry: a protocol chosen by name, with options in URL query style.

    xk3190-a9                      continuous output, unit kg
    xk3190-a9?mode=command&address=B&unit=g
    xk3190-a12
    toledo?model=wildcat&checksum=0
    mt-sics
    ad-ascii

Options travel with the name as pyserial's options travel in a port URL, so one string in the
configuration (or on the command line) says everything about the protocol.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import parse_qsl, urlsplit

from . import ad_ascii, mtsics, toledo, xk3190_a9, xk3190_a12
from .command import Command
from .errors import CommandUnsupported, ProtocolNotFound
from .framing import Framer
from .reading import Decoded, Unit


@dataclass(frozen=True)
class SerialSettings:
    """Line settings passed to `serial_for_url`; baud is the usual field value, not a
    guaranteed factory default (XK3190-A9: 600-9600 selectable, none documented)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    xonxoff: bool = False

    def as_kwargs(self) -> dict:
        return {"baudrate": self.baudrate, "bytesize": self.bytesize, "parity": self.parity,
                "stopbits": self.stopbits, "xonxoff": self.xonxoff}


@dataclass(frozen=True)
class Protocol:
    """Everything the reader needs to speak to one kind of indicator.

    `continuous`: the indicator talks without being asked, so silence on the line is a fault.
    `stable_flag`: frames carry the indicator's stable flag (otherwise it is inferred).
    `overload_flag`: frames say when the indicator is overloaded (otherwise only a configured
    capacity can refuse an overloaded reading).
    """

    name: str
    spec: str
    make_framer: Callable[[], Framer]
    parse: Callable[[bytes], Decoded]
    serial: SerialSettings = field(default_factory=SerialSettings)
    continuous: bool = True
    stable_flag: bool = True
    make_command: Callable[[str], Command] | None = None
    overload_flag: bool = True

    def framer(self) -> Framer:
        return self.make_framer()

    def command(self, name: str) -> Command:
        """The protocol's command `name` (MT-SICS: the command line, e.g. "SI"; XK3190-A9:
        handshake, gross, tare, net or A-D)."""
        if self.make_command is None:
            raise CommandUnsupported(f"{self.name} is output only: it takes no commands")
        return self.make_command(name)


def _flag(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ProtocolNotFound(f"option {name}={value!r} must be 0 or 1")


def _unit(value: str) -> Unit:
    try:
        return Unit(value)
    except ValueError:
        raise ProtocolNotFound(f"option unit={value!r} must be one of "
                               + ", ".join(u.value for u in Unit)) from None


def _xk3190_a9(spec: str, unit: str = "kg", address: str = "A",
               mode: str = "continuous") -> Protocol:
    if mode not in ("continuous", "command"):
        raise ProtocolNotFound(f"option mode={mode!r} must be continuous or command")
    if len(address) != 1 or not "A" <= address <= "Z":
        raise ProtocolNotFound(f"option address={address!r} must be one letter A-Z")
    return Protocol(xk3190_a9.NAME, spec, xk3190_a9.framer,
                    partial(xk3190_a9.parse, unit=_unit(unit)),
                    continuous=mode == "continuous", stable_flag=False,
                    make_command=partial(xk3190_a9.command, address=address),
                    overload_flag=False)


def _xk3190_a12(spec: str) -> Protocol:
    return Protocol(xk3190_a12.NAME, spec, xk3190_a12.framer, xk3190_a12.parse,
                    stable_flag=False)


def _toledo(spec: str, model: str = "standard", checksum: str = "1") -> Protocol:
    if model not in toledo.MODELS:
        raise ProtocolNotFound(f"option model={model!r} must be one of "
                               + ", ".join(toledo.MODELS))
    with_sum = _flag(checksum, "checksum")
    return Protocol(toledo.NAME, spec, partial(toledo.framer, with_sum),
                    partial(toledo.parse, bits=toledo.MODELS[model], checksum=with_sum))


def _mtsics(spec: str, xonxoff: str = "1") -> Protocol:
    return Protocol(mtsics.NAME, spec, mtsics.framer, mtsics.parse,
                    serial=SerialSettings(xonxoff=_flag(xonxoff, "xonxoff")),
                    continuous=False, make_command=mtsics.command)


def _ad_ascii(spec: str) -> Protocol:
    return Protocol(ad_ascii.NAME, spec, ad_ascii.framer, ad_ascii.parse)


FACTORIES: dict[str, Callable[..., Protocol]] = {
    xk3190_a9.NAME: _xk3190_a9,
    xk3190_a12.NAME: _xk3190_a12,
    toledo.NAME: _toledo,
    mtsics.NAME: _mtsics,
    ad_ascii.NAME: _ad_ascii,
}
NAMES = tuple(FACTORIES)


def get_protocol(spec: str) -> Protocol:
    """The protocol named by `spec` (`name` or `name?option=value&...`).

    Raises ProtocolNotFound, naming the known protocols or the bad option.
    """
    parts = urlsplit(spec)
    name = parts.path
    factory = FACTORIES.get(name)
    if factory is None or parts.scheme or parts.netloc or parts.fragment:
        raise ProtocolNotFound(f"unknown scale protocol {spec!r}; known: {', '.join(NAMES)}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    allowed = list(inspect.signature(factory).parameters)[1:]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ProtocolNotFound(f"unknown option {', '.join(unknown)} in {spec!r}; {name} takes "
                               + (", ".join(allowed) or "no options"))
    return factory(spec, **options)
