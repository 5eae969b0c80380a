"""The BB ... 7E simulator driving the real reader through a socat pty pair."""

from __future__ import annotations

import time

from drivers.tags.bb7e_reader import BB7EReader
from drivers.tags.errors import FrameError
from drivers.tags.sim_field import TagField
from drivers.tags.simulator import BB7ESimulator
from tests.support.tag_reading import RunningReader as Watch
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)



def test_field_misses_noise_and_cross_reads():
    field = TagField(4, seed=7, miss_rate=0.25, rssi_noise_db=3, cross_read_rate=0.0)
    tag = field.add("e28011700000020a0b0c0d0e", antenna=2, rssi=-50)
    seen = [s for _ in range(2000) for s in field.round()]
    assert 0.70 < len(seen) / 2000 < 0.80                  # about a quarter missed
    assert {s.antenna for s in seen} == {2} and {s.epc for s in seen} == {tag}
    rssis = [s.rssi for s in seen]
    assert min(rssis) < -53 and max(rssis) > -47          # noise around the mean
    assert abs(sum(rssis) / len(rssis) + 50) < 0.5
    field.cross_read_rate = 1.0
    assert {s.antenna for _ in range(50) for s in field.round()} == {1, 2, 3, 4}
    runs = []
    for _ in range(2):
        again = TagField(4, seed=7)
        again.populate(10)
        runs.append([again.round() for _ in range(5)])
    assert runs[0] == runs[1]                              # seeded: repeatable


def test_hundreds_of_reads_per_second_over_several_antennas(pty_pair):
    field = TagField(4, seed=1, miss_rate=0.2)
    epcs = {e.hex() for e in field.populate(40)}
    with BB7ESimulator(str(pty_pair.peer), field, rounds_per_s=20) as sim:
        with Watch(BB7EReader(str(pty_pair.device), silence_s=5)) as w:
            wait_for(lambda: w.reads, 5, what="first read")
            start, count = time.monotonic(), len(w.reads)
            wait_for(lambda: time.monotonic() - start >= 1.0, 3)
            rate = (len(w.reads) - count) / (time.monotonic() - start)
            assert rate > 300, f"{rate:.0f} reads/s"
            assert {r.antenna for r in w.reads} == {1, 2, 3, 4}
            assert {r.epc for r in w.reads} <= epcs
            assert len({r.rssi for r in w.reads}) > 10
            assert w.errors == [] and w.online() is True
            assert sim.commands[0] == bytes.fromhex("bb 00 27 00 03 22 ff ff 4a 7e")
        wait_for(lambda: not sim.polling, 5, what="the reader's stop obeyed")


def test_garbage_and_cut_frames_are_rejected_reads_stay_exact(pty_pair):
    field = TagField(2, seed=3, miss_rate=0.0, cross_read_rate=0.0)
    epcs = {e.hex() for e in field.populate(20)}
    with BB7ESimulator(str(pty_pair.peer), field, rounds_per_s=25, garbage_rate=0.05) as sim, \
            Watch(BB7EReader(str(pty_pair.device), silence_s=5)) as w:
        wait_for(lambda: len(w.reads) >= 400 and len(w.errors) >= 10, 10,
                 what="reads and rejections")
        assert {r.epc for r in w.reads} <= epcs            # noise never becomes a tag
        assert all(isinstance(e, FrameError) for e in w.errors)
        # Every notice written whole arrives: a garbage burst costs at most the frame it hit.
        assert len(w.reads) >= 0.9 * (sim.reads_sent - 2 * 20)


def test_tags_come_and_go_and_move(pty_pair):
    field = TagField(4, seed=5, miss_rate=0.1, cross_read_rate=0.0)
    gone, stays = field.add("e2000000000000000000aaaa", 1), field.add("e2000000000000000000bbbb", 2)
    with BB7ESimulator(str(pty_pair.peer), field, rounds_per_s=50), \
            Watch(BB7EReader(str(pty_pair.device), silence_s=5)) as w:
        wait_for(lambda: {r.epc for r in w.reads} == {gone.hex(), stays.hex()}, 5)
        field.remove(gone)
        field.move(stays, 4)
        field.add("e2000000000000000000cccc", 3)
        mark = len(w.reads)
        wait_for(lambda: any(r.epc.endswith("cccc") for r in w.reads[mark:]), 5)
        n = len(w.reads)
        wait_for(lambda: len(w.reads) > n + 20, 5)
        later = w.reads[n:]
        assert gone.hex() not in {r.epc for r in later}
        assert {r.antenna for r in later if r.epc == stays.hex()} == {4}


def test_module_that_stops_answering_goes_offline_and_returns(pty_pair):
    field = TagField(1, seed=2)
    field.populate(3)
    with BB7ESimulator(str(pty_pair.peer), field, rounds_per_s=50) as sim, \
            Watch(BB7EReader(str(pty_pair.device), silence_s=0.6, backoff_initial=0.05)) as w:
        wait_for(lambda: w.online() is True, 5)
        sim.hang()
        wait_for(lambda: w.online() is False, 5, what="offline while hung")
        sim.resume()
        mark = len(w.reads)
        wait_for(lambda: w.online() is True and len(w.reads) > mark, 5, what="back")
        assert [h.online for h in w.health] == [True, False, True]


def test_empty_field_is_not_an_outage(pty_pair):
    """Multi-poll over an empty field sends nothing; the reader's probe gets "no tag"."""
    with BB7ESimulator(str(pty_pair.peer), TagField(1), rounds_per_s=50) as sim, \
            Watch(BB7EReader(str(pty_pair.device), silence_s=0.4)) as w:
        wait_for(lambda: w.online() is True, 5, what="online from the probe's no-tag answer")
        wait_for(lambda: sim.commands.count(bytes.fromhex("bb 00 22 00 00 22 7e")) >= 3, 5,
                 what="three probes")
        assert [h.online for h in w.health] == [True] and w.reads == []
