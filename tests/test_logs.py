"""Log records as one structured line each, with a syslog prefix for the journal."""

import logging
import os
import subprocess
import sys

from agent.contract.logs import StructuredFormatter
from agent.errors import ConfigError


def record(msg, level=logging.WARNING, exc=None, **fields):
    rec = logging.LogRecord("agent.station.effects", level, __file__, 1, msg, (), None)
    if exc is not None:
        try:
            raise exc
        except BaseException:
            rec.exc_info = sys.exc_info()
    if fields:
        rec.fields = fields
    return rec


def test_one_line_with_the_syslog_priority_for_the_journal():
    line = StructuredFormatter(journal=True).format(
        record('card "F-1" refused', seq=12, voucher="st-01 0001"))
    assert line == ('<4>agent.station.effects level=warning msg="card \\"F-1\\" refused" seq=12 '
                    'voucher="st-01 0001"')


def test_expected_faults_have_no_traceback_and_bugs_keep_theirs_on_the_same_line():
    fmt = StructuredFormatter(journal=True)
    expected = fmt.format(record("bad config", logging.ERROR, ConfigError("agent.toml: x")))
    assert expected.startswith("<3>") and "error=\"ConfigError: agent.toml: x\"" in expected
    assert "Traceback" not in expected
    bug = fmt.format(record("crash", logging.ERROR, KeyError("k")))
    assert "\n" not in bug and "traceback=\"Traceback (most recent call last): |" in bug
    assert bug.rstrip('"').endswith("KeyError: 'k'")


def test_on_a_terminal_lines_carry_their_time():
    line = StructuredFormatter(journal=False).format(record("hello", logging.INFO))
    assert line[:4].isdigit() and line.endswith("agent.station.effects level=info msg=hello")


def test_the_journal_is_recognised_by_journal_stream(tmp_path):
    err = tmp_path / "stderr"
    with open(err, "w") as fh:
        st = os.fstat(fh.fileno())
        code = ("import logging; from agent.contract.logs import setup; setup('info'); "
                "logging.getLogger('agent.x').warning('to the journal')")
        subprocess.run([sys.executable, "-c", code], stderr=fh, check=True,
                       env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert err.read_text() == "<4>agent.x level=warning msg=\"to the journal\"\n"


class _Lines(logging.Handler):
    """Formats like the journal and notes, as each record is emitted, whether its event is
    already in the outbox file (read through a connection of its own) and in which thread."""

    def __init__(self, path):
        super().__init__(logging.DEBUG)
        self.setFormatter(StructuredFormatter(journal=True))
        self.path = path
        self.lines, self.stored, self.threads = [], [], []

    def emit(self, record):
        import sqlite3
        import threading

        self.lines.append(self.format(record))
        self.threads.append(threading.current_thread())
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
            self.stored.append(db.execute("SELECT type FROM events WHERE seq = ?",
                                          (record.fields["seq"],)).fetchone())


def test_each_recorded_money_or_alert_event_is_one_line(make_outbox):
    import threading

    from agent.contract.events import Draft

    outbox = make_outbox()
    logger = logging.getLogger("agent.spine.outbox")
    handler = _Lines(outbox.path)
    logger.addHandler(handler)
    before = logger.level
    logger.setLevel(logging.INFO)       # setLevel, not the attribute: it clears level caches
    try:
        money = outbox.append(Draft("purchase.recorded", "money", {"n": 1}))
        outbox.append(Draft("device.heartbeat", "telemetry", {"n": 2}))     # below INFO
        alert = outbox.append(Draft("door.opened", "alert", {"n": 3}))
        assert handler.lines == [
            f"<6>agent.spine.outbox level=info msg=\"event recorded\" seq={money} "
            "type=purchase.recorded priority=money",
            f"<6>agent.spine.outbox level=info msg=\"event recorded\" seq={alert} "
            "type=door.opened priority=alert"]
        # written once durable, by the caller's thread (not the committer's)
        assert handler.stored == [("purchase.recorded",), ("door.opened",)]
        assert handler.threads == [threading.current_thread()] * 2

        logger.setLevel(logging.DEBUG)
        telemetry = outbox.append(Draft("device.heartbeat", "telemetry", {"n": 4}))
        assert handler.lines[-1] == (f"<7>agent.spine.outbox level=debug msg=\"event recorded\" "
                                     f"seq={telemetry} type=device.heartbeat "
                                     "priority=telemetry")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def test_with_info_off_recording_costs_only_a_level_check(make_outbox, monkeypatch):
    from agent.contract.events import Draft
    from agent.spine import outbox as outbox_module

    outbox = make_outbox()
    logger = logging.getLogger("agent.spine.outbox")
    before = logger.level
    logger.setLevel(logging.WARNING)

    def no_record(*args, **kwargs):
        raise AssertionError("a log record was made with INFO off")

    monkeypatch.setattr(outbox_module.log, "log", no_record)
    monkeypatch.setattr(outbox_module.log, "_log", no_record)
    try:
        assert outbox.append(Draft("purchase.recorded", "money", {"n": 1})) == 1
    finally:
        logger.setLevel(before)
