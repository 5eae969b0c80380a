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


def install_requires() -> list[Requirement]:
    """setup.py's install_requires, read from its source (setup.py is not run)."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup":
            for kw in node.keywords:
                if kw.arg == "install_requires":
                    return [Requirement(s) for s in ast.literal_eval(kw.value)]
    raise AssertionError("setup.py has no literal install_requires")


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
