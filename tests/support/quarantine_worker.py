"""Open a device's outbox (quarantining it if it is damaged), killed at the N-th step.

    python -m tests.support.quarantine_worker CONFIG N

A step is a call into the operating system or SQLite that can leave something on disk: an
open, write, rename, replace, unlink or fsync of the os module, and an execute, commit or close
of a sqlite3 connection. Before the N-th such call the process sends itself SIGKILL, as a
power supply or the OOM killer would end it; the kill points are thus every place where the
quarantine can be interrupted, reproducibly, with no hook in the code under test. With N = 0
it runs to the end and prints the number of steps it took ("STEPS k").
"""

import os
import signal
import sqlite3
import sys

from agent.config import load_config
from agent.ops.service import open_outbox

WATCHED = {"open", "write", "rename", "replace", "unlink", "fsync", "execute", "executemany",
           "commit", "close"}


def main() -> None:
    config = load_config(sys.argv[1])
    kill_at = int(sys.argv[2])
    steps = 0

    def profile(frame, event, arg):
        nonlocal steps
        if event != "c_call" or getattr(arg, "__name__", "") not in WATCHED:
            return
        owner = getattr(arg, "__self__", None)
        if owner is os or isinstance(owner, sqlite3.Connection | sqlite3.Cursor):
            steps += 1
            if steps == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    import threading

    threading.setprofile(profile)
    sys.setprofile(profile)
    outbox, salvage = open_outbox(config)
    outbox.close()
    sys.setprofile(None)
    threading.setprofile(None)
    print(f"STEPS {steps} SALVAGED {-1 if salvage is None else len(salvage.rows)}", flush=True)


if __name__ == "__main__":
    main()
