"""A command is durable on the device before the broker is told it was received.

The link process receives a signed command and hands it to the agent, which records
`command.accepted`. Here the agent is frozen (SIGSTOP) before it can record anything, and then
killed, as a power cut or the OOM killer would. The broker must not have been told that the
command was received: when the agent starts again, the broker sends it again (the device's
MQTT session persists), and it is accepted and handled exactly once.
"""

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone

from agent.contract.envelope import parse_json_object
from tests.support.running import BIN, add_device, outbox_events
from tests.support.running import cli as run_cli
from tests.support.waiting import wait_for

DEV = "dev-a"


def accepted(site) -> list[dict]:
    return [parse_json_object(r["payload"])["body"] for r in outbox_events(site, DEV)
            if r["type"] == "command.accepted"]


def start_agent(config) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "cocoon-agent"), "--config", str(config), "run"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def connected(site) -> bool:
    return any(r["type"] == "agent.started" for r in outbox_events(site, DEV))


def test_a_command_received_while_the_agent_dies_is_sent_again(site):
    config = add_device(site, DEV, heartbeat_s=60)
    agent = start_agent(config)
    try:
        wait_for(lambda: connected(site), 30, what="the agent up")
        link_child = wait_for(lambda: _child_of(agent.pid), 30, what="the link process")
        wait_for(lambda: _has_connection(site, link_child), 30, what="the link connected")
        os.kill(agent.pid, signal.SIGSTOP)              # it can no longer record anything
        utc = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        sent = run_cli("cocoon-ingest", "--config", site.operator_config, "send-command",
                       "--key", site.backend_key, "--device", DEV, "--type", "time.hint",
                       "--body", json.dumps({"utc": utc}), "--expires", "600")
        assert sent.returncode == 0, sent.stderr
        command_id = sent.stdout.strip()
        # the link process reads while the agent is frozen: the broker delivers at once (its
        # log shows no deliveries below the debug level, which is too much for the suite)
        time.sleep(2)
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(30)
        wait_for(lambda: _child_of(agent.pid) is None, 30, what="the link process gone")
        assert [c["id"] for c in accepted(site)] == []    # nothing was recorded

        agent = start_agent(config)                       # the broker sends it again
        wait_for(lambda: [c["id"] for c in accepted(site)] == [command_id], 30,
                 what="the command accepted after the restart")
        wait_for(lambda: any(r["type"] == "clock.hint" for r in outbox_events(site, DEV)), 10,
                 what="the command handled")
        assert [c["id"] for c in accepted(site)] == [command_id]
    finally:
        if agent.poll() is None:
            os.kill(agent.pid, signal.SIGCONT)
            agent.terminate()
        agent.communicate(timeout=30)


def _child_of(pid: int) -> int | None:
    """The link process the agent started (its child running agent.link.child)."""
    try:
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)],
                             capture_output=True, text=True).stdout
    except OSError:
        return None
    for line in out.splitlines():
        child, _, args = line.strip().partition(" ")
        if "agent.link.child" in args:
            return int(child)
    return None


def _has_connection(site, pid: int) -> bool:
    log = site.broker.workdir / "mosquitto.log"
    return log.exists() and f"as {DEV}" in log.read_text(errors="replace")
