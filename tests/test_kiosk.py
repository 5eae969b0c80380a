"""The kiosk's user unit: systemd accepts it, it waits for the agent's screen, and it starts the
browser (chromium or chromium-browser) in kiosk mode on the screen's address."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "cocoon-kiosk.service"


def service() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


def shell(command: str, env: dict) -> subprocess.CompletedProcess:
    """Run an Exec line as systemd would: its $$ are single $ for the shell it starts."""
    argv0, _, script = command.partition(" -c ")
    script = script.strip().removeprefix("'").removesuffix("'").replace("'\"'\"'", "'")
    return subprocess.run([argv0, "-c", script.replace("$$", "$")], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_accepts_the_kiosk_unit(tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(["systemd-analyze", "verify", "--user", str(UNIT)],
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("browser", ["chromium", "chromium-browser"])
def test_it_waits_for_the_screen_then_starts_the_browser_in_kiosk_mode(tmp_path, browser):
    svc = service()
    assert svc["Restart"] == "always"
    with socket.socket() as listener:                  # the agent's screen, answering
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        fake = tmp_path / "bin" / browser                # a browser that says how it was called
        fake.parent.mkdir()
        fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\n")
        fake.chmod(0o755)
        for tool in ("seq", "sleep"):                    # and nothing else on the PATH
            (fake.parent / tool).symlink_to(shutil.which(tool))
        env = {"PATH": str(fake.parent), "COCOON_SCREEN_PORT": str(port)}
        waited = shell(svc["ExecStartPre"], env)
        assert waited.returncode == 0, waited.stderr
        started = shell(svc["ExecStart"], env)
    assert started.returncode == 0, started.stderr
    args = (tmp_path / "args").read_text().split()
    assert "--kiosk" in args and args[-1] == f"http://127.0.0.1:{port}/"
    assert "--disk-cache-dir=/dev/null" in args
