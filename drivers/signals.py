"""The station's status light and buzzer, on GPIO through gpiozero.

The clerk cannot watch a log: a light says whether sales reach the bank (steady: online;
slow blink: offline, sales queued safely; fast blink: fault, call the technician), and the buzzer
says at once whether a card was accepted (one short beep) or refused (three beeps).

Pins are driven through a gpiozero pin factory chosen by configuration: RPi.GPIO on older Pis,
lgpio on a Pi 5, `mock` in tests and on machines without pins (gpiozero's MockFactory behaves
like the hardware: pin states are recorded with timestamps). RPi.GPIO is never imported at module
import time, only when the factory is built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from agent.errors import CocoonError


class SignalError(CocoonError):
    """The GPIO backend or a pin could not be used."""


class Status(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"  # queuing: sales are safe on the device
    FAULT = "fault"


@dataclass(frozen=True)
class SignalPins:
    status_light: int
    buzzer: int
    factory: str = ""  # "", "rpigpio", "lgpio", "mock": "" lets gpiozero choose


def make_factory(name: str):
    """A gpiozero pin factory by name; imported lazily so no backend loads at import time."""
    if not name:
        return None
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
    except (ImportError, RuntimeError, OSError) as exc:
        raise SignalError(f"GPIO backend {name!r} is not usable here: {exc}") from None
    raise SignalError(f"unknown GPIO backend {name!r}: use rpigpio, lgpio or mock")


class Signals:
    """Status light and buzzer. Thread-safe enough: gpiozero serialises pin access."""

    PATTERNS = {  # (on_time, off_time, n) for the buzzer
        "accept": (0.08, 0.0, 1),
        "refuse": (0.08, 0.08, 3),
    }

    def __init__(self, pins: SignalPins, *, pin_factory=None):
        from gpiozero import LED, Buzzer  # gpiozero itself is pure Python
        from gpiozero.exc import GPIOZeroError

        factory = pin_factory if pin_factory is not None else make_factory(pins.factory)
        try:
            self.light = LED(pins.status_light, pin_factory=factory)
            self.buzzer = Buzzer(pins.buzzer, pin_factory=factory)
        except GPIOZeroError as exc:
            raise SignalError(f"cannot claim GPIO pins {pins}: {exc}") from None
        self.status: Status | None = None

    def show(self, status: Status) -> None:
        if status == self.status:
            return
        self.status = status
        if status is Status.ONLINE:
            self.light.on()
        elif status is Status.OFFLINE:
            self.light.blink(on_time=1.0, off_time=1.0)
        else:
            self.light.blink(on_time=0.15, off_time=0.15)

    def beep(self, kind: str) -> None:
        on, off, n = self.PATTERNS.get(kind, self.PATTERNS["refuse"])
        self.buzzer.blink(on_time=on, off_time=max(off, 0.01), n=n, background=True)

    def close(self) -> None:
        self.light.close()
        self.buzzer.close()
