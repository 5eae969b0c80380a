"""Forged, replayed and misaddressed messages against a real broker: the ingest rejects and
counts bad events, the agent never prunes on a bad ack, and the command dispatcher refuses what
it must, each refusal recorded as a signed `command.refused` event."""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import paho.mqtt.client as mqtt

from agent.contract import events, topics
from agent.contract.acks import make_ack
from agent.contract.chain import check_capture
from agent.contract.commands import make_command
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier, load_signer
from tests.support.mqtt import mqtt_client
from tests.support.running import (
    add_device,
    cli,
    ingest_device,
    ingest_query,
    ingest_rejections,
    ingest_store_payloads,
    ingest_store_rows,
    outbox_events,
)
from tests.support.waiting import wait_for

DEV = "station-01"
OTHER = "station-02"
FAR_SEQ = 100_000  # a seq the device will not reach in a test


class Raw:
    """A plain paho client under one of the Site's identities; records PUBACKs and messages."""

    def __init__(self, client):
        self.client = client
        self.cond = threading.Condition()
        self.pubacks: dict[int, int] = {}
        self.messages: list[tuple[str, bytes]] = []
        client.on_publish = self._on_publish
        client.on_message = self._on_message

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.cond:
            self.pubacks[mid] = reason_code.value
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def publish(self, topic: str, payload: bytes | dict, timeout: float = 5.0) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.pubacks, timeout), "no PUBACK"
            assert self.pubacks[info.mid] < 0x80, f"broker refused: {self.pubacks[info.mid]}"

    def subscribe(self, topic: str) -> None:
        result, _ = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS


@contextmanager
def raw_client(site, cn: str):
    pki = SimpleNamespace(ca=site.ca, clients={cn: site.ca.issue(cn)})
    client = mqtt_client(pki, site.broker, cn)
    try:
        yield Raw(client)
    finally:
        client.disconnect()
        client.loop_stop()


def device_signer(site, device=DEV):
    return load_signer(site.devices[device].parent / "data" / "device-signing.key")


def sealed(site, *, seq: int, prev: str = events.GENESIS_PREV, device: str = DEV, signer=None,
           body: dict | None = None) -> dict:
    draft = Draft("purchase.recorded", "money", body or {"purchase": "forged", "net_g": "1000"})
    return events.seal(draft, device=device, seq=seq, prev=prev,
                       signer=signer or device_signer(site, device))


class ImpostorSigner:
    """Signs with its own key but claims the device's key id."""

    def __init__(self, kid: str):
        self._inner = Ed25519Signer.generate()
        self.alg, self.kid = self._inner.alg, kid

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)


def flip_bit(payload: bytes, needle: bytes) -> bytes:
    """Flip the lowest bit of the first byte of `needle` inside `payload` (stays valid JSON)."""
    at = payload.index(needle)
    return payload[:at] + bytes([payload[at] ^ 0x01]) + payload[at + 1:]


def start_pair(site, services, **device):
    config = add_device(site, DEV, heartbeat_s=30, **device)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    return agent, ingest


def wait_acked(agent, upto, timeout=15.0):
    wait_for(lambda: agent.outbox.acked_seq() >= upto and agent.unacked() == 0, timeout,
             what=f"ack of seq {upto}")


# -- events -------------------------------------------------------------------------------

def test_forged_events_are_rejected_counted_and_never_stored(site, site_store, services):
    add_device(site, OTHER)  # registered with the ingest, never running
    agent, ingest = start_pair(site, services)
    seqs = [agent.append("purchase.recorded", "money", {"n": str(i)}) for i in range(5)]
    wait_acked(agent, max(seqs))
    before = {r["seq"]: r["hash"] for r in ingest_store_rows(site, DEV)}
    accepted_before = ingest_device(site, DEV)["accepted"]
    kid = device_signer(site).kid

    genuine = events.encode(sealed(site, seq=FAR_SEQ, body={"purchase": "p-1", "net_g": "1000"}))
    forgeries = {
        # a valid event of the device with one bit of its body flipped on the way
        "flipped bit": flip_bit(genuine, b"p-1"),
        # signed by some other key (its own key id)
        "wrong key": events.encode(sealed(site, seq=FAR_SEQ + 1,
                                          signer=Ed25519Signer.generate())),
        # signed by some other key that claims the device's key id
        "impostor kid": events.encode(sealed(site, seq=FAR_SEQ + 2,
                                             signer=ImpostorSigner(kid))),
        # a real, stored seq again with other content, correctly chained and signed
        "replayed seq": events.encode(sealed(site, seq=3, prev=before[2],
                                             body={"purchase": "double-spend"})),
        # another registered device's genuine event, sent on this device's topic
        "device mismatch": events.encode(sealed(site, seq=FAR_SEQ, device=OTHER)),
    }
    assert forgeries["flipped bit"] != genuine
    parse_json_object(forgeries["flipped bit"])  # still well-formed: only the signature fails

    with raw_client(site, DEV) as raw:
        for payload in forgeries.values():
            raw.publish(topics.events(DEV), payload)

    # The device's own signature on other content at a stored seq is not a forgery but a
    # fork (an older copy of its outbox): kept as a forked record with an alert, not stored
    # as the event. The four others are rejected.
    wait_for(lambda: ingest.stats["rejected"] >= len(forgeries) - 1, 10,
             what="four rejections")
    rejections = ingest_rejections(site)
    reasons = [r["reason"] for r in rejections]
    assert len(rejections) == len(forgeries) - 1
    assert all(r["device"] == DEV for r in rejections)
    assert sum("bad signature" in r for r in reasons) == 3, reasons
    assert sum(f"event names device '{OTHER}'" in r for r in reasons) == 1, reasons
    assert ingest_device(site, DEV)["rejected"] == len(forgeries) - 1
    forks = ingest_query(site, "SELECT seq, payload FROM forks WHERE device=?", (DEV,))
    assert [(s, parse_json_object(p)["body"]) for s, p in forks] == [
        (3, {"purchase": "double-spend"})]
    assert ingest_device(site, OTHER)["accepted"] == 0

    after = {r["seq"]: r["hash"] for r in ingest_store_rows(site, DEV)}
    assert after == before, "a forged event changed the store"
    assert ingest_device(site, DEV)["accepted"] == accepted_before
    assert not any(s >= FAR_SEQ for s in after)

    # The device's real traffic still flows and the stored chain is intact.
    seq = agent.append("purchase.recorded", "money", {"n": "after"})
    wait_acked(agent, seq)
    report = check_capture(ingest_store_payloads(site, DEV),
                           Verifier.from_file(site.device_public_key(DEV)))
    assert report.ok and report.events == seq, report.problems


# -- acks ---------------------------------------------------------------------------------

def test_forged_and_replayed_acks_prune_nothing(site, services):
    add_device(site, OTHER)
    with raw_client(site, "ingest") as watcher:
        watcher.subscribe(topics.acks(DEV))
        agent, ingest = start_pair(site, services)
        first = agent.append("purchase.recorded", "money", {"n": "1"})
        wait_acked(agent, first)
        second = [agent.append("purchase.recorded", "money", {"n": str(i)}) for i in range(5)]
        wait_acked(agent, max(second))

        def genuine_acks():
            with watcher.cond:
                return [parse_json_object(p) for _, p in watcher.messages]

        old = wait_for(lambda: [a for a in genuine_acks() if a["seq"] < max(second)], 5,
                       what="an early genuine ack")[0]
        watermark = agent.outbox.acked_seq()
        assert old["seq"] < watermark

        ingest.stop()  # nobody acknowledges from here on
        pending = [agent.append("purchase.recorded", "money", {"n": f"p{i}"}) for i in range(5)]
        top = max(pending)
        top_hash = agent.outbox.event_hash(top)
        assert top_hash is not None

        ingest_signer = load_signer(site.ingest_config.parent / "ingest-signing.key")
        kid = ingest_signer.kid
        forged = {
            "wrong key": make_ack(DEV, top, top_hash, Ed25519Signer.generate()),
            "impostor kid": make_ack(DEV, top, top_hash, ImpostorSigner(kid)),
            "replayed old ack": old,
            "another device's ack": make_ack(OTHER, top, top_hash, ingest_signer),
        }
        up = agent.uplink
        refused_before = up.rejected_acks + up.stale_acks
        with raw_client(site, "ingest") as raw:
            for ack in forged.values():
                raw.publish(topics.acks(DEV), ack)
        # the replayed old ack is counted as stale (harmless), the others as rejected
        wait_for(lambda: up.rejected_acks + up.stale_acks >= refused_before + len(forged), 10,
                 what="the agent to refuse the forged and replayed acks")
        assert up.stale_acks >= 1

        assert agent.outbox.acked_seq() == watermark
        assert agent.unacked() == len(pending)
        left = [r["seq"] for r in outbox_events(site, DEV)]
        assert left == pending, "a forged or replayed ack pruned events"

        # The real ingest comes back and the same events are acknowledged properly.
        services.ingest(site.ingest_config).wait_connected()
        wait_acked(agent, top)


# -- commands -----------------------------------------------------------------------------

def command_events(site, kind: str) -> list[dict]:
    out = []
    for row in outbox_events(site, DEV):
        if row["type"] == kind:
            out.append(parse_json_object(row["payload"])["body"])
    return out


def test_commands_are_admitted_or_refused(site, services):
    config = add_device(site, DEV, heartbeat_s=30)
    add_device(site, OTHER)
    agent = services.agent(config, start=False)  # no ingest: the command.* events stay queued
    handled = []
    agent.dispatcher.register("payment.confirmed",
                              lambda cmd: handled.append(cmd.id) or {"confirmed": cmd.body})
    agent.start()
    agent.wait_connected()

    # A valid command through the operator's CLI.
    sent = cli("cocoon-ingest", "--config", site.operator_config, "send-command",
               "--key", site.bank_key, "--device", DEV, "--type", "payment.confirmed",
               "--body", json.dumps({"purchase": f"{DEV}/1"}), "--expires", "600")
    assert sent.returncode == 0, sent.stderr
    cli_id = sent.stdout.strip()
    wait_for(lambda: cli_id in handled, 10, what="the CLI's command to be handled")

    bank = load_signer(site.bank_key)
    backend = load_signer(site.backend_key)
    body = {"purchase": f"{DEV}/2"}
    now = datetime.now(timezone.utc)
    valid = make_command(DEV, "payment.confirmed", body, bank)
    tampered = dict(make_command(DEV, "payment.confirmed", body, bank), body={"purchase": "x"})
    refused = {
        "expired": make_command(DEV, "payment.confirmed", body, bank, expires_in_s=60,
                                now=now - timedelta(hours=2)),
        "replayed": valid,  # the same command a second time
        "backend key for a bank type": make_command(DEV, "payment.confirmed", body, backend),
        "for another device": make_command(OTHER, "payment.confirmed", body, bank),
        "tampered": tampered,
    }
    expected_reason = {
        "expired": "expired",
        "replayed": "replay",
        "backend key for a bank type": "signature not from the bank key",
        "for another device": f"command is for device '{OTHER}'",
        "tampered": "signature not from the bank key",
    }
    with raw_client(site, "operator") as op:
        op.publish(topics.commands(DEV), valid)
        wait_for(lambda: valid["id"] in handled, 10, what="the valid command to be handled")
        for cmd in refused.values():
            op.publish(topics.commands(DEV), cmd)
        op.publish(topics.commands(DEV), b"not json at all")

    wait_for(lambda: len(command_events(site, "command.refused")) >= len(refused) + 1, 10,
             what="a command.refused event per bad command")
    refusals = command_events(site, "command.refused")
    assert len(refusals) == len(refused) + 1
    by_id: dict[str, list[str]] = {}
    for r in refusals:
        by_id.setdefault(r.get("id"), []).append(r["reason"])
    for name, cmd in refused.items():
        reasons = by_id.get(cmd["id"], [])
        assert any(expected_reason[name] in r for r in reasons), (name, reasons)
    assert by_id[None] and "not valid JSON" in by_id[None][0]

    accepted = command_events(site, "command.accepted")
    assert sorted(a["id"] for a in accepted) == sorted([cli_id, valid["id"]])
    assert handled == [cli_id, valid["id"]], "a refused command reached the handler"
    done = command_events(site, "command.done")
    assert sorted(d["id"] for d in done) == sorted(handled)
    # Every one of these events is signed by the device, like any other.
    verifier = Verifier.from_file(site.device_public_key(DEV))
    for row in outbox_events(site, DEV):
        events.verify(parse_json_object(row["payload"]), verifier)


def test_command_replay_is_refused_across_an_agent_restart(site, services):
    config = add_device(site, DEV, heartbeat_s=30)

    def start():
        agent = services.agent(config, start=False)
        agent.dispatcher.register("payment.confirmed", lambda cmd: {"ok": True})
        agent.start()
        agent.wait_connected()
        return agent

    agent = start()
    cmd = make_command(DEV, "payment.confirmed", {"purchase": "p"}, load_signer(site.bank_key),
                       command_id=f"once-{uuid.uuid4()}")
    with raw_client(site, "operator") as op:
        op.publish(topics.commands(DEV), cmd)
        wait_for(lambda: command_events(site, "command.accepted"), 10, what="acceptance")
        agent.stop()
        start()
        op.publish(topics.commands(DEV), cmd)
        wait_for(lambda: command_events(site, "command.refused"), 10, what="the refusal")
    [refusal] = command_events(site, "command.refused")
    assert refusal["id"] == cmd["id"] and "replay" in refusal["reason"]
    assert len(command_events(site, "command.accepted")) == 1


def test_a_crashing_handler_does_not_stop_later_commands(site, services):
    config = add_device(site, DEV, heartbeat_s=30)
    agent = services.agent(config, start=False)
    calls = []

    def handler(cmd):
        calls.append(cmd.id)
        if cmd.body.get("boom"):
            raise ValueError("integrator bug")  # not a CocoonError
        return {"ok": True}

    agent.dispatcher.register("payment.confirmed", handler)
    agent.start()
    agent.wait_connected()
    bank = load_signer(site.bank_key)
    bad = make_command(DEV, "payment.confirmed", {"boom": True}, bank)
    good = make_command(DEV, "payment.confirmed", {"purchase": "p"}, bank)
    with raw_client(site, "operator") as op:
        op.publish(topics.commands(DEV), bad)
        op.publish(topics.commands(DEV), good)
        wait_for(lambda: good["id"] in calls, 10, what="the command after the crash")
    failed = wait_for(lambda: command_events(site, "command.failed"), 10,
                      what="a command.failed event")
    assert failed[0]["id"] == bad["id"] and "integrator bug" in failed[0]["reason"]
    wait_for(lambda: [d["id"] for d in command_events(site, "command.done")] == [good["id"]],
             10, what="command.done for the good command")
