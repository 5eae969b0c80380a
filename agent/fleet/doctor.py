"""`cocoon-agent doctor`: every configured part checked, as a table or as JSON.

The checks live in agent/fleet/doctor_checks.py. Which run depends on the configuration: the broker,
certificate, clock, disk, outbox, key files and systemd unit always; the card reader, the scale
and the tag readers only when their sections are configured. Optional sections are looked up
through `AgentConfig.section`, guarded, so a device whose software does not know a section
simply has no such part.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.contract.clock import wall_clock_synced
from agent.fleet import doctor_checks as checks
from agent.fleet.doctor_checks import CheckResult, Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoctorOptions:
    broker_timeout_s: float = 10.0
    scale_seconds: float = 3.0
    user: str | None = None                 # the service user; default: the unit's User=
    unit_dirs: tuple[Path, ...] = checks.UNIT_DIRS
    clock: Callable[[], bool] = wall_clock_synced
    skip: frozenset[str] = field(default_factory=frozenset)


def configured(config, name: str):
    """The parsed section `name`, or None when it is absent or unknown to this software."""
    try:
        return config.section(name)
    except KeyError:
        return None


def _tag_reader(spec, timeout_s: float = 5.0) -> CheckResult:
    """The reader answers: opened as the warehouse opens it (its port, an LLRP address or
    the field box), it reports itself online within `timeout_s`. A port that opens says
    nothing of the module behind it; a reader's health does."""
    import queue
    import threading

    from firmware_bridge.sources import TAG_READER, open_source

    name = f"tag reader {spec.name}"
    where = f"{spec.port} ({spec.protocol})"
    health: queue.Queue = queue.Queue()
    stop = threading.Event()
    reads: list = []
    # Within the check's time: a module watching an empty field sends nothing until the
    # reader probes it, after half its silence.
    silence_s = min(spec.silence_s or timeout_s, timeout_s)
    reader = open_source(TAG_READER, spec.port, spec.protocol, name=spec.name,
                         antennas=spec.antennas, silence_s=silence_s)
    runner = threading.Thread(target=reader.run, args=(reads.append, health.put, stop),
                              daemon=True, name=f"doctor {name}")
    runner.start()
    last = ""
    try:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                report = health.get(timeout=left)
            except queue.Empty:
                break
            if report.online:
                return CheckResult(name, Status.OK, f"{where}: online, {len(reads)} read(s) "
                                   "so far (cocoon-agent tags watch shows them)")
            last = report.detail or last
    finally:
        stop.set()
        runner.join(10)
    return CheckResult(name, Status.FAIL, f"{where}: not online within {timeout_s:g} s"
                       + (f" ({last})" if last else ""),
                       "check the reader's power, its cable or network, and its port and "
                       "protocol in [[warehouse.readers]]")


def _coprocessor(firmware, timeout_s: float = 5.0) -> CheckResult:
    """The field box answers its version handshake on its UART."""
    from firmware_bridge.bridge import Bridge
    from firmware_bridge.errors import BridgeError, ProtocolVersionError

    name = "co-processor"
    bridge = Bridge(firmware.port, baudrate=firmware.baudrate)
    try:
        bridge.start()
        hello = bridge.wait_online(timeout_s)
    except ProtocolVersionError as exc:
        return CheckResult(name, Status.FAIL, str(exc), "update the agent or the box's "
                           "firmware so that both speak the same protocol version")
    except (BridgeError, OSError) as exc:
        return CheckResult(name, Status.FAIL, f"{firmware.port}: {exc}",
                           "check the UART wiring and [firmware] port and baudrate; is the "
                           "box powered?")
    finally:
        bridge.stop()
    slot = "AB"[hello.active_slot] if hello.active_slot in (0, 1) else hello.active_slot
    return CheckResult(name, Status.OK, f"firmware {hello.major}.{hello.minor}.{hello.patch} "
                       f"(slot {slot}, board {hello.hardware}) on {firmware.port}")


def _gpio(factory_name: str, pins: list[int]) -> CheckResult:
    """The GPIO backend loads and every configured pin can be claimed (and is released)."""
    from drivers.gpio import GpioError, PinError, digital_input, make_factory

    name = "GPIO"
    try:
        factory = make_factory(factory_name)
        for pin in pins:
            digital_input(pin, factory).close()
    except (PinError, OSError, RuntimeError) as exc:  # PinError first: it is a GpioError
        detail = str(exc) if isinstance(exc, PinError) else f"{type(exc).__name__}: {exc}"
        return CheckResult(name, Status.FAIL, detail,
                           "no usable GPIO here (not a Raspberry Pi?), or a pin is busy: "
                           "check the pin numbers (BCM) and that no other program holds them")
    except GpioError as exc:
        return CheckResult(name, Status.FAIL, str(exc), "install the GPIO backend "
                           "(python3-lgpio on a Pi 5, RPi.GPIO before) or fix gpio factory")
    return CheckResult(name, Status.OK, f"pins {', '.join(map(str, pins))} available "
                       f"({factory_name or 'gpiozero default'} backend)")


def gpio_pins(config) -> tuple[str, list[int]] | None:
    """(backend name, BCM pins) the configuration uses, or None when it uses no GPIO."""
    pins: list[int] = []
    factory = ""
    signals = configured(config, "signals")
    if signals is not None:
        pins += [signals.status_light, signals.buzzer]
        factory = signals.factory
    warehouse = configured(config, "warehouse")
    if warehouse is not None:
        for attr in ("tamper_pin", "power_pin", "siren_pin", "light_pin"):
            if getattr(warehouse, attr, None) is not None:
                pins.append(getattr(warehouse, attr))
        pins += [pin for _, pin in getattr(warehouse, "doors", ()) or ()]
        factory = factory or getattr(warehouse, "gpio_factory", "") or ""
    return (factory, sorted(set(pins))) if pins else None


def plan(config, options: DoctorOptions) -> list[tuple[str, Callable[[], CheckResult]]]:
    """The checks for this configuration, in the order a technician reads them."""
    user = options.user
    if user is None:
        found = checks.read_unit(options.unit_dirs)
        user = found[1].get("User") if found else None
    todo: list[tuple[str, Callable[[], CheckResult]]] = [
        ("configuration", lambda: checks.check_configuration(config)),
        ("broker", lambda: checks.check_broker(config, options.broker_timeout_s)),
        ("certificate", lambda: checks.check_certificate(config)),
        ("clock", lambda: checks.check_clock(options.clock)),
        ("disk", lambda: checks.check_disk(config)),
        ("outbox", lambda: checks.check_outbox(config)),
        ("key files", lambda: checks.check_key_files(
            [config.device.pkcs11_pin_file if config.device.signing_key
             else config.device.signing_key_file, config.mqtt.key_file], user)),
        ("systemd unit", lambda: checks.check_unit(options.unit_dirs)),
    ]
    if config.device.signing_key:
        todo.append(("signing key", lambda: checks.check_token_signer(config.device)))
    card = configured(config, "card")
    if card is not None:
        todo.append(("card reader", lambda: checks.check_card_reader(card)))
    scale = configured(config, "scale")
    if scale is not None:
        todo.append(("scale", lambda: checks.check_scale(scale, options.scale_seconds)))
    screen = configured(config, "screen")
    if screen is not None:
        todo.append(("clerk's screen", lambda: checks.check_screen(screen)))
        if screen.remote:
            todo.append(("remote screens", lambda: checks.check_remote_screen(
                screen, config.device.data_dir)))
    firmware = configured(config, "firmware")
    if firmware is not None:
        todo.append(("co-processor", lambda: _coprocessor(firmware)))
    gpio = gpio_pins(config)
    if gpio is not None:
        todo.append(("GPIO", lambda: _gpio(*gpio)))
    warehouse = configured(config, "warehouse")
    for spec in getattr(warehouse, "readers", ()) or ():
        todo.append((f"tag reader {spec.name}", lambda spec=spec: _tag_reader(spec)))
    return [(name, fn) for name, fn in todo if name not in options.skip]


def run(config, options: DoctorOptions | None = None) -> list[CheckResult]:
    """Run every planned check. A check that breaks is reported as a failure of its own, so
    one broken part never hides the others (this is the one broad catch, on purpose)."""
    results = []
    for name, check in plan(config, options or DoctorOptions()):
        try:
            results.append(check())
        except Exception as exc:  # reported; the other checks go on
            log.debug("doctor: check %s failed", name, exc_info=True)
            results.append(CheckResult(name, Status.FAIL, f"the check could not run: {exc}",
                                       "report this with the output of cocoon-agent doctor"))
    return results


def config_failure(error: Exception) -> list[CheckResult]:
    return [CheckResult("configuration", Status.FAIL, str(error),
                        "fix the file, or run cocoon-agent provision")]


def failed(results: Iterable[CheckResult]) -> bool:
    return any(r.status is Status.FAIL for r in results)


def to_json(results: list[CheckResult]) -> str:
    return json.dumps({"ok": not failed(results),
                       "checks": [r.as_dict() for r in results]}, indent=2)


def to_table(results: list[CheckResult]) -> str:
    """One line per check, then a numbered fix hint for every failure and warning."""
    width = max([len(r.name) for r in results] + [5])
    lines = [f"{'check':{width}}  status  detail", f"{'-' * width}  ------  ------"]
    hints = []
    for r in results:
        mark = r.status.value.upper()
        note = ""
        if r.hint and r.status in (Status.FAIL, Status.WARN):
            hints.append(f"[{len(hints) + 1}] {r.name}: {r.hint}")
            note = f" [{len(hints)}]"
        lines.append(f"{r.name:{width}}  {mark:6}  {r.detail}{note}")
    if hints:
        lines += ["", "To fix:"] + hints
    verdict = "FAILED" if failed(results) else "all checks passed"
    lines += ["", f"{verdict}: {sum(r.status is Status.OK for r in results)} ok, "
              f"{sum(r.status is Status.WARN for r in results)} warning(s), "
              f"{sum(r.status is Status.FAIL for r in results)} failure(s)"]
    return "\n".join(lines)
