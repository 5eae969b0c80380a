"""`cocoon-agent doctor` checks that the clerk's screen answers, with its page, in its language."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from agent.fleet.doctor_checks import Status, check_screen
from agent.screen.config import ScreenConfig
from tests.support.screen_station import start_screen_station

pytest_plugins = ("tests.support.pty",)


def test_a_running_screen_passes_and_a_wrong_language_is_said(site, services, pty_pair,
                                                                tmp_path, virtual_card):
    st = start_screen_station(site, services, pty_pair, tmp_path, virtual_card, language="en")
    port = int(st.url.rstrip("/").rsplit(":", 1)[1])
    ok = check_screen(ScreenConfig("127.0.0.1", port, "en"))
    assert ok.status is Status.OK, ok
    other = check_screen(ScreenConfig("127.0.0.1", port, "zh-CN"))
    assert other.status is Status.WARN and "speaks en" in other.detail


def test_no_screen_or_another_program_on_its_port_fails(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    missing = check_screen(ScreenConfig("127.0.0.1", port, "zh-CN"))   # nothing listens
    assert missing.status is Status.FAIL and "systemctl start cocoon-agent" in missing.hint
    with socket.socket() as sock:                                     # something else does
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        def answer():
            conn, _ = sock.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        other = check_screen(ScreenConfig("127.0.0.1", port, "zh-CN"))
    assert other.status is Status.FAIL and "another program" in other.hint
    assert check_screen(ScreenConfig("127.0.0.1", 0, "en")).status is Status.WARN
