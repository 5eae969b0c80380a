"""The warehouse's GPIO: door contacts, tamper switch and power signal in; siren and light out.

Pins are claimed through drivers.gpio with a pin factory chosen by configuration (see
drivers.gpio.make_factory). Inputs are sampled as raw levels and debounced by
`doors.Debouncer`, so debouncing behaves the same on every backend, gpiozero's mock included
(whose pins do not emulate a bounce time).
"""

from __future__ import annotations

from agent.warehouse.config import WarehouseConfig
from agent.warehouse.doors import Input, Kind
from drivers.gpio import GpioError, digital_input, digital_output, make_factory


def inputs_of(config: WarehouseConfig) -> list[tuple[Input, int]]:
    out = [(Input(name, Kind.DOOR, config.door_open_level == "high"), pin)
           for name, pin in config.doors]
    if config.tamper_pin is not None:
        out.append((Input("tamper", Kind.TAMPER, config.tamper_level == "high"),
                    config.tamper_pin))
    if config.power_pin is not None:
        out.append((Input("power", Kind.POWER, config.power_lost_level == "high"),
                    config.power_pin))
    return out


class Pins:
    def __init__(self, config: WarehouseConfig, *, pin_factory=None):
        self.inputs = inputs_of(config)
        if not self.inputs and config.siren_pin is None and config.light_pin is None:
            self.devices, self.siren, self.light = {}, None, None
            return
        factory = pin_factory if pin_factory is not None else make_factory(config.gpio_factory)
        self.devices = {}
        self.siren = self.light = None
        try:
            for inp, pin in self.inputs:
                self.devices[inp.name] = digital_input(pin, factory, pull_up=config.pull_up)
            if config.siren_pin is not None:
                self.siren = digital_output(config.siren_pin, factory)
            if config.light_pin is not None:
                self.light = digital_output(config.light_pin, factory)
        except GpioError as exc:
            self.close()
            raise GpioError(f"cannot claim the warehouse's GPIO pins: {exc}") from None
        self._siren_s = config.siren_s

    def levels(self) -> dict[str, bool]:
        """The physical level of every input (True: high), whatever the pull."""
        return {name: bool(dev.pin.state) for name, dev in self.devices.items()}

    def sound_siren(self) -> None:
        if self.siren is not None:
            self.siren.blink(on_time=self._siren_s, off_time=0.01, n=1, background=True)

    def show_alerts(self, any_open: bool) -> None:
        if self.light is not None and bool(self.light.value) != any_open:
            self.light.value = any_open

    def close(self) -> None:
        for dev in [*self.devices.values(), self.siren, self.light]:
            if dev is not None:
                dev.close()
