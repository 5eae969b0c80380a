"""The ingest's store without a broker: idempotence, any order, chain checks, watermark; each
test on SQLite and on PostgreSQL."""

import json
import random
import threading

import pytest

from agent.contract import events
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier
from ingest.store import ACCEPTED, DUPLICATE, FORKED, REJECTED, IngestStore


class Registry:
    def __init__(self, **keys):
        self.keys = {d: Verifier.from_pem(s.public_key_pem()) for d, s in keys.items()}

    def get(self, device):
        return self.keys.get(device)


def chain(signer, n, device="dev-a", start=1, prev=events.GENESIS_PREV, types=None):
    out = []
    for seq in range(start, start + n):
        ev = events.seal(Draft((types or {}).get(seq, "test.x"), "money", {"seq": seq}),
                         device=device, seq=seq, prev=prev, signer=signer)
        prev = events.event_hash(ev)
        out.append(ev)
    return out


def msg(ev, device=None):
    return (f"cocoon/v1/{device or ev['device']}/events", json.dumps(ev).encode())


@pytest.fixture
def store(ingest_store_location):
    s = IngestStore(ingest_store_location)
    yield s
    s.close()


def test_any_order_is_stored_once_and_the_watermark_follows(store):
    signer = Ed25519Signer.generate()
    reg = Registry(**{"dev-a": signer})
    evs = chain(signer, 30)
    shuffled = evs[:]
    random.Random(4).shuffle(shuffled)
    first, second = shuffled[:15], shuffled[15:]
    out1, _ = store.process_batch([msg(e) for e in first], reg)
    assert all(o.status == ACCEPTED for o in out1)
    out2, moved = store.process_batch([msg(e) for e in second + first[:3]], reg)
    assert [o.status for o in out2].count(DUPLICATE) == 3
    assert moved["dev-a"] == (30, events.event_hash(evs[-1]))
    assert store.stored_seqs("dev-a") == list(range(1, 31))


def test_watermark_stops_at_the_first_hole(store):
    signer = Ed25519Signer.generate()
    reg = Registry(**{"dev-a": signer})
    evs = chain(signer, 10)
    _, moved = store.process_batch([msg(e) for e in evs[:4] + evs[5:]], reg)
    assert moved["dev-a"][0] == 4
    _, moved = store.process_batch([msg(evs[4])], reg)
    assert moved["dev-a"][0] == 10


def test_declared_skips_close_the_gap_and_are_chain_checked(store):
    signer = Ed25519Signer.generate()
    reg = Registry(**{"dev-a": signer})
    evs = chain(signer, 6)  # 1..6; pretend 3..4 were evicted
    decl = events.seal(Draft("seq.skipped", "alert", {"reason": "telemetry-evicted", "ranges": [
        {"from": 3, "to": 4, "last_hash": events.event_hash(evs[3])}]}),
        device="dev-a", seq=7, prev=events.event_hash(evs[5]), signer=signer)
    out, moved = store.process_batch([msg(e) for e in evs[:2] + evs[4:]] + [msg(decl)], reg)
    assert all(o.status == ACCEPTED for o in out)
    assert moved["dev-a"] == (7, events.event_hash(decl))
    # a declaration whose hash does not match the stored follower is refused
    liar = events.seal(Draft("seq.skipped", "alert", {"reason": "x", "ranges": [
        {"from": 3, "to": 4, "last_hash": "f" * 64}]}),
        device="dev-a", seq=8, prev=events.event_hash(decl), signer=signer)
    out, _ = store.process_batch([msg(liar)], reg)
    assert out[0].status == REJECTED and "declared hash" in out[0].reason


def test_forgeries_are_rejected_and_counted(store):
    signer, other = Ed25519Signer.generate(), Ed25519Signer.generate()
    reg = Registry(**{"dev-a": signer, "dev-b": other})
    evs = chain(signer, 3)
    store.process_batch([msg(e) for e in evs], reg)
    flipped = json.loads(json.dumps(evs[1]))
    flipped["body"]["seq"] = 99
    wrong_key = chain(other, 4, device="dev-a")[3]
    replay = events.seal(Draft("test.x", "money", {"replayed": True}), device="dev-a", seq=2,
                         prev=events.event_hash(evs[0]), signer=signer)
    bad_link = events.seal(Draft("test.x", "money", {}), device="dev-a", seq=4,
                           prev="e" * 64, signer=signer)
    cases = [
        (msg(flipped), "bad signature"),
        (msg(wrong_key), "bad signature"),
        (msg(bad_link), "out of chain"),
        (msg(evs[0], device="dev-b"), "came on the topic"),
        (msg(chain(other, 1, device="dev-z")[0]), "unknown device"),
        (("cocoon/v1/dev-a/events", b"{not json"), "malformed"),
        (("cocoon/v1/dev-a/events", b'{"v": 1}'), "malformed"),
    ]
    out, _ = store.process_batch([m for m, _ in cases], reg)
    for (_, reason), outcome in zip(cases, out, strict=True):
        assert outcome.status == REJECTED and reason in outcome.reason, outcome
    # validly signed by the device, at a stored seq: a forked record, kept with an alert,
    # and the stored event unchanged
    (forked,), _ = store.process_batch([msg(replay)], reg)
    assert forked.status == FORKED and "other content" in forked.reason
    assert store.query("SELECT seq, hash FROM forks") == [
        (2, events.event_hash(replay))]
    assert [a["kind"] for a in store.open_alerts("dev-a")] == ["chain.forked"]
    assert store.query("SELECT hash FROM events WHERE device = 'dev-a' AND seq = 2"
                       ) == [(events.event_hash(evs[1]),)]
    assert store.stored_seqs("dev-a") == [1, 2, 3]
    dev = {d["device"]: d for d in store.devices()}
    assert dev["dev-a"]["rejected"] >= 5              # a fork is not a rejection
    assert store.query("SELECT count(*) FROM rejections") == [(len(cases),)]


def test_a_later_event_must_chain_to_an_earlier_stored_one(store):
    signer = Ed25519Signer.generate()
    reg = Registry(**{"dev-a": signer})
    evs = chain(signer, 3)
    store.process_batch([msg(evs[2])], reg)  # 3 arrives first
    fork = events.seal(Draft("test.x", "money", {"fork": 1}), device="dev-a", seq=2,
                       prev=events.event_hash(evs[0]), signer=signer)
    out, _ = store.process_batch([msg(evs[0]), msg(fork), msg(evs[1])], reg)
    assert [o.status for o in out] == [ACCEPTED, REJECTED, ACCEPTED]
    assert "does not chain" in out[1].reason


def test_rejection_records_are_bounded_but_counted(store, monkeypatch):
    import ingest.store as ingest_store

    monkeypatch.setattr(ingest_store, "MAX_REJECTIONS", 5)
    signer = Ed25519Signer.generate()
    junk = [("cocoon/v1/dev-a/events", b"{not json")] * 12
    store.process_batch(junk, Registry(**{"dev-a": signer}))
    rows = store.query("SELECT id FROM rejections ORDER BY id")
    assert [r[0] for r in rows] == list(range(8, 13))      # the newest five
    assert {d["device"]: d for d in store.devices()}["dev-a"]["rejected"] == 12


def test_two_workers_on_one_store_store_each_event_once(ingest_store_location):
    """Two stores on one database (two workers), opened at once and fed the same events in
    other orders and batches, as redeliveries through a shared subscription would: each event
    stored once, every link checked, both watermarks at the head."""
    opened: list[IngestStore] = []
    errors: list[BaseException] = []

    def open_one():
        try:
            opened.append(IngestStore(ingest_store_location))
        except BaseException as exc:
            errors.append(exc)

    starters = [threading.Thread(target=open_one) for _ in range(2)]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    assert not errors, errors
    signer = Ed25519Signer.generate()
    reg = Registry(**{"dev-a": signer, "dev-b": signer})
    evs = chain(signer, 120) + chain(signer, 120, device="dev-b")
    outcomes = []

    def work(store, seed):
        mine = evs[:]
        random.Random(seed).shuffle(mine)
        try:
            for i in range(0, len(mine), 7):
                out, _ = store.process_batch([msg(e) for e in mine[i:i + 7]], reg)
                outcomes.extend(out)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(s, n)) for n, s in enumerate(opened)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    try:
        assert not errors, errors
        statuses = [o.status for o in outcomes]
        assert statuses.count(ACCEPTED) == len(evs) and statuses.count(DUPLICATE) == len(evs)
        for device in ("dev-a", "dev-b"):
            assert opened[0].stored_seqs(device) == list(range(1, 121))
            assert opened[1].watermark(device) == (120, events.event_hash(
                [e for e in evs if e["device"] == device][-1]))
    finally:
        for s in opened:
            s.close()


def test_one_open_alert_of_a_kind_however_many_workers_raise_it(ingest_store_location):
    first, second = IngestStore(ingest_store_location), IngestStore(ingest_store_location)
    try:
        assert first.open_alert("dev-a", "device.silent", "no event for 20 s")
        assert not second.open_alert("dev-a", "device.silent", "no event for 21 s")
        assert second.open_alert("dev-b", "device.silent", "no event for 21 s")
        assert [a["detail"] for a in second.open_alerts("dev-a")] == ["no event for 20 s"]
        assert second.close_alerts("dev-a", "device.silent") == 1
        assert second.open_alert("dev-a", "device.silent", "no event for 40 s")
        assert [a["detail"] for a in first.open_alerts("dev-a")] == ["no event for 40 s"]
    finally:
        first.close()
        second.close()


def test_the_migration_to_one_open_alert_keeps_the_oldest_open(ingest_store_location):
    """A store from before 0003 (where two workers could each open an alert) is migrated:
    the oldest open alert of a kind stays open, later duplicates are closed."""
    from ingest import migrations

    releases = migrations.MIGRATIONS
    migrations.MIGRATIONS = releases[:2]
    try:
        old = IngestStore(ingest_store_location)
    finally:
        migrations.MIGRATIONS = releases
    for n, (device, kind) in enumerate([("dev-a", "device.silent"), ("dev-a", "device.silent"),
                                        ("dev-a", "chain.forked"), ("dev-b", "device.silent"),
                                        ("dev-b", "device.silent")]):
        old.execute("INSERT INTO alerts (device, kind, detail, opened_at) VALUES (?, ?, ?, ?)",
                    (device, kind, f"#{n}", 1000.0 + n))
    old.close()
    store = IngestStore(ingest_store_location)
    try:
        assert [(a["device"], a["kind"], a["detail"]) for a in store.open_alerts()] == [
            ("dev-a", "device.silent", "#0"), ("dev-a", "chain.forked", "#2"),
            ("dev-b", "device.silent", "#3")]
        assert store.query("SELECT name FROM _migrations ORDER BY name") == [
            (name,) for name, _ in releases]
    finally:
        store.close()


def reference_watermark(stored: dict[int, str], ranges: list[tuple[int, int]]) -> tuple[int, str]:
    """The watermark walked one seq at a time: a stored event first, else a declared range."""
    wm, wm_hash, nxt = 0, events.GENESIS_PREV, 1
    while True:
        if nxt in stored:
            wm, wm_hash, nxt = nxt, stored[nxt], nxt + 1
        elif ends := [b for a, b in ranges if a <= nxt <= b]:
            nxt = max(ends) + 1
        else:
            return wm, wm_hash


def test_the_watermark_read_in_chunks_walks_as_one_seq_at_a_time(store, monkeypatch):
    """Stored events (some inside declared ranges) and overlapping declared ranges, read two
    events at a time: the same watermark as a walk seq by seq."""
    import ingest.store as ingest_store

    monkeypatch.setattr(ingest_store, "ADVANCE_CHUNK", 2)
    rng = random.Random(7)
    for case in range(150):
        device = f"dev-{case}"
        stored = {s: f"{s:064x}" for s in range(1, 40) if rng.random() < 0.6}
        ranges = [(a, a + rng.randrange(0, 6)) for a in rng.sample(range(1, 40), 8)]
        for seq, digest in stored.items():
            store.execute("INSERT INTO events (device, seq, hash) VALUES (?, ?, ?)",
                          (device, seq, digest))
        for n, (a, b) in enumerate(ranges):
            store.execute("INSERT INTO skipped (device, first, last, last_hash, declared_by)"
                          " VALUES (?, ?, ?, NULL, ?) ON CONFLICT DO NOTHING", (device, a, b, n))
        store.execute("INSERT INTO device_state (device, watermark, watermark_hash)"
                      " VALUES (?, 0, ?)", (device, events.GENESIS_PREV))
        with store.db.transaction([device]):
            assert store._advance(device) == reference_watermark(stored, ranges), (stored,
                                                                                    ranges)
