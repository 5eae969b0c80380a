"""A simulated field box on a socat pty pair, and the agent's Bridge on the other end.

    pytest_plugins = ("tests.support.pty", "tests.support.coprocessor")

    def test_x(field_box):
        box, bridge = field_box(firmware="1.0.0")
        bridge.wait_online()

The simulator (`firmware_bridge.simulator.Coprocessor`) opens the pty's peer end as a box's
UART would be wired; the Bridge opens the device end exactly as it opens /dev/ttyAMA0.
Everything started here is stopped at teardown, socat by its own pid.
"""

from __future__ import annotations

import shutil

import pytest

from firmware_bridge.bridge import Bridge
from firmware_bridge.simulator import Coprocessor

from .pty import PtyPair


class FieldBox:
    def __init__(self, pair: PtyPair):
        self.pair = pair
        self.boxes: list[Coprocessor] = []
        self.bridges: list[Bridge] = []

    def __call__(self, *, bridge: bool = True, start_bridge: bool = True, **box_options):
        box = Coprocessor(str(self.pair.peer), **box_options).start()
        self.boxes.append(box)
        if not bridge:
            return box, None
        agent = self.bridge()
        if start_bridge:
            agent.start()
        return box, agent

    def bridge(self, **options) -> Bridge:
        options = {"heartbeat_timeout_s": 3.0, "backoff_initial": 0.05, "backoff_max": 0.5,
                   **options}
        agent = Bridge(str(self.pair.device), **options)
        self.bridges.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.bridges:
            agent.stop()
        for box in self.boxes:
            box.stop()
        self.pair.close()


@pytest.fixture
def field_box(tmp_path):
    """Call it to start a simulated box (keyword arguments go to Coprocessor) and a Bridge."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (scripts/bootstrap installs it)")
    made = FieldBox(PtyPair(tmp_path, "fieldbox").plug())
    try:
        yield made
    finally:
        made.close()
