"""The station's status light and buzzer, on GPIO through gpiozero.

The clerk cannot watch a log: a light says whether sales reach the bank (steady: online;
slow blink: offline, sales queued safely; fast blink: fault, call the technician), and the buzzer
says at once whether a card was accepted (one short beep) or refused (three beeps).

Pins are driven through drivers.gpio, with a pin factory chosen by configuration: RPi.GPIO on
older Pis, lgpio on a Pi 5, `mock` in tests and on machines without pins (gpiozero's MockFactory
behaves like the hardware: pin states are recorded with timestamps). RPi.GPIO is never imported
at module import time, only when the factory is built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.gpio import GpioError, buzzer, led, make_factory

#: The GPIO backend or a pin could not be used: drivers.gpio's error, by the name the station's
#: code catches. (`make_factory` is drivers.gpio's too, imported here for the same callers.)
SignalError = GpioError


class Status(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"  # queuing: sales are safe on the device
    FAULT = "fault"


@dataclass(frozen=True)
class SignalPins:
    status_light: int
    buzzer: int
    factory: str = ""  # "", "rpigpio", "lgpio", "mock": "" lets gpiozero choose


class Signals:
    """Status light and buzzer. Thread-safe enough: gpiozero serialises pin access."""

    PATTERNS = {  # (on_time, off_time, n) for the buzzer
        "accept": (0.08, 0.0, 1),
        "refuse": (0.08, 0.08, 3),
    }

    def __init__(self, pins: SignalPins, *, pin_factory=None):
        factory = pin_factory if pin_factory is not None else make_factory(pins.factory)
        try:
            self.light = led(pins.status_light, factory)
            self.buzzer = buzzer(pins.buzzer, factory)
        except GpioError as exc:
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
