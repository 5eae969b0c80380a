"""CardMonitor through the real pcscd and vpcd: cards, readers, and pcscd going away."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from drivers.pcsc import (
    ApduTransport,
    CardInserted,
    CardMonitor,
    CardWithdrawn,
    ReaderAdded,
    ReaderRemoved,
    ServiceLost,
    ServiceRestored,
)
from tests.support.vcard import make_atr
from tests.support.waiting import wait_for


class Recorder:
    """An observer that keeps every event, for tests to wait on."""

    def __init__(self):
        self.events: list = []
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        with self._lock:
            self.events.append(event)

    def mark(self) -> int:
        with self._lock:
            return len(self.events)

    def since(self, mark: int) -> list:
        with self._lock:
            return self.events[mark:]

    def wait(self, *expected, since: int = 0, timeout: float = 5.0) -> list:
        """Wait until every expected event has arrived after `since`; return those events."""
        wait_for(lambda: all(e in self.since(since) for e in expected), timeout,
                 what=f"{expected} (got {self.since(since)})")
        return self.since(since)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def monitor(pcscd, recorder):
    with CardMonitor(recorder, poll_s=1.0, retry_s=0.05, retry_max_s=0.2) as m:
        yield m


def test_monitor_reports_readers_then_insert_and_remove(pcscd, virtual_card, recorder, capfd,
                                                        caplog):
    first, second = (r.name for r in pcscd.readers)
    present = virtual_card(first).insert()            # there before the monitor starts
    broken = []

    def failing_observer(event):
        broken.append(event)
        raise RuntimeError("observer bug")

    monitor = CardMonitor(failing_observer, poll_s=1.0)
    monitor.add_observer(recorder)          # before start(): it sees the initial state too
    with monitor:
        recorder.wait(ServiceRestored(), ReaderAdded(first), CardInserted(first, present.atr),
                      ReaderAdded(second))
        assert recorder.events.index(ReaderAdded(first)) < recorder.events.index(
            CardInserted(first, present.atr))

        mark = recorder.mark()
        card = virtual_card(second, atr=make_atr(b"farmer-042")).insert()
        assert recorder.wait(CardInserted(second, card.atr), since=mark) == [
            CardInserted(second, card.atr)]
        assert monitor.snapshot() == {first: present.atr, second: card.atr}

        mark = recorder.mark()
        card.remove()
        assert recorder.wait(CardWithdrawn(second, card.atr), since=mark) == [
            CardWithdrawn(second, card.atr)]
        assert monitor.snapshot()[second] is None

    assert len(broken) == len(recorder.events)         # a failing observer did not stop it
    assert "observer bug" in caplog.text
    assert "Traceback" not in capfd.readouterr().err


def test_monitor_survives_a_pcscd_restart(pcscd, virtual_card, monitor, recorder, capfd,
                                          caplog):
    first, second = (r.name for r in pcscd.readers)
    card = virtual_card(first).insert()
    recorder.wait(CardInserted(first, card.atr))

    caplog.set_level(logging.INFO, logger="drivers.pcsc")
    mark = recorder.mark()
    pcscd.stop()
    lost = recorder.wait(CardWithdrawn(first, card.atr), ReaderRemoved(first),
                         ReaderRemoved(second), since=mark)
    wait_for(lambda: any(isinstance(e, ServiceLost) for e in recorder.since(mark)),
             what="ServiceLost")
    assert isinstance(recorder.since(mark)[-1], ServiceLost)
    assert lost.index(CardWithdrawn(first, card.atr)) < lost.index(ReaderRemoved(first))
    assert monitor.service_available is False and monitor.snapshot() == {}

    mark = recorder.mark()
    pcscd.start()
    card.insert()
    back = recorder.wait(ServiceRestored(), ReaderAdded(first), ReaderAdded(second),
                         CardInserted(first, card.atr), since=mark)
    assert back[0] == ServiceRestored()
    assert monitor.service_available is True
    with ApduTransport.open(first) as transport:          # and cards work again
        assert transport.atr == card.atr

    assert sum(isinstance(e, ServiceLost) for e in recorder.events) == 1
    assert [r.levelname for r in caplog.records if "pcscd" in r.getMessage()].count(
        "WARNING") == 1                                     # one warning, not one per retry
    assert "Traceback" not in capfd.readouterr().err


def test_monitor_follows_readers_disappearing_and_reappearing(pcscd, recorder):
    """pcscd 1.9.9 does not reload reader.conf while it runs (SIGUSR1 is ignored for serial
    drivers) and vpcd readers cannot be unplugged, so readers go and come back with pcscd:
    the monitor starts while pcscd is down, then pcscd comes up without the virtual readers,
    then with them."""
    names = [r.name for r in pcscd.readers]
    pcscd.stop()
    with CardMonitor(recorder, poll_s=1.0, retry_s=0.05, retry_max_s=0.2) as monitor:
        wait_for(lambda: recorder.events[:1] and isinstance(recorder.events[0], ServiceLost),
                 what="ServiceLost while pcscd is down")

        mark = recorder.mark()
        pcscd.start(only=())                               # pcscd without any reader
        recorder.wait(ServiceRestored(), since=mark)
        started = time.monotonic()
        wait_for(lambda: monitor.snapshot() == {} and time.monotonic() - started > 0.1,
                 what="an empty reader list")
        assert not any(isinstance(e, ReaderAdded) for e in recorder.since(mark))

        mark = recorder.mark()
        pcscd.restart()                                    # the readers are back
        recorder.wait(ServiceRestored(), *(ReaderAdded(n) for n in names), since=mark)
        assert set(monitor.snapshot()) == set(names)


def test_stop_does_not_wait_for_the_poll_timeout(pcscd, recorder):
    monitor = CardMonitor(recorder, poll_s=30.0).start()
    recorder.wait(*(ReaderAdded(r.name) for r in pcscd.readers))
    started = time.monotonic()
    monitor.stop()                        # SCardCancel wakes the thread's SCardGetStatusChange
    assert time.monotonic() - started < 1.0 and not monitor.running
