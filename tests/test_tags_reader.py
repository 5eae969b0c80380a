"""BB7EReader on a socat pty pair: the module's side is written by hand with golden frames."""

from __future__ import annotations

import serial

from drivers.tags import bb7e
from drivers.tags.bb7e_reader import BB7EReader
from drivers.tags.errors import ChecksumError, GarbageError
from tests.support.tag_reading import RunningReader as Running
from tests.support.tag_sim_frames import NO_TAG, NOTICE, NOTICE_ANT3
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)

MULTI_POLL = bytes([0xBB, 0x00, 0x27, 0x00, 0x03, 0x22, 0xFF, 0xFF, 0x4A, 0x7E])
STOP = bytes([0xBB, 0x00, 0x28, 0x00, 0x00, 0x28, 0x7E])
SINGLE = bytes([0xBB, 0x00, 0x22, 0x00, 0x00, 0x22, 0x7E])



class Module:
    """The module's end of the pty."""

    def __init__(self, path):
        self.port = serial.serial_for_url(str(path), baudrate=115200, timeout=0.05)
        self.received = bytearray()

    def expect(self, data: bytes, timeout: float = 5.0) -> None:
        def seen():
            self.received += self.port.read(self.port.in_waiting or 1)
            return data in self.received
        wait_for(seen, timeout, what=f"module receives {data.hex(' ')}")
        del self.received[:self.received.index(data) + len(data)]

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def close(self) -> None:
        self.port.close()


def test_multi_poll_then_reads_with_configured_and_framed_antenna(pty_pair):
    module = Module(pty_pair.peer)
    reader = BB7EReader(str(pty_pair.device), name="dock", antenna=2, silence_s=5)
    with Running(reader) as run:
        module.expect(MULTI_POLL)
        assert run.health == []                     # an open port alone proves nothing
        module.send(NOTICE + NO_TAG + NOTICE_ANT3)
        wait_for(lambda: len(run.reads) == 2, 5, what="two reads")
        first, second = run.reads
        assert (first.epc, first.rssi, first.antenna) == ("30751feb705c5904e3d50d70", -55, 2)
        assert second.antenna == 3
        assert run.online() is True and run.health[-1].reader == "dock"
        assert run.errors == []                     # "no tag" is not an error
    module.expect(STOP)                             # stopping leaves the module quiet
    module.close()


def test_rejected_frames_are_reported_and_survived(pty_pair):
    module = Module(pty_pair.peer)
    with Running(BB7EReader(str(pty_pair.device), silence_s=5)) as run:
        module.expect(MULTI_POLL)
        bad = bytearray(NOTICE)
        bad[22] ^= 0xFF
        module.send(b"\x00\x13\x37" + bytes(bad) + bb7e.encode_error(0x17) + NOTICE)
        wait_for(lambda: len(run.reads) == 1, 5, what="the good notice after the bad ones")
        garbage = [e for e in run.errors if isinstance(e, GarbageError)]
        assert b"".join(e.raw for e in garbage) == b"\x00\x13\x37"   # however it was split
        checksum, module_error = [e for e in run.errors if e not in garbage]
        assert isinstance(checksum, ChecksumError) and checksum.raw == bytes(bad)
        assert isinstance(module_error, bb7e.ErrorFrame) and module_error.code == 0x17
        assert run.online() is True
    module.close()


def test_silent_module_is_probed_then_offline_then_back(pty_pair):
    module = Module(pty_pair.peer)
    reader = BB7EReader(str(pty_pair.device), silence_s=0.6, backoff_initial=0.05)
    with Running(reader) as run:
        module.expect(MULTI_POLL)
        module.send(NO_TAG)
        wait_for(lambda: run.online() is True, 5, what="online")
        module.expect(STOP + SINGLE + MULTI_POLL)   # quiet for silence_s / 2: probe
        wait_for(lambda: run.online() is False, 5, what="offline after silence")
        assert "no answer" in run.health[-1].detail
        module.expect(MULTI_POLL)                   # reopened, polling again
        module.send(NOTICE)
        wait_for(lambda: run.online() is True and run.reads, 5, what="back online")
        assert [h.online for h in run.health] == [True, False, True]
    module.close()


def test_an_empty_field_still_counts_answers(pty_pair):
    """A module that answers "no tag" to every probe reads nothing and is not silent: each
    valid frame counts as an answer (a rejected one does not)."""
    module = Module(pty_pair.peer)
    reader = BB7EReader(str(pty_pair.device), silence_s=0.6, backoff_initial=0.05)
    with Running(reader) as run:
        module.expect(MULTI_POLL)
        module.send(b"\x00\x13" + NO_TAG)
        wait_for(lambda: reader.answers == 1, 5, what="one answer")
        for n in (2, 3):
            module.expect(STOP + SINGLE + MULTI_POLL)   # probed after silence_s / 2
            module.send(NO_TAG)
            wait_for(lambda n=n: reader.answers == n, 5, what=f"answer {n}")
        assert run.reads == [] and [h.online for h in run.health] == [True]
    module.close()


def test_unplugged_adapter_goes_offline_and_comes_back(pty_pair):
    module = Module(pty_pair.peer)
    reader = BB7EReader(str(pty_pair.device), silence_s=5, backoff_initial=0.05,
                        backoff_max=0.2)
    with Running(reader) as run:
        module.expect(MULTI_POLL)
        module.send(NOTICE)
        wait_for(lambda: run.online() is True, 5, what="online")
        module.close()
        pty_pair.unplug()
        wait_for(lambda: run.online() is False, 5, what="offline after unplug")
        assert run.thread.is_alive()
        pty_pair.plug()
        module = Module(pty_pair.peer)
        module.expect(MULTI_POLL)
        module.send(NOTICE_ANT3)
        wait_for(lambda: run.online() is True and len(run.reads) == 2, 5, what="back")
        offline = [h for h in run.health if not h.online]
        assert len(offline) == 1                    # one outage, one report
    module.close()


def test_unusable_url_is_reported_not_raised():
    reader = BB7EReader("nonsense://x", backoff_max=0.1)
    with Running(reader) as run:
        wait_for(lambda: run.health, 5, what="health")
        assert run.online() is False and "cannot use nonsense://x" in run.health[0].detail
    reader = BB7EReader("/nonexistent/ttyUSB9", backoff_max=0.1)
    with Running(reader) as run:
        wait_for(lambda: run.health, 5, what="health")
        assert "cannot open" in run.health[0].detail
