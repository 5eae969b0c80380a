"""GPIO pins: the one module that imports gpiozero, and the one place a pin factory is chosen.

The station's light and buzzer (drivers.signals), the warehouse's doors, switches, siren and
light (agent.warehouse.pins) and the doctor's check of both claim their pins here, so a backend
is picked the same way everywhere: by the configuration's name for it, `rpigpio` (RPi.GPIO, on
Pis before the 5), `lgpio` (a Pi 5), `mock` (gpiozero's MockFactory, in tests, demos and on
machines without pins: it behaves like the hardware and records pin states with timestamps),
or "" to let gpiozero choose. A machine that is no Raspberry Pi has no backend but `mock`.

gpiozero itself is pure Python, but the backends are not: RPi.GPIO refuses to load off a Pi
and lgpio needs its C library. So gpiozero and every backend are imported only when a factory
or a pin is asked for, never when a module is imported. gpiozero's own errors become this
module's: `GpioError` for a backend that cannot be used, `PinError` for a pin that cannot be
claimed.
"""

from __future__ import annotations

from drivers.errors import DriverError


class GpioError(DriverError):
    """The GPIO backend or a pin could not be used."""


class PinError(GpioError):
    """A pin could not be claimed: in use, not on this board, or no usable backend."""


def make_factory(name: str):
    """A gpiozero pin factory by backend name, or None for "" (gpiozero's own choice)."""
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
        raise GpioError(f"GPIO backend {name!r} is not usable here: {exc}") from None
    raise GpioError(f"unknown GPIO backend {name!r}: use rpigpio, lgpio or mock")


def _claim(kind: str, pin: int, factory, **options):
    """gpiozero's device `kind` on BCM `pin`; PinError (naming gpiozero's reason) if it cannot
    be claimed."""
    import gpiozero
    from gpiozero.exc import GPIOZeroError

    try:
        return getattr(gpiozero, kind)(pin, pin_factory=factory, **options)
    except GPIOZeroError as exc:
        raise PinError(f"{type(exc).__name__}: {exc}") from None


def led(pin: int, factory=None):
    """A gpiozero LED (on, off, blink) on `pin`."""
    return _claim("LED", pin, factory)


def buzzer(pin: int, factory=None):
    """A gpiozero Buzzer (on, off, beep, blink) on `pin`."""
    return _claim("Buzzer", pin, factory)


def digital_input(pin: int, factory=None, *, pull_up: bool | None = False):
    """A gpiozero DigitalInputDevice on `pin`; its `pin.state` is the raw level."""
    return _claim("DigitalInputDevice", pin, factory, pull_up=pull_up)


def digital_output(pin: int, factory=None):
    """A gpiozero DigitalOutputDevice (on, off, blink, value) on `pin`."""
    return _claim("DigitalOutputDevice", pin, factory)
