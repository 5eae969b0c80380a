"""The systemd unit and the notify protocol (READY, WATCHDOG only on progress, STOPPING)."""

import configparser
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from agent.ops.sdnotify import Notifier, Watchdog, watchdog_interval_s
from tests.support.waiting import wait_for

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "cocoon-agent.service"


class NotifySocket:
    """A fake $NOTIFY_SOCKET: a datagram socket collecting what the service says."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self):
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def lines(self):
        return [line for m in list(self.messages) for line in m.splitlines()]

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    ns = NotifySocket(tmp_path / "notify")
    yield ns
    ns.close()


def test_notifier_sends_ready_status_and_stopping(notify_socket):
    n = Notifier(notify_socket.path)
    assert n.ready("device st-1") and n.stopping()
    wait_for(lambda: "STOPPING=1" in notify_socket.lines(), 2)
    assert notify_socket.lines()[:2] == ["READY=1", "STATUS=device st-1"]
    assert not Notifier("").notify("READY=1")  # no socket: a no-op, never an error


def test_watchdog_pings_only_while_the_loop_moves(notify_socket):
    counter = {"n": 0}
    stop = threading.Event()
    interval = 0.05
    dog = Watchdog(Notifier(notify_socket.path), interval, lambda: counter["n"])

    def move():  # a main loop that works for a while, then gets stuck
        for _ in range(30):
            counter["n"] += 1
            stop.wait(0.01)

    def pings() -> int:  # what systemd would have received
        return notify_socket.lines().count("WATCHDOG=1")

    mover = threading.Thread(target=move)
    mover.start()
    dog.start(stop)
    wait_for(lambda: pings() >= 3, 3, what="WATCHDOG=1 datagrams while the loop moves")
    mover.join()
    stop.wait(3 * interval)        # the tick after the last move may still ping, and arrive
    stuck = pings()
    stop.wait(10 * interval)       # ten intervals with the loop stuck
    assert pings() == stuck, "a WATCHDOG=1 datagram was sent while the loop was stuck"
    stop.set()


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 30
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval_s() is None


def unit_directives():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_unit_directives():
    unit = unit_directives()
    svc = unit["Service"]
    assert svc["Type"] == "notify" and int(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "on-failure" and svc["User"] == "cocoon"
    assert svc["DevicePolicy"] == "closed" and "PrivateDevices" not in svc
    text = UNIT.read_text()
    for device in ("ttyUSB", "ttyAMA", "gpiochip", "i2c"):
        assert re.search(rf"^DeviceAllow=char-{device} rw$", text, re.M)
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "StateDirectory"):
        assert key in svc


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_exposure_is_at_most_2_5():
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True, timeout=60, check=False).stdout
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert level <= 2.5, out[-2000:]


def test_the_agent_says_ready_and_pings_while_running(tmp_path, notify_socket, monkeypatch):
    from agent.config import load_config
    from agent.demo.sandbox import Site
    from agent.ops.service import Agent

    site = Site.create(tmp_path / "site")
    config = site.add_device("dev-a", mqtt={"reconnect_min_s": 0.05, "reconnect_max_s": 0.2})
    site.start_broker()
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    agent = Agent(load_config(config))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop, Notifier(notify_socket.path)))
    thread.start()
    try:
        wait_for(lambda: notify_socket.lines().count("WATCHDOG=1") >= 2, 10, what="pings")
        assert notify_socket.lines()[0] == "READY=1"
    finally:
        stop.set()
        thread.join(10)
        site.broker.stop()
    wait_for(lambda: "STOPPING=1" in notify_socket.lines(), 2)


def test_an_agent_whose_link_stops_turning_gets_no_watchdog_pings(tmp_path, notify_socket,
                                                                  monkeypatch):
    """The agent's progress is its link's loop and its outbox: with the link process frozen
    (SIGSTOP: a hung child) and nothing appended, systemd hears no WATCHDOG=1, and the pings
    come back once the link turns again."""
    import os
    import signal

    from agent.config import load_config
    from agent.demo.sandbox import Site
    from agent.link.process import LinkProcess
    from agent.ops.service import Agent

    site = Site.create(tmp_path / "site")
    config = site.add_device("dev-b", device={"heartbeat_interval_s": 3600},
                             mqtt={"reconnect_min_s": 0.05, "reconnect_max_s": 0.2})
    site.start_broker()
    # an interval above the link process's status period (0.5 s), so a healthy link moves
    # between any two ticks
    monkeypatch.setenv("WATCHDOG_USEC", "1200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    agent = Agent(load_config(config))
    assert isinstance(agent.link, LinkProcess)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop, Notifier(notify_socket.path)))
    thread.start()

    def pings() -> int:
        return notify_socket.lines().count("WATCHDOG=1")

    child = None
    try:
        wait_for(lambda: agent.link.status.connected, 10, what="the link connected")
        wait_for(lambda: pings() >= 2, 10, what="pings while the link turns")
        child = agent.link.pid
        os.kill(child, signal.SIGSTOP)
        stop.wait(2.5)             # reports already in the pipe, and the tick after them
        loops, head = agent.progress()
        stuck = pings()
        stop.wait(4.0)             # more than three watchdog intervals
        assert agent.progress() == (loops, head)
        assert pings() == stuck, "WATCHDOG=1 sent while the agent's link was stuck"
        os.kill(child, signal.SIGCONT)
        child = None
        wait_for(lambda: pings() > stuck, 10, what="pings once the link turns again")
    finally:
        if child is not None:
            os.kill(child, signal.SIGCONT)
        stop.set()
        thread.join(30)
        site.broker.stop()
    assert not thread.is_alive()
