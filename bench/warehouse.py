"""Benchmark of the warehouse: tag reads per second through parse -> presence -> events.

    .venv/bin/python bench/warehouse.py [--tags 10000] [--rounds 60]

The production path without the serial port: bytes of "BB ... 7E" tag notice frames (as a
four-port module sends them, built before the clock starts) go through the real
`drivers.tags.bb7e.Decoder`; each notice becomes a `TagRead` and is handed to the real
`agent.warehouse.service.Warehouse` exactly as `BB7EReader` hands it over (`on_read`), so it
passes presence and custody under the service's lock and its event drafts are sealed, signed
and stored by a real outbox (telemetry submitted, alerts appended with fsync) in a temporary
folder. Housekeeping (departures, snapshots, saving tag state) runs once per round, as the
service's `check_interval_s` would.

The field: `--tags` tags over 4 antennas; 80 % are bound to lots of 50 tags (received first,
half of the lots pledged by signed bank commands through the real Dispatcher), the rest loose.
One round is a full inventory standing for 30 s of warehouse time (the clock is simulated, so
ten minutes of absence take twenty rounds, not ten minutes); 10 % of reads are missed, RSSI is
noisy. Every round some bales move to another antenna (`tag.moved`), some loose tags are taken
out and others come back (`tag.departed` after 600 s, `tag.arrived`), and every fifth round a
pledged tag leaves without a release (`custody.breach`, `custody.shortfall`); every 15 minutes
of warehouse time a signed `inventory.snapshot` per lot.

(a) bare parse: the same bytes through a second Decoder and nothing else, timed round by round
    in the same run, interleaved with (b);
(b) parse -> presence -> events: from the first byte of the first round to the last event of the
    run committed by the outbox;
(c) the first sight of every tag (each one a `tag.arrived`), before (b);
(d) RSS of the process sampled every 50 ms during (b): at 25, 50, 75 and 100 % of its duration;
    and how much (c) added per tag (the warehouse keeps a record of every EPC it has seen).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.contract.commands import BANK, make_command
from agent.contract.signing import Ed25519Signer, Verifier
from agent.spine.dispatcher import Dispatcher
from agent.spine.outbox import Outbox
from agent.warehouse.config import parse_warehouse
from agent.warehouse.service import Warehouse
from drivers.tags import TagRead
from drivers.tags.bb7e import Decoder, TagNotice, encode_notice

DEVICE = "bench-wh"
READER = "dock"
ANTENNAS = 4
LOT_SIZE = 50
ROUND_MS = 30_000                   # warehouse time one inventory round stands for
MISS = 0.10
MOVES_PER_ROUND = 25
OUT_PER_ROUND = 20                  # loose tags taken out each round
AWAY_ROUNDS = 30                    # ... and back this many rounds later
BREACH_EVERY = 5                    # rounds between pledged tags leaving without a release
TARGET = 5000                       # reads/s
FLAT_MIB = 2.0                      # RSS growth from 25 % to 100 % of (b) counted as flat
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


class Sampler(threading.Thread):
    """RSS every `period` seconds, with the time it was taken."""

    def __init__(self, period: float = 0.05):
        super().__init__(daemon=True, name="rss-sampler")
        self.period, self.samples = period, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), rss_mib()))
            self.stop.wait(self.period)

    def at(self, t: float) -> float:
        """The last sample taken at or before `t`."""
        best = self.samples[0][1]
        for when, value in self.samples:
            if when > t:
                break
            best = value
        return best


class SimClock:
    def __init__(self):
        self.ms = 1_000_000
        self.utc0 = datetime(2026, 6, 1, 8, tzinfo=timezone.utc)

    def mono_ms(self) -> int:
        return self.ms

    def utc_now(self) -> datetime:
        return self.utc0 + timedelta(milliseconds=self.ms)


class Field:
    """Tags in front of antennas; each round's bytes built from notice frames encoded once."""

    def __init__(self, count: int, seed: int = 7):
        self.rng = random.Random(seed)
        self.epcs = [bytes.fromhex("e280") + self.rng.randbytes(10) for _ in range(count)]
        self.antenna = {e: 1 + i % ANTENNAS for i, e in enumerate(self.epcs)}
        self.mean = {e: self.rng.randint(-70, -45) for e in self.epcs}
        self.away: dict[bytes, int] = {}      # epc -> round it comes back
        self._frames: dict[tuple[bytes, int], list[bytes]] = {}

    def frames(self, epc: bytes, antenna: int) -> list[bytes]:
        key = (epc, antenna)
        if key not in self._frames:
            self._frames[key] = [encode_notice(epc, self.mean[epc] + d, antenna)
                                 for d in (-3, -1, 0, 1, 3)]
        return self._frames[key]

    def move(self, epc: bytes) -> None:
        """The bale is carried to another antenna and is read louder there."""
        self.antenna[epc] = 1 + self.antenna[epc] % ANTENNAS
        self.mean[epc] = min(-30, self.mean[epc] + 6)

    def round_bytes(self, n: int) -> bytes:
        rng, chunks = self.rng, []
        for epc in self.epcs:
            if epc in self.away and self.away[epc] > n:
                continue
            self.away.pop(epc, None)
            if rng.random() >= MISS:
                chunks.append(rng.choice(self.frames(epc, self.antenna[epc])))
        rng.shuffle(chunks)
        return b"".join(chunks)

    def prepare(self) -> None:
        for epc in self.epcs:
            self.frames(epc, self.antenna[epc])


class BenchReader:
    """Stands in the warehouse's reader list; the bench calls `on_read` itself, in the way
    BB7EReader's thread does (one TagRead per notice, antenna from the frame)."""

    name = READER


def through(decoder: Decoder, data: bytes, warehouse: Warehouse, clock: SimClock,
            step_ms: float) -> int:
    """Parse `data` and hand every notice to the warehouse; warehouse time moves with reads."""
    reads = 0
    t0 = clock.ms
    for item in decoder.feed(data):
        if type(item) is TagNotice:
            reads += 1
            clock.ms = t0 + int(reads * step_ms)
            warehouse.on_read(READER, TagRead(item.epc_hex, item.rssi, item.antenna or 1,
                                              clock.ms))
    return reads


def parse_only(data: bytes) -> int:
    return sum(1 for item in Decoder().feed(data) if type(item) is TagNotice)


class CountingOutbox:
    """The real outbox, counting what the warehouse records, and keeping the last submitted
    event's commit flag so the end of the run can wait for it."""

    def __init__(self, outbox: Outbox):
        self._outbox = outbox
        self.counts: dict[str, int] = {}
        self.last_submitted: threading.Event | None = None

    def append(self, draft, **kw):
        self.counts[draft.type] = self.counts.get(draft.type, 0) + 1
        return self._outbox.append(draft, **kw)

    def submit(self, draft):
        self.counts[draft.type] = self.counts.get(draft.type, 0) + 1
        self.last_submitted = self._outbox.submit(draft)
        return self.last_submitted

    def __getattr__(self, name):
        return getattr(self._outbox, name)


def row(name: str, result: str, target: str = "", verdict: str = "") -> None:
    print(f"{name:<44} {result:>30}  {target:<22} {verdict}".rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the service logs each alert; not wanted here

    tmp = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    clock = SimClock()
    config = parse_warehouse(tmp / "agent.toml", {
        "departed_after_s": 600, "check_interval_s": 30, "reader_silent_s": 600,
        "snapshot_interval_s": 900})
    outbox = CountingOutbox(Outbox(tmp / "outbox.sqlite", device=DEVICE,
                                   signer=Ed25519Signer.generate()))
    w = Warehouse(outbox, config, tmp, readers=[BenchReader()], mono_ms=clock.mono_ms,
                  utc_now=clock.utc_now)
    bank = Ed25519Signer.generate()
    dispatcher = Dispatcher(DEVICE, outbox, {BANK: Verifier.from_pem(bank.public_key_pem())},
                            now=clock.utc_now)
    w.register(dispatcher)

    field = Field(args.tags)
    field.prepare()
    hexes = [e.hex() for e in field.epcs]
    bound = int(len(hexes) * 0.8) // LOT_SIZE * LOT_SIZE
    lots = [hexes[i:i + LOT_SIZE] for i in range(0, bound, LOT_SIZE)]
    loose = field.epcs[bound:]
    step_ms = ROUND_MS / len(field.epcs)

    # (c) the first sight of every tag
    decoder = Decoder()
    data = b"".join(field.frames(e, field.antenna[e])[2] for e in field.epcs)  # no misses
    rss_empty = rss_mib()
    t0 = time.perf_counter()
    first = through(decoder, data, w, clock, step_ms)
    clock.ms += ROUND_MS
    outbox.last_submitted.wait()
    first_s = time.perf_counter() - t0
    rss_known = rss_mib()

    # lots received (as `cocoon-agent warehouse receive` leaves them), half pledged by the bank
    for i, epcs in enumerate(lots):
        w.store.add_receipt(f"LOT-{i:04d}", [f"station-01/{i + 1}"], epcs, "310.5")
    w.housekeeping()
    pledged = list(range(0, len(lots), 2))
    for k in range(0, len(pledged), 10):
        names = [f"LOT-{i:04d}" for i in pledged[k:k + 10]]
        cmd = make_command(DEVICE, "pledge.create", {
            "lots": names, "tags": LOT_SIZE * len(names), "kg": "3105"}, bank,
            now=clock.utc_now())
        dispatcher.handle(json.dumps(cmd).encode())
    assert len(w.custody.pledges) == (len(pledged) + 9) // 10, "pledges refused"
    pledged_epcs = [bytes.fromhex(e) for i in pledged for e in lots[i]]
    outbox.counts.clear()

    # (a) and (b), interleaved round by round
    sampler = Sampler()
    sampler.start()
    time.sleep(0.2)
    rng = random.Random(11)
    reads = parse_reads = 0
    parse_s = 0.0
    rss_before = rss_mib()
    start = time.perf_counter()
    pipe_s = 0.0
    for n in range(args.rounds):
        for epc in rng.sample(field.epcs, MOVES_PER_ROUND):
            field.move(epc)
        for epc in rng.sample(loose, OUT_PER_ROUND):
            field.away.setdefault(epc, n + AWAY_ROUNDS)
        if n % BREACH_EVERY == 0:
            field.away.setdefault(rng.choice(pledged_epcs), n + AWAY_ROUNDS)
        data = field.round_bytes(n)
        t = time.perf_counter()
        parse_reads += parse_only(data)
        parse_s += time.perf_counter() - t
        t = time.perf_counter()
        round_start = clock.ms
        reads += through(decoder, data, w, clock, step_ms)
        clock.ms = round_start + ROUND_MS
        w.housekeeping()
        pipe_s += time.perf_counter() - t
    t = time.perf_counter()
    if outbox.last_submitted is not None:
        outbox.last_submitted.wait()
    pipe_s += time.perf_counter() - t
    end = time.perf_counter()
    sampler.stop.set()
    sampler.join()
    span = end - start
    rss = [sampler.at(start + span * q) for q in (0.25, 0.5, 0.75, 1.0)]
    peak = max(v for when, v in sampler.samples if start <= when <= end)
    w.close()
    outbox.close()

    rate, parse_rate = reads / pipe_s, parse_reads / parse_s
    growth = rss[3] - rss[0]
    events = sum(outbox.counts.values())
    print(f"warehouse benchmark: {args.tags:,} tags ({len(lots)} lots of {LOT_SIZE}, "
          f"{len(pledged)} pledged, {len(loose):,} loose) on {ANTENNAS} antennas, {args.rounds} "
          f"inventory rounds of {ROUND_MS // 1000} s warehouse time; real Decoder, Warehouse "
          f"and outbox (synchronous=FULL); {os.cpu_count()} CPUs")
    row("measure", "result", "target", "")
    row("(a) bare parse: bytes -> tag notices", f"{parse_rate:,.0f} reads/s")
    row("(b) parse -> presence -> events", f"{rate:,.0f} reads/s", f">= {TARGET:,} reads/s",
        "met" if rate >= TARGET else "MISSED")
    row("    (b) / (a)", f"{rate / parse_rate:.2f}")
    row("    reads; events recorded", f"{reads:,}; {events:,}")
    extra_us = (pipe_s / reads - parse_s / parse_reads) * 1e6
    row("    time per read beyond parsing", f"{extra_us:.1f} us")
    row("(c) first sight of every tag (tag.arrived)", f"{first / first_s:,.0f} reads/s")
    row("(d) RSS at 25 / 50 / 75 / 100 % of (b)", " / ".join(f"{v:.1f}" for v in rss) + " MiB",
        f"25->100 % <= +{FLAT_MIB:g} MiB", "met" if growth <= FLAT_MIB else "MISSED")
    row("    RSS before (b); peak during (b)", f"{rss_before:.1f}; {peak:.1f} MiB")
    per_tag = (rss_known - rss_empty) * 2**20 / len(field.epcs)
    row("    RSS growth in (c), per tag first seen", f"{per_tag:,.0f} B")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(outbox.counts.items()))
    print(f"events in (b): {kinds}")
    return 0 if rate >= TARGET and growth <= FLAT_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
