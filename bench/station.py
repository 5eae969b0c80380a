"""Benchmark of the station: swipe to holder shown, confirm to durable, over many sales.

    .venv/bin/python bench/station.py [--sales 200] [--auth psam|ed25519|none] [--alg sm4|3des]

Everything is the production path on simulated hardware: a private pcscd with a vpcd reader
and virtual farmer CPU cards (drivers.vpcd), the CardMonitor and CardDesk, a Yaohua XK3190-A9
simulated on a socat pty read by ScaleReader and ScaleJudge, the EffectRunner running the pure
PurchaseFlow, and a real outbox (synchronous=FULL). No broker: forwarding is measured by
bench/spine.py.

(a) swipe -> holder shown: from plugging the card into the reader to the station showing the
    farmer's name (pcscd noticing the card, the monitor, connecting, SELECT and the reads, the
    issuer signature check, the INTERNAL AUTHENTICATE challenge, the flow); and the part of it
    from the monitor reporting the card to the holder shown (the agent's own share: pcscd
    notices a card by polling its reader driver). With `--auth psam` (the default, as the
    station's default) the challenge is the PSAM scheme's mutual authentication: INTERNAL
    AUTHENTICATE, GET CHALLENGE and EXTERNAL AUTHENTICATE to the card and two INIT FOR DESCRYPT
    and CIPHER DATA pairs to a virtual PSAM in the second reader; `--auth ed25519` is the
    card's own key pair (one INTERNAL AUTHENTICATE), `--auth none` no challenge.
(b) confirm -> durable: from the clerk's confirmation to `purchase.recorded` committed with
    fsync (the voucher drawn in the same transaction).
Beside them, measured in the same run: (c) a bare APDU round trip (SELECT through pcscd to a
virtual card), (d) a bare fsync of one 4 KiB write in the outbox's folder.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.contract.signing import Ed25519Signer, Verifier
from agent.station import purchase as p

READER = "PCD 00 00"
SAM_READER = "PCD 00 01"
HOLDER = {"farmer_id": "F-0001", "name": "Bench Farmer", "address": "Bench town",
          "labour": 2, "mulberry_area_mu": "3", "silkworm_room_area_m2": "40",
          "account_ref": "acct-bench"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<44} {len(ms):>5} {statistics.median(ms):>9.2f} {pct(ms, 0.99):>9.2f} "
            f"{max(ms):>9.2f}")


class TimedOutbox:
    """The real outbox, with the moment each purchase.recorded append returned."""

    def __init__(self, outbox):
        self._outbox = outbox
        self.durable: queue.Queue = queue.Queue()

    def append(self, draft, **kw):
        seq = self._outbox.append(draft, **kw)
        if draft.type == "purchase.recorded":
            self.durable.put(time.perf_counter())
        return seq

    def __getattr__(self, name):
        return getattr(self._outbox, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=200)
    parser.add_argument("--auth", choices=("psam", "ed25519", "none"), default="psam")
    parser.add_argument("--alg", choices=("sm4", "3des"), default="sm4")
    args = parser.parse_args()

    from drivers.vpcd.pcscd import SOCKET_ENV, Pcscd

    root = Path(tempfile.mkdtemp(prefix="cocoon-bench-station-"))
    os.environ[SOCKET_ENV] = str(root / "pcscd.comm")        # before any PC/SC call

    from agent.demo.bench import Bench
    from agent.spine.outbox import Outbox
    from agent.station.blacklist import Blacklist
    from agent.station.card_desk import CardDesk
    from agent.station.effects import EffectRunner
    from agent.station.weighing import ScaleJudge
    from drivers.pcsc import ApduTransport, CardInserted, CardMonitor
    from drivers.pcsc import farmer_card as fc
    from drivers.pcsc.psam import USAGE_EXTERNAL, USAGE_INTERNAL
    from drivers.pcsc.symmetric import ALG_3DES, ALG_SM4
    from drivers.scale import Reading, SalePolicy, ScaleReader, StabilityDetector
    from drivers.vpcd.cpu_card import CpuFarmerCard
    from drivers.vpcd.psam import VirtualPsam, card_keys

    pcscd = Pcscd(root / "pcscd", root / "pcscd.comm")
    pcscd.start()
    bench = Bench(root / "bench")          # only for its scale on a pty
    bench._start_scale()
    signer, issuer = Ed25519Signer.generate(), Ed25519Signer.generate()
    outbox = TimedOutbox(Outbox(root / "outbox.sqlite", device="station-bench", signer=signer))
    shown: queue.Queue = queue.Queue()

    def display(text: str) -> None:
        shown.put((time.perf_counter(), text))

    station = EffectRunner("station-bench", outbox, write_card=lambda f, s: desk.write_card(f, s),
                           display=display, timeouts=p.Timeouts(duplicate_window_s=0.0))
    desk = CardDesk(reader=READER, issuer_verifier=Verifier.from_pem(issuer.public_key_pem()),
                    outbox=outbox, submit=station.submit, blacklist=Blacklist(outbox),
                    auth=args.auth, sam_reader=SAM_READER)
    judge = ScaleJudge("bench-1", SalePolicy(Decimal("10")), tare_g=0,
                       detector=StabilityDetector(5, 0.5))

    def on_scale(event):
        if isinstance(event, Reading):
            station.submit(p.ScaleUpdate(judge.feed(event, time.monotonic())))

    reader = ScaleReader(str(bench.scale_port), "xk3190-a9", on_scale).start()
    stop = threading.Event()
    worker = threading.Thread(target=station.run, args=(stop,), daemon=True)
    worker.start()
    bench.load_platform("52.40")

    def wait_text(prefix: str, timeout: float = 15.0, *, within: bool = False) -> float:
        deadline = time.monotonic() + timeout
        while True:
            at, text = shown.get(timeout=max(0.01, deadline - time.monotonic()))
            if text.startswith(prefix) or (within and prefix in text):
                return at
            if os.environ.get("BENCH_TRACE"):
                print("  screen:", text, file=sys.stderr)
            if text.startswith(("Card refused", "SALE NOT RECORDED")):
                raise RuntimeError(text)

    reader_slot = pcscd.reader(READER)
    alg = {"sm4": ALG_SM4, "3des": ALG_3DES}[args.alg]
    masters = {USAGE_INTERNAL: os.urandom(16), USAGE_EXTERNAL: os.urandom(16)}
    VirtualPsam(pcscd.reader(SAM_READER), alg=alg, masters=masters).insert()
    cards = []
    for i in range(10):
        serial = bytes.fromhex(f"860011223344{i:04d}")
        card = CpuFarmerCard(reader_slot, serial=serial, sym_alg=alg,
                             sym_keys=card_keys(alg, masters, serial))
        with card, ApduTransport.open(READER) as t:
            fc.issue_cpu_card(t, HOLDER, issuer)   # its own key too (for --auth ed25519)
        cards.append(card)
    detected: queue.Queue = queue.Queue()

    def observe(event):
        if isinstance(event, CardInserted):
            detected.put(time.perf_counter())
        desk.observe(event)

    monitor = CardMonitor(observe).start()   # after issuing: the desk sees only sales

    station.submit(p.StaffCard(p.Staff("S-1", "Bench Clerk", "clerk")))
    wait_text("Bench Clerk signed in")
    swipe, read, durable = [], [], []
    for n in range(args.sales):
        card = cards[n % len(cards)]
        t0 = time.perf_counter()
        card.insert(timeout=10)
        holder_shown = wait_text("Farmer Bench Farmer")
        swipe.append(holder_shown - t0)
        reported = [detected.get(timeout=5)]
        while not detected.empty():              # a ghost swap may report the card twice
            reported.append(detected.get())
        read.append(holder_shown - max(t for t in reported if t <= holder_shown))
        wait_text("Net ")                       # the stable weight, already on the platform
        station.submit(p.Graded(p.Priced("+1", Decimal("39.30"), Decimal("2043.60"), {})))
        wait_text("Farmer confirms?", within=True)      # the priced lot, shown to confirm
        t1 = time.perf_counter()
        station.submit(p.Confirm())
        durable.append(outbox.durable.get(timeout=15) - t1)
        wait_text("Sale recorded")
        card.remove()
    stop.set()

    # (c) bare APDU round trips, (d) bare fsyncs, in the same run
    apdu = []
    with CpuFarmerCard(reader_slot) as card, ApduTransport.open(READER) as t:
        select = bytes.fromhex("00A4040008F0434F434F4F4E0100")
        for _ in range(args.sales):
            t0 = time.perf_counter()
            t.transmit(select)
            apdu.append(time.perf_counter() - t0)
    fsyncs = []
    fd = os.open(root / "fsync.probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(args.sales):
            os.pwrite(fd, os.urandom(4096), 0)
            t0 = time.perf_counter()
            os.fsync(fd)
            fsyncs.append(time.perf_counter() - t0)
    finally:
        os.close(fd)

    monitor.stop()
    desk.close()                            # the PSAM's connection, before pcscd goes
    reader.stop()
    outbox.close()
    bench.scale.stop()
    bench.socat.terminate()
    pcscd.stop()
    print(f"station benchmark: {args.sales} sales through pcscd (vpcd), a pty scale and a "
          f"real outbox; card challenge: {args.auth}"
          + (f" ({args.alg})" if args.auth == "psam" else "") + f"; {os.cpu_count()} CPUs")
    print(f"{'measure':<44} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    print(row("(a) card swipe -> holder shown", swipe))
    print(row("    of which: card reported -> holder shown", read))
    print(row("(b) confirm -> purchase.recorded durable", durable))
    print(row("(c) bare APDU round trip (SELECT, pcscd)", apdu))
    print(row("(d) bare fsync of a 4 KiB write", fsyncs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
