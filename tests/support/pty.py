"""A socat pty pair for serial-device tests, and the `pty_pair` fixture.

socat links two pseudo-terminals: the driver opens `device` with pyserial exactly as it would
open /dev/ttyUSB0, and a simulator writes frames on `peer`. `unplug()` kills this pair's socat
(by its own pid, nothing else), which makes the device vanish as an unplugged USB adapter does:
reads fail, the path disappears. `plug()` brings it back under the same path.

Use in a test module with `pytest_plugins = ("tests.support.pty",)` and a `pty_pair` argument.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .waiting import wait_for


class PtyPair:
    def __init__(self, directory: Path, name: str = "scale"):
        self.device = Path(directory) / f"{name}-device"
        self.peer = Path(directory) / f"{name}-peer"
        self.log = Path(directory) / f"{name}-socat.log"
        self.proc: subprocess.Popen | None = None

    @property
    def plugged(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def plug(self, timeout: float = 5.0) -> PtyPair:
        """Start socat and wait until both links exist."""
        if self.plugged:
            return self
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["socat", "-d", "-d", f"pty,raw,echo=0,link={self.peer}",
                 f"pty,raw,echo=0,link={self.device}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"socat exited with {self.proc.returncode}: "
                                     f"{self.log.read_text(errors='replace')}")
            return self.device.exists() and self.peer.exists()

        wait_for(ready, timeout, what=f"socat links {self.device.name}, {self.peer.name}")
        return self

    def unplug(self, timeout: float = 5.0) -> None:
        """Kill this pair's socat and wait until its links are gone."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout)
            self.proc = None
        wait_for(lambda: not self.device.is_symlink() and not self.peer.is_symlink(), timeout,
                 what="socat links removed")

    close = unplug


@pytest.fixture
def pty_pair(tmp_path):
    """A plugged PtyPair in tmp_path; its socat (and only it) is killed at teardown."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install -y socat; scripts/bootstrap "
                    "installs it)")
    pair = PtyPair(tmp_path).plug()
    try:
        yield pair
    finally:
        pair.close()
