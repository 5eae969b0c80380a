"""Log lines for the journal: one structured line per record, never a multi-line traceback.

Under systemd the agent's stderr goes to the journal, which already stamps the time and the
unit; what it needs from us is one line per record that a technician can read and a tool can
parse, with the severity as a syslog prefix (`<3>` error, `<4>` warning, `<6>` info, `<7>`
debug) so that `journalctl -p warning` works. systemd says stderr is the journal by setting
JOURNAL_STREAM; on a terminal the lines carry their own time instead.

    <4>agent.station.part level=warning msg="station: Card refused: ..." device=station-01

The agent's and the ingest's processes log the same way. An expected fault (a CocoonError, or
another type the program names as expected: the agent adds its drivers' errors) is logged as
its message only; an unexpected exception keeps
its traceback, folded into the same line (" | " between lines), so that nothing is lost and
the journal still holds one entry per record.
"""

from __future__ import annotations

import logging
import os
import sys

from agent.contract.errors import CocoonError

SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
                   logging.INFO: 6, logging.DEBUG: 7}


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\\') and value.isprintable():
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else " " for c in escaped) + '"'


class StructuredFormatter(logging.Formatter):
    """`logger level=... msg="..." [key=value ...]`, one line, with a syslog prefix for the
    journal or a timestamp for a terminal. Extra fields: `logger.info(..., extra={"fields":
    {"seq": 12}})`."""

    def __init__(self, *, journal: bool,
                 expected: tuple[type[BaseException], ...] = (CocoonError,)):
        super().__init__()
        self.journal = journal
        self.expected = expected

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"level={record.levelname.lower()}", f"msg={_quote(record.getMessage())}"]
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={_quote(str(value))}")
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if isinstance(exc, self.expected):
                parts.append(f"error={_quote(f'{type(exc).__name__}: {exc}')}")
            else:
                trace = self.formatException(record.exc_info).strip().splitlines()
                parts.append(f"traceback={_quote(' | '.join(line.strip() for line in trace))}")
        line = f"{record.name} " + " ".join(parts)
        if self.journal:
            return f"<{SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {line}"


def to_journal() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM to the
    device and inode of that stream)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def setup(level: str, *, journal: bool | None = None,
          expected: tuple[type[BaseException], ...] = (CocoonError,)) -> None:
    """Log to stderr in this format, like logging.basicConfig: only when nothing has set up
    logging yet (an embedding program or a test harness keeps its own handlers)."""
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(
        journal=to_journal() if journal is None else journal, expected=expected))
    root.addHandler(handler)
