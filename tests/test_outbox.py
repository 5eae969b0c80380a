"""The durable outbox: numbering, chain, states, capacity, eviction, recovery."""

import sqlite3
import subprocess
import sys
import threading

import pytest

from agent.contract.chain import check_capture
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import Verifier
from agent.errors import OutboxError, OutboxFull


def payloads(outbox):
    return [s.payload for s in outbox.pending(10**9)]


def verifier_of(signer):
    return Verifier.from_pem(signer.public_key_pem())


def test_append_is_durable_and_numbered_from_one(make_outbox, tmp_path):
    ob = make_outbox()
    assert [ob.append(Draft("test.x", "money", {"i": i})) for i in range(3)] == [1, 2, 3]
    ob.close()
    conn = sqlite3.connect(tmp_path / "outbox.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = conn.execute("SELECT seq, priority, state FROM events ORDER BY seq").fetchall()
    assert rows == [(1, "money", 0), (2, "money", 0), (3, "money", 0)]
    names = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    assert names == {"0001-events-and-meta", "0002-seen-commands", "0003-station-sales",
                     "0004-events-sent-index", "0005-station-cards",
                     "0006-emit-keys-and-command-clock", "0007-sales-grade-and-voucher"}


def test_chain_links_and_signatures(make_outbox, signer):
    ob = make_outbox()
    for i in range(20):
        ob.append(Draft("test.x", ("money", "alert", "telemetry")[i % 3], {"i": i}))
    report = check_capture(payloads(ob), verifier_of(signer))
    assert report.ok, report.problems


def test_threads_get_distinct_gap_free_numbers_and_share_commits(make_outbox, signer):
    ob = make_outbox(telemetry_batch_ms=20)
    commits = []
    real_commit = ob._commit

    def counting_commit(batch):
        real_commit(batch)
        commits.append(len(batch))  # after: callers that came meanwhile join the batch

    ob._commit = counting_commit
    seqs, lock = [], threading.Lock()

    def worker(priority):
        for i in range(40):
            s = ob.append(Draft("test.x", priority, {"i": i}))
            with lock:
                seqs.append(s)

    threads = [threading.Thread(target=worker, args=(p,))
               for p in ("money", "money", "alert", "telemetry", "telemetry", "money")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 241))
    assert sum(commits) == 240 and len(commits) < 240  # group commit happened
    assert check_capture(payloads(ob), verifier_of(signer)).ok


def test_processes_get_distinct_gap_free_numbers(make_outbox, tmp_path, signer):
    """Two processes append to one outbox at once (the running agent and `emit`)."""
    key = tmp_path / "k.pem"
    key.write_bytes(signer.private_key_pem())
    script = f"""
import sys
from agent.spine.outbox import Outbox
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import load_signer
ob = Outbox({str(tmp_path / 'outbox.sqlite')!r}, device='dev-a', signer=load_signer({str(key)!r}))
print(' '.join(str(ob.append(Draft('test.child', 'money', {{'i': i}}))) for i in range(60)))
"""
    ob = make_outbox()
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    mine = [ob.append(Draft("test.parent", "money", {"i": i})) for i in range(60)]
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    theirs = [int(x) for x in out.split()]
    assert sorted(mine + theirs) == list(range(1, 121))
    assert check_capture(payloads(ob), verifier_of(signer)).ok


def test_events_sealed_ahead_are_sealed_again_after_another_writer(make_outbox, signer,
                                                                    monkeypatch):
    """The committer seals a group ahead, against the head its last commit left; when another
    writer appended in between, numbers and links must come from the head in the database."""
    from agent.contract import events

    seals = []
    real_seal = events.seal_encoded

    def counting_seal(draft, **kw):
        seals.append(kw["seq"])
        return real_seal(draft, **kw)

    monkeypatch.setattr(events, "seal_encoded", counting_seal)
    mine, other = make_outbox(), make_outbox()
    assert [mine.append(Draft("test.mine", "money", {"i": i})) for i in range(5)] == [1, 2, 3,
                                                                                       4, 5]
    assert seals == [1, 2, 3, 4, 5]  # alone: each event sealed once (ahead from the second on)
    seals.clear()
    got = []
    for i in range(5):
        got.append(other.append(Draft("test.other", "alert", {"i": i})))
        got.append(mine.append(Draft("test.mine", "money", {"i": i})))
    assert got == list(range(6, 16))
    assert len(seals) > 10  # the stale guesses were sealed again
    assert check_capture(payloads(mine), verifier_of(signer)).ok


def test_states_and_acknowledgement_prunes(make_outbox):
    ob = make_outbox()
    for i in range(5):
        ob.append(Draft("test.x", "money", {"i": i}))
    ob.mark_sent([1, 2, 3])
    st = ob.stats()
    assert st.counts["pending"] == 2 and st.counts["sent"] == 3
    assert [s.seq for s in ob.pending(10)] == [4, 5]
    assert ob.requeue_sent() == 3
    assert ob.stats().counts["sent"] == 0
    ob.mark_sent([1, 2, 3])
    assert ob.acknowledge(3, ob.event_hash(3)) == 3
    st = ob.stats()
    assert st.acked_seq == 3 and st.counts == {"pending": 2, "sent": 0, "acknowledged": 3}
    assert [s.seq for s in ob.pending(10)] == [4, 5]
    # the same ack again is harmless; the chain head survives pruning
    assert ob.acknowledge(3, _acked_hash(ob)) == 0
    assert ob.append(Draft("test.x", "money", {})) == 6


def _acked_hash(ob):
    return dict(ob._conn.execute("SELECT key, value FROM meta").fetchall())["acked_hash"]


def test_bad_acks_prune_nothing(make_outbox):
    ob = make_outbox()
    for i in range(4):
        ob.append(Draft("test.x", "money", {"i": i}))
    with pytest.raises(OutboxError, match="never sent"):
        ob.acknowledge(2, "0" * 64)
    with pytest.raises(OutboxError, match="beyond"):
        ob.acknowledge(9, "0" * 64)
    ob.acknowledge(3, ob.event_hash(3))
    with pytest.raises(OutboxError, match="below the watermark"):
        ob.acknowledge(2, "0" * 64)
    assert [s.seq for s in ob.pending(10)] == [4]


def test_requeue_after_timeout_only_touches_old_rows(make_outbox):
    ob = make_outbox()
    for i in range(3):
        ob.append(Draft("test.x", "alert", {"i": i}))
    ob.mark_sent([1, 2])
    assert ob.requeue_sent(older_than_s=3600) == 0
    assert ob.requeue_sent(older_than_s=0) == 2


def test_full_outbox_refuses_money_and_raises_one_alert(make_outbox, signer):
    ob = make_outbox(capacity_bytes=64 * 1024, alert_reserve_bytes=8 * 1024)
    big = {"pad": "x" * 2000}
    n = 0
    with pytest.raises(OutboxFull, match="outbox full"):
        while True:
            ob.append(Draft("test.money", "money", big))
            n += 1
    with pytest.raises(OutboxFull):
        ob.append(Draft("test.money", "money", big))
    types = [parse_json_object(p)["type"] for p in payloads(ob)]
    assert types.count("outbox.full") == 1
    assert types.count("test.money") == n
    # alerts still fit in the reserve
    ob.append(Draft("test.alert", "alert", {"door": "open"}))
    assert check_capture(payloads(ob), Verifier.from_pem(signer.public_key_pem())).ok
    # acknowledging frees room and money flows again
    head = ob.stats().head_seq
    ob.acknowledge(head, ob.event_hash(head))
    ob.append(Draft("test.money", "money", big))


def test_telemetry_is_evicted_oldest_first_and_declared(make_outbox, signer):
    ob = make_outbox(capacity_bytes=64 * 1024, alert_reserve_bytes=8 * 1024)
    pad = {"pad": "t" * 1500}
    for i in range(30):
        ob.append(Draft("test.reading", "telemetry", {**pad, "i": i}))
    ob.append(Draft("test.money", "money", {"amount": "1.00"}))
    for i in range(30, 60):
        ob.append(Draft("test.reading", "telemetry", {**pad, "i": i}))
    stored = [parse_json_object(p) for p in payloads(ob)]
    kinds = [e["type"] for e in stored]
    assert "seq.skipped" in kinds and "test.money" in kinds
    assert ob.stats().used_bytes <= 64 * 1024 + 8 * 1024
    assert ob.stats().evicted_total > 0
    surviving = [e["body"]["i"] for e in stored if e["type"] == "test.reading"]
    assert surviving == sorted(surviving) and surviving[-1] == 59 and surviving[0] > 0
    # every gap is declared, and the chain verifies across the gaps
    report = check_capture(payloads(ob), Verifier.from_pem(signer.public_key_pem()))
    assert report.ok, report.problems
    assert report.counts["gap"] == 0


def test_evicting_never_touches_money_or_alerts(make_outbox):
    ob = make_outbox(capacity_bytes=64 * 1024, alert_reserve_bytes=4096)
    for i in range(20):
        ob.append(Draft("test.money", "money", {"pad": "m" * 1500, "i": i}))
    with pytest.raises(OutboxFull):
        for i in range(100):
            ob.append(Draft("test.money", "money", {"pad": "m" * 1500, "i": i}))
    moneys = [e for e in map(parse_json_object, payloads(ob)) if e["type"] == "test.money"]
    assert [e["body"]["i"] for e in moneys][:20] == list(range(20))


def test_a_failed_commit_consumes_no_number(make_outbox):
    ob = make_outbox()
    ob.append(Draft("test.x", "money", {}))

    def boom(execute, seq):
        raise OutboxError("side record failed")

    with pytest.raises(OutboxError, match="side record"):
        ob.append(Draft("test.x", "money", {}), within=boom)
    assert ob.append(Draft("test.x", "money", {})) == 2


def test_submitted_telemetry_does_not_hold_its_producer(make_outbox, signer):
    import time

    ob = make_outbox(name="tele.sqlite", telemetry_batch_ms=200)
    start = time.monotonic()
    done = [ob.submit(Draft("test.reading", "telemetry", {"i": i})) for i in range(100)]
    assert time.monotonic() - start < 0.2  # a hundred readings queued without waiting
    assert all(e.wait(5) for e in done)
    assert [s.seq for s in ob.pending(1000)] == list(range(1, 101))
    assert check_capture(payloads(ob), verifier_of(signer)).ok
    with pytest.raises(OutboxError, match="only telemetry"):
        ob.submit(Draft("test.money", "money", {}))
