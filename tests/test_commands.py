"""The command dispatcher without a broker: who may sign what, expiry, replay, addressing."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from agent.contract.commands import BACKEND, BANK, make_command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import Ed25519Signer, ES256Signer, Verifier
from agent.errors import CommandRejected
from agent.spine.dispatcher import Dispatcher

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def keys():
    return {"bank": Ed25519Signer.generate(), "backend": ES256Signer.generate()}


@pytest.fixture
def setup(make_outbox, keys):
    outbox = make_outbox()
    handled = []
    disp = Dispatcher("dev-a", outbox, {
        BANK: Verifier.from_pem(keys["bank"].public_key_pem()),
        BACKEND: Verifier.from_pem(keys["backend"].public_key_pem()),
    }, now=lambda: NOW)
    disp.register("payment.confirmed", lambda cmd: handled.append(cmd) or {"ok": True})
    disp.register("time.hint", lambda cmd: None)
    return disp, outbox, handled


def recorded(outbox):
    return [(e["type"], e["body"]) for e in
            (parse_json_object(s.payload) for s in outbox.pending(1000))]


def raw(cmd):
    return json.dumps(cmd).encode()


def test_valid_command_is_accepted_handled_and_recorded(setup, keys):
    disp, outbox, handled = setup
    cmd = make_command("dev-a", "payment.confirmed", {"purchase": "x"}, keys["bank"], now=NOW)
    assert disp.handle(raw(cmd)).id == cmd["id"]
    assert handled and handled[0].body == {"purchase": "x"}
    kinds = [t for t, _ in recorded(outbox)]
    assert kinds == ["command.accepted", "command.done"]


@pytest.mark.parametrize("case,reason", [
    ("expired", "expired"),
    ("future", "future"),
    ("other_device", "for device"),
    ("wrong_role", "bank key"),
    ("unknown_type", "unknown command type"),
    ("no_handler", "no handler"),
    ("tampered", "signature"),
    ("malformed", "command"),
])
def test_refusals_are_recorded_with_a_reason(setup, keys, case, reason):
    disp, outbox, handled = setup
    def make(**kw):
        return make_command(kw.pop("device", "dev-a"), kw.pop("type_", "payment.confirmed"),
                            {"p": 1}, kw.pop("signer", keys["bank"]), now=kw.pop("now", NOW), **kw)

    payload = {
        "expired": lambda: raw(make(now=NOW - timedelta(hours=2), expires_in_s=60)),
        "future": lambda: raw(make(now=NOW + timedelta(hours=1))),
        "other_device": lambda: raw(make(device="dev-b")),
        "wrong_role": lambda: raw(make(signer=keys["backend"])),
        "unknown_type": lambda: raw({**make(), "type": "money.print"}),
        "no_handler": lambda: raw(make(type_="pledge.create")),
        "tampered": lambda: raw({**make(), "body": {"p": 2}}),
        "malformed": lambda: b'{"v": 1, "id": "x"}',
    }[case]()
    assert disp.handle(payload) is None
    assert not handled
    (kind, body), = recorded(outbox)
    assert kind == "command.refused" and reason in body["reason"], body


def test_replay_is_refused_even_after_reopening(setup, keys, make_outbox):
    disp, outbox, handled = setup
    cmd = make_command("dev-a", "time.hint", {"utc": "x"}, keys["backend"], now=NOW)
    assert disp.handle(raw(cmd)) is not None
    assert disp.handle(raw(cmd)) is None
    assert recorded(outbox)[-1][0] == "command.refused"
    assert "replay" in recorded(outbox)[-1][1]["reason"]
    fresh = Dispatcher("dev-a", make_outbox(), disp.verifiers, now=lambda: NOW)
    fresh.register("time.hint", lambda cmd: None)
    assert fresh.handle(raw(cmd)) is None  # the seen id is durable


def test_a_missing_key_refuses_that_role(make_outbox, keys):
    disp = Dispatcher("dev-a", make_outbox(), {BANK: None, BACKEND: None}, now=lambda: NOW)
    disp.register("payment.confirmed", lambda cmd: None)
    cmd = make_command("dev-a", "payment.confirmed", {}, keys["bank"], now=NOW)
    assert disp.handle(raw(cmd)) is None
    with pytest.raises(ValueError):
        disp.register("not.a.type", lambda cmd: None)
    assert issubclass(CommandRejected, Exception)
