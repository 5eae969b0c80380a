"""LLRPReader (sllurp's client) against the LLRP reader simulator on 127.0.0.1."""

from __future__ import annotations

import pytest

from drivers.tags import open_tag_reader
from drivers.tags.llrp_reader import LLRPReader, parse_url
from drivers.tags.sim_field import TagField
from tests.support.llrp_sim import MSG, LLRPSimulator
from tests.support.tag_reading import RunningReader as Watch
from tests.support.waiting import wait_for


def field(**kw) -> TagField:
    f = TagField(4, seed=11, **kw)
    f.populate(12)
    return f


def test_urls():
    assert parse_url("llrp://10.0.0.5") == ("10.0.0.5", 5084)
    assert parse_url("llrp://reader.local:5085") == ("reader.local", 5085)
    for bad in ("tcp://10.0.0.5:5084", "llrp://", "llrp://h:99999", "llrp://h/x"):
        with pytest.raises(ValueError):
            parse_url(bad)
    with pytest.raises(ValueError):
        open_tag_reader("/dev/ttyUSB0", "llrp")


def test_reads_carry_antenna_and_peak_rssi_with_keepalives():
    f = field(miss_rate=0.1)
    epcs = {e.hex() for e in f.epcs()}
    with LLRPSimulator(f) as sim, \
            Watch(open_tag_reader(sim.url, "llrp", name="hall", silence_s=1.5)) as w:
        wait_for(lambda: len(w.reads) >= 200, 10, what="200 reads")
        assert w.online() is True and w.health[0].reader == "hall"
        assert {r.epc for r in w.reads} <= epcs
        assert {r.antenna for r in w.reads} == {1, 2, 3, 4}
        assert len({r.rssi for r in w.reads}) > 5 and all(-100 <= r.rssi <= -20
                                                          for r in w.reads)
        assert sim.keepalive_ms == 500                 # silence_s / 3, asked for by the client
        wait_for(lambda: sim.received.count(MSG["KEEPALIVE_ACK"]) >= 2, 5,
                 what="keepalives acknowledged")
        assert sim.antennas == [0]                     # all antennas
    # Stopped politely: sllurp deletes the access specs, then (unless its reply races the
    # registration of its own callback) the ROSpecs; the socket is closed either way.
    assert MSG["DELETE_ACCESSSPEC"] in sim.received[-4:]


def test_antenna_selection_and_short_epcs():
    f = TagField(4, seed=3, miss_rate=0.0, cross_read_rate=0.0)
    f.add("deadbeef", antenna=2, rssi=-61)
    f.add("e2000000000000000000abcd", antenna=3, rssi=-45)
    with LLRPSimulator(f) as sim, Watch(LLRPReader(sim.url, antennas=[2], silence_s=3)) as w:
        wait_for(lambda: len(w.reads) >= 10, 10, what="reads")
        assert sim.antennas == [2]
        assert {(r.epc, r.antenna) for r in w.reads} == {("deadbeef", 2)}


def test_dropped_connection_is_one_outage_then_reconnects():
    with LLRPSimulator(field()) as sim, \
            Watch(LLRPReader(sim.url, silence_s=3, backoff_initial=0.05)) as w:
        wait_for(lambda: w.online() is True, 10)
        sim.refuse(True)
        sim.drop()
        wait_for(lambda: w.online() is False, 5, what="offline after the drop")
        assert "closed" in w.health[-1].detail
        n = len(w.reads)
        sim.refuse(False)
        wait_for(lambda: w.online() is True and len(w.reads) > n, 10, what="back")
        assert [h.online for h in w.health] == [True, False, True]
        assert sim.connections >= 2


def test_silent_link_is_noticed_by_missing_keepalives():
    """The reader keeps the TCP connection but sends nothing (a link swallowing packets)."""
    with LLRPSimulator(field()) as sim, \
            Watch(LLRPReader(sim.url, silence_s=0.9, backoff_initial=0.05)) as w:
        wait_for(lambda: w.online() is True, 10)
        sim.hang()
        wait_for(lambda: w.online() is False, 5, what="offline while silent")
        assert "no keepalive or report" in w.health[-1].detail
        sim.resume()
        wait_for(lambda: w.online() is True, 10, what="back after reconnecting")


def test_keepalives_of_a_reader_with_an_empty_field_count_as_answers():
    with LLRPSimulator(TagField(4, seed=1)) as sim, \
            Watch(LLRPReader(sim.url, silence_s=0.9, backoff_initial=0.05)) as w:
        wait_for(lambda: w.online() is True, 10)
        n = w.reader.answers
        wait_for(lambda: w.reader.answers >= n + 3, 5, what="keepalives counted")
        assert w.reads == [] and [h.online for h in w.health] == [True]


def test_nobody_listening_is_reported_not_raised():
    sim = LLRPSimulator()
    url = sim.url
    sim.stop()                                          # the port is closed again
    with Watch(LLRPReader(url, backoff_initial=0.05, backoff_max=0.1)) as w:
        wait_for(lambda: w.health, 5)
        assert w.online() is False and "cannot connect" in w.health[0].detail
