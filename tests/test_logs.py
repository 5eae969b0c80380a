"""Log records as one structured line each, with a syslog prefix for the journal."""

import logging
import os
import subprocess
import sys

from agent.errors import ConfigError
from agent.logs import StructuredFormatter


def record(msg, level=logging.WARNING, exc=None, **fields):
    rec = logging.LogRecord("agent.station", level, __file__, 1, msg, (), None)
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
    assert line == ('<4>agent.station level=warning msg="card \\"F-1\\" refused" seq=12 '
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
    assert line[:4].isdigit() and line.endswith("agent.station level=info msg=hello")


def test_the_journal_is_recognised_by_journal_stream(tmp_path):
    err = tmp_path / "stderr"
    with open(err, "w") as fh:
        st = os.fstat(fh.fileno())
        code = ("import logging; from agent.logs import setup; setup('info'); "
                "logging.getLogger('agent.x').warning('to the journal')")
        subprocess.run([sys.executable, "-c", code], stderr=fh, check=True,
                       env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert err.read_text() == "<4>agent.x level=warning msg=\"to the journal\"\n"
