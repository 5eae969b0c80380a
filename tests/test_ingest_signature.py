"""One event, one signature: an ES256 signature with s replaced by n - s verifies too, so the
ingest takes two copies with the same signed bytes as one event, stores the low-s form, and never
lets a malleated copy stored first block the genuine one or the next; a device that announced
low-s signing (in `agent.started`) has its high-s copies refused. On SQLite and PostgreSQL."""

import json

import pytest

from agent.contract import events
from agent.contract.events import Draft
from agent.contract.signing import (
    P256_N,
    ES256Signer,
    Verifier,
    b64url,
    b64url_decode,
    is_high_s,
    low_s,
)
from ingest.store import ACCEPTED, DUPLICATE, REJECTED, IngestStore

DEV = "dev-es"


class Registry:
    def __init__(self, signer, device=DEV):
        self.verifier, self.device = Verifier.from_pem(signer.public_key_pem()), device

    def get(self, device):
        return self.verifier if device == self.device else None


class FieldedSigner:
    """An ES256 key that signs as devices did before low s: here always in the form asked."""

    def __init__(self, inner: ES256Signer, high: bool):
        self.inner, self.high = inner, high
        self.alg, self.kid = inner.alg, inner.kid

    def sign(self, data: bytes) -> bytes:
        return malleate(self.inner.sign(data)) if self.high else self.inner.sign(data)


def malleate(sig: bytes) -> bytes:
    return sig[:32] + (P256_N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")


def other_copy(ev: dict) -> dict:
    """The copy anyone can make of a signed event: s replaced by n - s."""
    return {**ev, "sig": b64url(malleate(b64url_decode(ev["sig"])))}


def chain(signer, n, *, start=1, prev=events.GENESIS_PREV, started: dict | None = None,
          device=DEV):
    out = []
    for seq in range(start, start + n):
        if seq == start and started is not None:
            draft = Draft("agent.started", "telemetry", {"version": "t", **started})
        else:
            draft = Draft("test.x", "money", {"seq": seq})
        ev = events.seal(draft, device=device, seq=seq, prev=prev, signer=signer)
        prev = events.event_hash(ev)
        out.append(ev)
    return out


def msg(ev):
    return (f"cocoon/v1/{ev['device']}/events", json.dumps(ev).encode())


def high(ev) -> bool:
    return is_high_s(b64url_decode(ev["sig"]))


@pytest.fixture
def store(ingest_store_location):
    s = IngestStore(ingest_store_location)
    yield s
    s.close()


def test_the_es256_signer_signs_with_low_s_only():
    signer = ES256Signer.generate()
    verifier = Verifier.from_pem(signer.public_key_pem())
    for i in range(64):       # a random s is high half of the time
        sig = signer.sign(b"x%d" % i)
        assert not is_high_s(sig) and low_s(sig) == sig
        verifier.verify("ES256", signer.kid, b"x%d" % i, sig)
        verifier.verify("ES256", signer.kid, b"x%d" % i, malleate(sig))   # what the ingest meets


@pytest.mark.parametrize("genuine_high", [False, True], ids=["genuine-low-s", "genuine-high-s"])
def test_a_malleated_copy_stored_first_does_not_block_the_genuine_event(store, genuine_high):
    """A fielded device (no low-s announcement) whose seq 2 reaches the bank first as its other
    form: the genuine copy is the same event, the next event chains, the watermark and the ack
    carry the hash the device holds (its last event waits for the next to name its form), and
    the low-s form is what is stored."""
    key = ES256Signer.generate()
    signer, reg = FieldedSigner(key, genuine_high), Registry(key)
    evs = chain(signer, 4, started={})
    assert all(high(e) == genuine_high for e in evs)
    forged = other_copy(evs[1])
    out, _ = store.process_batch([msg(evs[0]), msg(forged)], reg)
    assert [o.status for o in out] == [ACCEPTED, ACCEPTED]
    out, moved = store.process_batch([msg(evs[1])], reg)
    assert [o.status for o in out] == [DUPLICATE]
    # No later event has named a form of seq 2 yet: the ack waits below it (it carries the
    # hash the device holds, and the device would take another for a fork).
    assert store.watermark(DEV) == (1, events.event_hash(evs[0]))
    out, moved = store.process_batch([msg(e) for e in evs[2:]], reg)
    assert [o.status for o in out] == [ACCEPTED, ACCEPTED]
    assert moved[DEV] == (3, events.event_hash(evs[2]))
    assert store.stored_seqs(DEV) == [1, 2, 3, 4]
    assert store.query("SELECT count(*) FROM forks") == [(0,)]
    assert store.query("SELECT count(*) FROM rejections") == [(0,)]
    assert store.open_alerts(DEV) == []
    stored = [json.loads(p) for p in store.payloads(DEV)]
    assert not any(high(e) for e in stored)
    assert [events.encode({**e, "sig": ""}) for e in stored] == [
        events.encode({**e, "sig": ""}) for e in evs]
    # the forged copy again, later, is a duplicate too, and the acks stand
    out, moved = store.process_batch([msg(forged)], reg)
    assert [o.status for o in out] == [DUPLICATE]
    assert store.watermark(DEV) == (3, events.event_hash(evs[2]))


def test_the_next_event_settles_the_form_whichever_order(store):
    """The genuine seq 3 of a fielded device arrives before its seq 2, of which only the
    malleated copy came: seq 3's prev names seq 2's genuine form, which the ack then carries."""
    key = ES256Signer.generate()
    signer, reg = FieldedSigner(key, True), Registry(key)
    evs = chain(signer, 3, started={})
    store.process_batch([msg(evs[0]), msg(evs[2])], reg)
    out, moved = store.process_batch([msg(other_copy(evs[1]))], reg)
    assert [o.status for o in out] == [ACCEPTED]
    assert moved[DEV] == (2, events.event_hash(evs[1]))
    assert store.query("SELECT chain_hash FROM events WHERE device=? AND seq=2", (DEV,)) == [
        (events.event_hash(evs[1]),)]


def test_a_high_s_copy_from_a_device_that_announced_low_s_is_refused(store):
    signer = ES256Signer.generate()
    reg = Registry(signer)
    evs = chain(signer, 4, started={"signature": {"low_s": True}})
    assert not any(high(e) for e in evs)
    out, _ = store.process_batch([msg(evs[0]), msg(other_copy(evs[1]))], reg)
    assert [o.status for o in out] == [ACCEPTED, REJECTED]
    assert "high-s" in out[1].reason
    out, moved = store.process_batch([msg(e) for e in evs[1:]], reg)
    assert [o.status for o in out] == [ACCEPTED] * 3
    assert moved[DEV] == (4, events.event_hash(evs[3]))
    assert store.devices()[0]["rejected"] == 1
    # An upgraded device: its seqs signed before the announcement keep being accepted in
    # either form; its later ones only with low s.
    key, dev = ES256Signer.generate(), "dev-es2"
    before = chain(FieldedSigner(key, True), 2, device=dev)
    after = chain(key, 2, start=3, prev=events.event_hash(before[1]), device=dev,
                  started={"signature": {"low_s": True}})
    out, moved = store.process_batch([msg(after[0]), msg(before[1]), msg(before[0]),
                                      msg(other_copy(after[1]))], Registry(key, dev))
    assert [o.status for o in out] == [ACCEPTED, ACCEPTED, ACCEPTED, REJECTED]
    assert moved[dev] == (3, events.event_hash(after[0]))
