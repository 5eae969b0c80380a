"""A tag reader's `run()` in a thread, with everything it reported: for the reader tests."""

from __future__ import annotations

import threading


class RunningReader:
    """`with RunningReader(reader) as run:` starts `reader.run` in a thread and collects its
    reads, health reports and rejected frames; leaving stops it and checks that it returned."""

    def __init__(self, reader):
        self.reader, self.reads, self.health, self.errors = reader, [], [], []
        reader.on_error = self.errors.append
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=reader.run, args=(self.reads.append, self.health.append, self.stop),
            daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive(), "run() did not return after stop"

    def online(self) -> bool | None:
        return self.health[-1].online if self.health else None
