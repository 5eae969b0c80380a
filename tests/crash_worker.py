"""The agent under test for tests/test_crash_loop.py, run as a subprocess and SIGKILLed.

    python tests/crash_worker.py AGENT_CONFIG JOURNAL [--run N] [--producers K] [--drain]

Runs the real agent (agent.ops.service.Agent: outbox, uplink to the broker, heartbeat) while K
producer threads append events of mixed priorities in a loop. After each append() returns, the
producer writes "<seq> <uid>" as one line to JOURNAL and flushes and fsyncs it before appending
again, so the journal only ever under-reports what append() returned. Prints READY on stdout
once the agent and its producers are running.

--drain: no producers and no heartbeat: only the uplink runs, so the backlog drains and the
outbox head stays put. SIGTERM (or SIGINT) stops the worker cleanly with exit code 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from agent.config import load_config
from agent.contract.events import Draft
from agent.ops.service import Agent

PRIORITIES = ("money", "telemetry", "alert", "telemetry", "money", "telemetry", "telemetry")
JOIN_TIMEOUT_S = 15.0


class Journal:
    def __init__(self, path: str):
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run
        self._lock = threading.Lock()

    def record(self, seq: int, uid: str) -> None:
        with self._lock:
            self._file.write(f"{seq} {uid}\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def produce(agent: Agent, journal: Journal, run: int, index: int, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        uid = f"r{run}-p{index}-{n}"
        priority = PRIORITIES[(n + index) % len(PRIORITIES)]
        body = {"uid": uid, "amount": str(n)} if priority == "money" else {"uid": uid}
        seq = agent.outbox.append(Draft(f"test.crash_{priority}", priority, body))
        journal.record(seq, uid)
        n += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("journal")
    ap.add_argument("--run", type=int, default=0)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--drain", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")

    terminate = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminate.set())
    signal.signal(signal.SIGINT, lambda *_: terminate.set())

    agent = Agent(load_config(args.config))
    journal = Journal(args.journal)
    agent_stop, producers_stop = threading.Event(), threading.Event()
    if args.drain:
        agent.producers = []  # no heartbeat: the head must stay put while the backlog drains
    runner = threading.Thread(target=agent.run, args=(agent_stop,), name="agent")
    runner.start()
    producers = [] if args.drain else [
        threading.Thread(target=produce, args=(agent, journal, args.run, i, producers_stop),
                         name=f"producer-{i}", daemon=True)
        for i in range(args.producers)
    ]
    for thread in producers:
        thread.start()
    print("READY", flush=True)

    while not terminate.wait(0.5):
        if not runner.is_alive() or any(not t.is_alive() for t in producers):
            print("a worker thread died", file=sys.stderr, flush=True)
            os._exit(3)
    producers_stop.set()
    for thread in producers:
        thread.join(JOIN_TIMEOUT_S)
    agent_stop.set()
    runner.join(JOIN_TIMEOUT_S)
    journal.close()
    return 0 if not runner.is_alive() else 4


if __name__ == "__main__":
    sys.exit(main())
