"""Remote configuration: a backend-signed config.set becomes an overlay on trial, confirmed
once the agent is healthy with it, rolled back when it is not; protected keys and invalid
values are refused; every change is an audit event."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from agent.contract.commands import Command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import load_signer
from agent.fleet.remote_config import (
    MAX_ATTEMPTS,
    RESTART_EXIT_CODE,
    ConfigRefused,
    OverlayStore,
    RemoteConfig,
    RestartRequested,
    check_overlay,
    load_effective_config,
    merge,
)
from tests.support.running import BIN, add_device, outbox_events
from tests.support.waiting import wait_for

DEV = "station-07"


def send_config(site, version: int, overlay: dict) -> str:
    proc = subprocess.run(
        [str(BIN / "cocoon-ingest"), "--config", str(site.operator_config), "send-command",
         "--key", str(site.backend_key), "--device", DEV, "--type", "config.set",
         "--body", json.dumps({"version": version, "overlay": overlay, "reason": "test"})],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def bodies(site, type_: str) -> list[dict]:
    return [parse_json_object(r["payload"])["body"] for r in outbox_events(site, DEV)
            if r["type"] == type_]


def stopped_for_restart(running) -> bool:
    return not running.running and running.agent.exit_code == RESTART_EXIT_CODE


def test_a_configuration_is_applied_once_the_agent_is_healthy_with_it(site, services):
    config = add_device(site, DEV, device_section={"config_trial_s": 10})
    first = services.agent(config)
    first.wait_connected()
    command_id = send_config(site, 1, {"device": {"heartbeat_interval_s": 7}})
    wait_for(lambda: stopped_for_restart(first), 15, what="a restart to apply it")
    (changed,) = bodies(site, "config.changed")
    backend_kid = load_signer(site.backend_key).kid
    assert changed["signed_by"] == backend_kid and changed["command_id"] == command_id
    assert changed["changed"] == ["device.heartbeat_interval_s"]
    assert changed["old_hash"] != changed["new_hash"]
    store = OverlayStore(first.config.device.data_dir)
    assert store.load()["pending"]["version"] == 1
    before = config.read_bytes()

    second = services.agent(config)          # what systemd does after exit status 75
    assert second.config.device.heartbeat_interval_s == 7
    wait_for(lambda: bodies(site, "config.applied"), 15, what="config.applied")
    doc = store.load()
    assert doc["pending"] is None and doc["confirmed"]["version"] == 1
    assert doc["confirmed"]["new_hash"] == changed["new_hash"]
    assert config.read_bytes() == before     # the technician's file is never rewritten


def test_a_configuration_the_agent_cannot_connect_with_is_rolled_back(site, services):
    with socket.socket() as probe:               # a port where no broker listens
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = add_device(site, DEV, device_section={"config_trial_s": 1.5})
    first = services.agent(config)
    first.wait_connected()
    send_config(site, 4, {"mqtt": {"port": dead_port}})
    wait_for(lambda: stopped_for_restart(first), 15, what="a restart to apply it")

    trial = services.agent(config)
    assert trial.config.mqtt.port == dead_port
    wait_for(lambda: stopped_for_restart(trial), 15, what="the rollback's restart")
    (rolled,) = bodies(site, "config.rolled_back")
    assert rolled["version"] == 4 and "not connected within 1.5 s" in rolled["reason"]
    assert rolled["restored_version"] == 0

    back = services.agent(config)
    assert back.config.mqtt.port == site.broker.port
    back.wait_connected()
    with pytest.raises(ConfigRefused, match="not newer"):       # version 4 stays spent
        back.agent.remote_config.handle(_cmd(4, {"outbox": {"telemetry_batch_ms": 10}}))


def _cmd(version, overlay, cid="c-1") -> Command:
    return Command(cid, DEV, "config.set", None, None,
                   {"version": version, "overlay": overlay}, "k" * 64)


@pytest.fixture
def remote(site, make_outbox):
    config = load_effective_config(add_device(site, DEV))
    return RemoteConfig(config, make_outbox(device=DEV)), config


@pytest.mark.parametrize("overlay, words", [
    ({"keys": {"bank_public_key_file": "/tmp/evil.pem"}}, r"\[keys\] cannot be changed"),
    ({"device": {"id": "other"}}, r"\[device\] id cannot be changed"),
    ({"mqtt": {"ca_file": "/tmp/ca.pem"}}, r"\[mqtt\] ca_file cannot be changed"),
    ({"outbox": {"telemetry_batch_ms": -5}}, r"telemetry_batch_ms: expected an integer"),
    ({"outbox": {"telemetry_batch": 5}},
     r"\[outbox\] telemetry_batch: unknown key; did you mean telemetry_batch_ms\?"),
    ({"outbox": {}}, "must be a table of keys"),
    ({}, "non-empty overlay"),
])
def test_protected_keys_and_invalid_values_are_refused(remote, overlay, words):
    rc, _ = remote
    with pytest.raises(ConfigRefused, match=words):
        rc.handle(_cmd(1, overlay))
    assert rc.store.load()["pending"] is None and not rc.restart_requested.is_set()


def test_a_key_the_technician_misspelt_does_not_block_the_banks_overlay(remote):
    """The base file's unknown keys are the device's to report (doctor, run); only a key
    the overlay itself brings is refused."""
    rc, config = remote
    config.path.write_text(config.path.read_text().replace(
        "[outbox]\n", "[outbox]\ntelemetry_batch = 7\n"))
    rc.handle(_cmd(1, {"device": {"heartbeat_interval_s": 9}}))
    assert rc.store.load()["pending"]["version"] == 1
    with pytest.raises(ConfigRefused, match=r"\[device\] heartbeat: unknown key"):
        rc.handle(_cmd(2, {"device": {"heartbeat": 9}}))
    effective = load_effective_config(config.path, strict=False)
    assert effective.device.heartbeat_interval_s == 9
    assert [u.key for u in effective.unknown_keys] == ["telemetry_batch"]


def test_a_configuration_that_keeps_failing_to_start_is_rolled_back(remote):
    rc, config = remote
    rc.handle(_cmd(2, {"device": {"heartbeat_interval_s": 9}}))
    for _ in range(MAX_ATTEMPTS):                 # each start that never becomes healthy
        RemoteConfig(load_effective_config(config.path), rc.outbox).begin()
    with pytest.raises(RestartRequested):
        RemoteConfig(load_effective_config(config.path), rc.outbox).begin()
    assert load_effective_config(config.path).device.heartbeat_interval_s == 1.0
    stored = [parse_json_object(s.payload) for s in rc.outbox.pending(100)]
    assert [e["type"] for e in stored] == ["config.changed", "config.rolled_back"]
    assert "did not come up healthy in 2 starts" in stored[-1]["body"]["reason"]


def test_overlays_build_on_the_confirmed_one(remote):
    rc, config = remote
    rc.handle(_cmd(1, {"device": {"heartbeat_interval_s": 9}}))
    rc.confirm()
    rc.handle(_cmd(2, {"outbox": {"telemetry_batch_ms": 50}}, cid="c-2"))
    effective = load_effective_config(config.path)
    assert effective.device.heartbeat_interval_s == 9 and effective.outbox.telemetry_batch_ms == 50
    assert merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}, "b": {"z": 4}}) == {
        "a": {"x": 1, "y": 3}, "b": {"z": 4}}
    assert check_overlay({"scale": {"tare_g": 450}}) == {"scale": {"tare_g": 450}}


# -- through the dispatcher, as commands arrive from the broker ------------------------------

@pytest.fixture
def dispatched(site, remote):
    """The dispatcher as the agent wires it: config.set checked against the backend's key."""
    from agent.contract.commands import BACKEND
    from agent.contract.signing import Verifier
    from agent.spine.dispatcher import Dispatcher

    rc, config = remote
    backend = load_signer(site.backend_key)
    dispatcher = Dispatcher(DEV, rc.outbox, {BACKEND: Verifier.from_pem(
        backend.public_key_pem())})
    dispatcher.register("config.set", rc.handle)
    return dispatcher, rc, backend


def _signed(backend, version: int, overlay: dict, **kw) -> bytes:
    from agent.contract.commands import make_command
    from agent.contract.envelope import canonical

    return canonical(make_command(DEV, "config.set", {"version": version, "overlay": overlay},
                                  backend, **kw))


def _recorded(outbox) -> list[tuple[str, dict]]:
    events = [parse_json_object(s.payload) for s in outbox.pending(1000)]
    return [(e["type"], e["body"]) for e in events]


def _refusal(outbox) -> str:
    ((kind, body),) = [r for r in _recorded(outbox) if r[0] == "command.refused"]
    assert not [r for r in _recorded(outbox) if r[0].startswith("config.")]
    return body["reason"]


def test_an_expired_config_set_is_refused_by_the_dispatcher(dispatched):
    from datetime import datetime, timedelta, timezone

    dispatcher, rc, backend = dispatched
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    stale = _signed(backend, 1, {"device": {"heartbeat_interval_s": 9}}, now=an_hour_ago,
                    expires_in_s=600)
    assert dispatcher.handle(stale) is None
    assert "expired" in _refusal(rc.outbox)
    assert rc.store.load()["pending"] is None and not rc.restart_requested.is_set()


@pytest.mark.parametrize("how, reason", [
    ("empty signature", "signature not from the backend key"),
    ("no signature", "command fields"),
    ("signed by another key", "signature not from the backend key"),
])
def test_an_unsigned_config_set_is_refused_by_the_dispatcher(dispatched, how, reason):
    from agent.contract.envelope import canonical
    from agent.contract.signing import Ed25519Signer

    dispatcher, rc, backend = dispatched
    if how == "signed by another key":
        payload = _signed(Ed25519Signer.generate(), 1, {"device": {"heartbeat_interval_s": 9}})
    else:
        cmd = parse_json_object(_signed(backend, 1, {"device": {"heartbeat_interval_s": 9}}))
        if how == "empty signature":
            cmd["sig"] = ""
        else:
            del cmd["sig"]
        payload = canonical(cmd)
    assert dispatcher.handle(payload) is None
    assert reason in _refusal(rc.outbox)
    assert rc.store.load()["pending"] is None and not rc.restart_requested.is_set()


def test_a_replayed_config_set_is_refused_by_the_dispatcher(dispatched):
    dispatcher, rc, backend = dispatched
    payload = _signed(backend, 1, {"device": {"heartbeat_interval_s": 9}})
    assert dispatcher.handle(payload) is not None
    assert rc.store.load()["pending"]["version"] == 1
    rc.confirm()                                # applied, so the replay is not merely "pending"
    assert dispatcher.handle(payload) is None
    kinds = [kind for kind, _ in _recorded(rc.outbox)]
    assert kinds == ["command.accepted", "config.changed", "command.done", "config.applied",
                     "command.refused"]
    assert "replay" in _recorded(rc.outbox)[-1][1]["reason"]
    assert rc.store.load()["pending"] is None


def test_a_config_set_arriving_while_one_is_pending_supersedes_it_on_record(dispatched):
    dispatcher, rc, backend = dispatched
    first = dispatcher.handle(_signed(backend, 1, {"device": {"heartbeat_interval_s": 9}}))
    second = dispatcher.handle(_signed(backend, 2, {"outbox": {"telemetry_batch_ms": 50}}))
    assert first is not None and second is not None
    recorded = _recorded(rc.outbox)
    changed = [body for kind, body in recorded if kind == "config.changed"]
    (superseded,) = [body for kind, body in recorded if kind == "config.superseded"]
    assert superseded == {"version": 1, "command_id": first.id,
                          "superseded_hash": changed[0]["new_hash"], "by_version": 2,
                          "by_command_id": second.id, "new_hash": changed[1]["new_hash"]}
    assert [kind for kind, _ in recorded].index("config.superseded") < \
        [i for i, (kind, _) in enumerate(recorded) if kind == "config.changed"][1]
    doc = rc.store.load()
    assert doc["pending"]["version"] == 2
    assert {"version": 1, "command_id": first.id, "new_hash": changed[0]["new_hash"],
            "outcome": "superseded"} in doc["history"]
    # the superseded overlay is not part of the new one, and its version stays spent
    effective = load_effective_config(rc.config.path)
    assert effective.device.heartbeat_interval_s == 1.0
    assert effective.outbox.telemetry_batch_ms == 50
    assert dispatcher.handle(_signed(backend, 1, {"device": {"heartbeat_interval_s": 8}})) \
        is not None                              # admitted, then refused by the handler
    assert "not newer" in _recorded(rc.outbox)[-1][1]["reason"]
    # a rollback restores the confirmed configuration (none), not the superseded one
    rc.roll_back("test")
    (rolled,) = [body for kind, body in _recorded(rc.outbox) if kind == "config.rolled_back"]
    assert rolled["restored_hash"] == changed[0]["old_hash"] != superseded["superseded_hash"]
