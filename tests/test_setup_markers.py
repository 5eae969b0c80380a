"""The GPIO backends install only on a Raspberry Pi, and nothing imports them at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
PI_ONLY = {"rpi-gpio", "lgpio"}
PI_MACHINES = ["aarch64", "armv7l", "armv6l"]   # 64-bit, 32-bit (Pi 2-5), Pi 1 / Zero
OTHER_MACHINES = ["x86_64", "AMD64", "i686", "arm64", "riscv64", "armv8l", ""]


def requirement_list(name: str) -> list[Requirement]:
    """A module-level list of requirements in setup.py (SHARED, DEVICE), read from its source
    (setup.py is not run)."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return [Requirement(s) for s in ast.literal_eval(node.value)]
    raise AssertionError(f"setup.py has no literal {name}")


def install_requires() -> list[Requirement]:
    """What a device installs: what both roles share and the `device` extra."""
    return requirement_list("SHARED") + requirement_list("DEVICE")


def installed_on(machine: str) -> set[str]:
    env = {"platform_machine": machine, "sys_platform": "linux", "platform_system": "Linux"}
    return {r.name.lower().replace(".", "-").replace("_", "-") for r in install_requires()
            if r.marker is None or r.marker.evaluate(env)}


@pytest.mark.parametrize("machine", PI_MACHINES)
def test_a_raspberry_pi_gets_both_pin_backends(machine):
    assert installed_on(machine) >= PI_ONLY


@pytest.mark.parametrize("machine", OTHER_MACHINES)
def test_other_machines_get_neither(machine):
    assert not PI_ONLY & installed_on(machine)


def test_only_the_pin_backends_depend_on_the_machine():
    marked = {r.name for r in install_requires() if r.marker is not None}
    assert {n.lower().replace(".", "-") for n in marked} == PI_ONLY
    everywhere = installed_on("x86_64")
    assert {"gpiozero", "tzdata", "pyscard"} <= everywhere


HARDWARE = {"pyserial", "python-escpos", "gpiozero", "smbus2", "sllurp", "cobs", "crc",
            "pyscard", "rpi-gpio", "lgpio"}


def metadata(tmp_path, role: str) -> dict[str, set[str]]:
    """The requirements pip would see, section by section ("" for install_requires), from
    the metadata setup.py writes for `role` (COCOON_AGENT_ROLE)."""
    import os

    env = {**os.environ, "COCOON_AGENT_ROLE": role}
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
    sections, current = {"": set()}, ""
    requires = next(tmp_path.glob("*.egg-info")) / "requires.txt"
    for line in requires.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]").split(":")[0]
            sections.setdefault(current, set())
        elif line.strip():
            name = Requirement(line).name.lower().replace(".", "-").replace("_", "-")
            sections[current].add(name)
    return sections


def test_the_banks_side_gets_no_hardware_library(tmp_path):
    sections = metadata(tmp_path, "ingest")
    assert not HARDWARE & (sections[""] | sections.get("ingest", set()))
    assert {"paho-mqtt", "cryptography", "click"} <= sections[""]
    assert HARDWARE - {"rpi-gpio", "lgpio"} <= sections["device"]
    assert HARDWARE - {"rpi-gpio", "lgpio"} <= sections["test"]


def test_a_fielded_device_updated_by_an_older_agent_keeps_its_hardware_libraries(tmp_path):
    """An agent from before the `device` extra installs a new release with a plain
    `pip install`: on a device, the release still asks for the hardware libraries."""
    assert HARDWARE - {"rpi-gpio", "lgpio"} <= metadata(tmp_path, "device")[""]


# Run in a fresh interpreter: RPi and lgpio cannot be imported there, and every attempt to
# import them is recorded. Importing the GPIO drivers (and the station and warehouse parts that
# use them) must make no attempt; building mock pins must not either.
PROBE = r"""
import sys
attempts = []

class NoPiBackends:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("RPi", "lgpio"):
            attempts.append(name)
            raise ImportError(f"{name} is not importable here")
        return None

sys.meta_path.insert(0, NoPiBackends())
import drivers.signals
import agent.warehouse.pins
import agent.station.part
assert attempts == [], attempts
assert not any(m.split(".")[0] in ("RPi", "lgpio") for m in sys.modules)

from drivers.signals import SignalPins, Signals
sig = Signals(SignalPins(17, 27, "mock"))
sig.beep("accept")
sig.close()
assert attempts == [], attempts
try:
    drivers.signals.make_factory("rpigpio")
except drivers.signals.SignalError as exc:
    print("rpigpio:", exc)
print("attempts:", attempts)
"""


def test_the_gpio_drivers_do_not_import_rpi_gpio_at_import_time():
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    # the probe is not blind: asking for the RPi.GPIO backend does try to import it, and the
    # refusal is a clear SignalError
    assert "rpigpio: GPIO backend 'rpigpio' is not usable here" in run.stdout
    assert "attempts: ['RPi']" in run.stdout
