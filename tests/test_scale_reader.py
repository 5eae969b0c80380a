"""The reader loop over real ptys (socat) with a simulated indicator per protocol: readings,
stability, overload, garbage, silence, commands, and an unplugged adapter coming back."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import serial

from drivers.scale import (
    CommandFailed,
    CommandTimeout,
    CommandUnsupported,
    GarbageError,
    LinkEvent,
    LinkState,
    PollingReader,
    PortError,
    Reading,
    Refusal,
    Reply,
    SalePolicy,
    ScaleReader,
    StabilityDetector,
    WeightKind,
    check_sale,
    open_scale,
    xk3190_a9,
)
from drivers.scale.sim_model import WeightModel
from drivers.scale.simulator import Simulator
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2}
POLICY = SalePolicy(division_g=Decimal(10))


class Events:
    """Collects what the reader delivers; waits for conditions with deadlines."""

    def __init__(self):
        self.items: list = []
        self.lock = threading.Lock()
        self.detector = StabilityDetector(count=3, window_s=1.0)
        self.stable: list[tuple[Reading, object]] = []

    def __call__(self, event) -> None:
        with self.lock:
            self.items.append(event)
            if isinstance(event, Reading):
                verdict = self.detector.feed(event, time.monotonic())
                if verdict.stable:
                    self.stable.append((event, verdict))

    def mark(self) -> int:
        with self.lock:
            return len(self.items)

    def since(self, mark: int) -> list:
        with self.lock:
            return self.items[mark:]

    def wait(self, predicate, mark=0, timeout=5.0, what=""):
        return wait_for(lambda: next((e for e in self.since(mark) if predicate(e)), None),
                        timeout, what=what or getattr(predicate, "__name__", "event"))

    def wait_link(self, state, mark=0, timeout=5.0):
        return self.wait(lambda e: isinstance(e, LinkEvent) and e.state is state, mark,
                         timeout, what=f"link {state.value}")

    def wait_stable(self, weight, mark_stable=0, timeout=5.0):
        def found():
            with self.lock:
                return next(((r, v) for r, v in self.stable[mark_stable:]
                             if r.weight == Decimal(weight)), None)
        return wait_for(found, timeout, what=f"stable {weight}")


def simulator(pair, protocol, **kw) -> Simulator:
    model = WeightModel(settle_s=0.15, seed=1)
    return Simulator(str(pair.peer), protocol, model, rate_hz=40, **kw).start()


CONTINUOUS = ["xk3190-a9", "xk3190-a12", "toledo", "mt-sics", "ad-ascii"]


@pytest.mark.parametrize("protocol", CONTINUOUS)
def test_readings_overload_garbage_and_replug(pty_pair, protocol):
    events = Events()
    sim = simulator(pty_pair, protocol)
    reader = ScaleReader(str(pty_pair.device), protocol, events, silence_s=None, **FAST)
    with reader:
        events.wait_link(LinkState.OPEN)
        if protocol == "mt-sics":
            assert isinstance(reader.request("SIR"), Reading)  # balances speak when asked
        sim.set_target("12.34")
        reading, verdict = events.wait_stable("12.34")
        assert reading.protocol == protocol and reading.unit.value == "kg"
        assert verdict.source == ("inferred" if protocol.startswith("xk3190") else "indicator")
        verdict_for_sale = check_sale(reading, POLICY, stable=verdict.stable)
        if protocol == "mt-sics":   # SIR streams net weights without their tare
            assert verdict_for_sale.codes == (Refusal.NET_WITHOUT_TARE,)
        else:
            assert verdict_for_sale.ok
        assert reading.grams() == 12340 and verdict.digest

        mark = events.mark()
        sim.inject(b"\xfe\xfe\x00garbage")
        events.wait(lambda e: isinstance(e, GarbageError), mark)
        events.wait(lambda e: isinstance(e, Reading), events.mark(), what="reading after noise")

        if protocol != "xk3190-a9":  # the A9 frame has no overload flag
            mark = events.mark()
            sim.overload()
            over = events.wait(lambda e: isinstance(e, Reading) and bool(e.condition()), mark)
            assert not check_sale(over, POLICY).ok
            sim.overload(False)

        mark = events.mark()
        pty_pair.unplug()  # the USB adapter is pulled out
        lost = events.wait_link(LinkState.LOST, mark)
        assert lost.port == str(pty_pair.device)
        sim.stop()
        assert sim.error is not None  # the simulator saw its side vanish too

        pty_pair.plug()
        events.wait_link(LinkState.OPEN, mark)
        sim = simulator(pty_pair, protocol)  # after the open: opening flushes pending input
        if protocol == "mt-sics":
            # A balance that comes back says who it is, then must be asked again.
            events.wait(lambda e: isinstance(e, Reply) and e.command == "I4", mark)
            reader.request("SIR")
        stable_mark = len(events.stable)
        sim.set_target("7.50")
        events.wait_stable("7.50", stable_mark)
        sim.stop()
    assert reader.state is LinkState.CLOSED and not reader.running


def test_silence_is_reported_and_cleared(pty_pair):
    events = Events()
    sim = simulator(pty_pair, "xk3190-a12")
    with ScaleReader(str(pty_pair.device), "xk3190-a12", events, silence_s=0.3, **FAST):
        events.wait(lambda e: isinstance(e, Reading))
        mark = events.mark()
        sim.pause()
        silent = events.wait_link(LinkState.SILENT, mark)
        assert "no data for 0.3 s" in silent.detail
        sim.resume()
        again = events.wait_link(LinkState.OPEN, mark)
        assert again.detail == "data again"
        mark = events.mark()
        sim.stop()  # the indicator is switched off: the port stays, the data stops
        events.wait_link(LinkState.SILENT, mark)


def test_port_missing_at_start_is_retried(pty_pair):
    pty_pair.unplug()
    events = Events()
    attempts = []

    def open_port(url, **kw):
        attempts.append(url)
        return serial.serial_for_url(url, **kw)

    with ScaleReader(str(pty_pair.device), "ad-ascii", events, open_port=open_port, **FAST):
        lost = events.wait_link(LinkState.LOST)
        assert "cannot open" in lost.detail
        wait_for(lambda: len(attempts) >= 3, what="three attempts to open")
        pty_pair.plug()
        events.wait_link(LinkState.OPEN)
        sim = simulator(pty_pair, "ad-ascii")
        events.wait(lambda e: isinstance(e, Reading))
        sim.stop()
    # One report per loss, not one per failed attempt.
    assert sum(isinstance(e, LinkEvent) and e.state is LinkState.LOST
               for e in events.items) == 1


def test_mtsics_commands(pty_pair):
    events = Events()
    with ScaleReader(str(pty_pair.device), "mt-sics", events, **FAST) as reader:
        events.wait_link(LinkState.OPEN)  # opening flushes input: power up after it
        sim = simulator(pty_pair, "mt-sics", serial_number="B123456789")
        power_up = events.wait(lambda e: isinstance(e, Reply))
        assert (power_up.command, power_up.fields) == ("I4", ("B123456789",))
        sim.set_target("1.25")
        answer = reader.request("S")  # waits for stability, like the balance
        assert (answer.weight, answer.stable) == (Decimal("1.25"), True)
        sim.set_target("2.00")
        dynamic = reader.request("SI")
        assert dynamic.stable is False
        wait_for(lambda: sim.display().stable, what="settled")
        zero = reader.request("Z")
        assert (zero.command, zero.status) == ("Z", "A")
        assert reader.request("SI").weight == Decimal("0.00")
        with pytest.raises(CommandFailed, match="ES .syntax error"):
            reader.request("XYZ")
        assert reader.request("@").command == "I4"
    assert sim.commands[:2] == [b"S", b"SI"]
    sim.stop()


def test_mtsics_s_gives_up_while_moving(pty_pair):
    events = Events()
    sim = simulator(pty_pair, "mt-sics", s_timeout_s=0.2)
    sim.model.settle_s = 30.0
    with ScaleReader(str(pty_pair.device), "mt-sics", events, **FAST) as reader:
        events.wait_link(LinkState.OPEN)
        sim.set_target("3.00")
        answer = reader.request("S")
        assert isinstance(answer, Reply) and (answer.command, answer.status) == ("S", "I")
    sim.stop()


def test_xk3190_a9_command_mode(pty_pair):
    events = Events()
    sim = simulator(pty_pair, "xk3190-a9", mode="command")
    protocol = "xk3190-a9?mode=command"
    with ScaleReader(str(pty_pair.device), protocol, events, **FAST) as reader:
        events.wait_link(LinkState.OPEN)
        assert reader.request("handshake") == Reply(
            "xk3190-a9", bytes.fromhex("02 41 41 30 30 03"), "A", "", ("A",))
        sim.set_target("12.34")
        wait_for(lambda: sim.display().stable, what="settled")
        gross = reader.request("gross")
        assert (gross.gross, gross.kind.value) == (Decimal("12.34"), "gross")
        assert reader.request("tare").tare == Decimal("0.00")
        assert reader.request("D").net == Decimal("12.34")
    assert sim.commands[1] == xk3190_a9.command("gross").data
    sim.stop()


# -- indicators that speak only when asked: the polling reader ---------------------------------

POLL_FAST = {"interval_s": 0.05, "answer_timeout_s": 0.3, "silence_s": 0.5, **FAST}


def test_polling_an_mtsics_balance_with_si(pty_pair):
    events = Events()
    sim = simulator(pty_pair, "mt-sics", power_up=False)
    with PollingReader(str(pty_pair.device), "mt-sics", events, **POLL_FAST) as reader:
        sim.set_target("1.25")
        reading, verdict = events.wait_stable("1.25")
        assert reading.stable is True and verdict.source == "indicator"
        assert set(sim.commands) == {b"TA", b"SI"}        # asked, never streaming on its own
        assert (reading.kind, reading.tare, reading.gross) == (WeightKind.GROSS, 0,
                                                               Decimal("1.25"))
        mark = events.mark()
        sim.pause()                                       # the balance hangs
        silent = events.wait_link(LinkState.SILENT, mark)
        assert "no answer" in silent.detail and reader.state is LinkState.SILENT
        sim.resume()
        again = events.wait_link(LinkState.OPEN, mark)
        assert again.detail == "answers again" and reader.state is LinkState.OPEN
        mark = events.mark()
        events.wait(lambda e: isinstance(e, Reading), mark, what="readings again")
    sim.stop()


def test_polling_an_mtsics_balance_asks_the_tare_it_holds(pty_pair):
    """`S S 20.350 kg` with 2 kg held as tare on the balance is a net of 20.350 kg: the
    reading says so, with the tare, so that no sale takes the basket off a second time."""
    events = Events()
    sim = simulator(pty_pair, "mt-sics", power_up=False)
    with PollingReader(str(pty_pair.device), "mt-sics", events, **POLL_FAST):
        sim.set_target("2.000")
        events.wait_stable("2.00")
        assert sim.take_tare()
        sim.set_target("22.350")
        reading, _ = events.wait_stable("20.35")
        assert (reading.kind, reading.net, reading.tare, reading.gross) == (
            WeightKind.NET, Decimal("20.35"), Decimal("2.00"), Decimal("22.35"))
    sim.stop()


def test_polling_an_mtsics_balance_without_ta_gives_an_unknown_tare(pty_pair):
    events = Events()
    sim = simulator(pty_pair, "mt-sics", power_up=False, sics_tare=False)
    with PollingReader(str(pty_pair.device), "mt-sics", events, **POLL_FAST):
        sim.set_target("1.25")
        reading, _ = events.wait_stable("1.25")
        assert (reading.kind, reading.tare) == (WeightKind.NET, None)
    sim.stop()


def test_polling_an_a9_in_command_mode_joins_tare_and_net(pty_pair):
    events = Events()
    sim = simulator(pty_pair, "xk3190-a9", mode="command")
    with PollingReader(str(pty_pair.device), "xk3190-a9?mode=command", events, **POLL_FAST):
        sim.set_target("0.50")                            # the basket
        wait_for(lambda: sim.display().stable, what="settled")
        assert sim.take_tare()
        sim.set_target("10.50")                           # basket and cocoons
        reading, verdict = events.wait_stable("10.00")
        assert (reading.kind, reading.gross, reading.tare, reading.net) == (
            WeightKind.NET, Decimal("10.50"), Decimal("0.50"), Decimal("10.00"))
        assert reading.raw == (xk3190_a9.encode_answer("A", "C", Decimal("0.50"), 2)
                               + xk3190_a9.encode_answer("A", "D", Decimal("10.00"), 2))
        assert verdict.source == "inferred" and len(verdict.frames) == 3
    readings = [e for e in events.items if isinstance(e, Reading)]
    assert readings and all(r.kind is WeightKind.NET and r.tare is not None for r in readings)
    asked = {bytes(c) for c in sim.commands}
    assert asked == {xk3190_a9.command("tare").data, xk3190_a9.command("net").data}
    sim.stop()


def test_open_reader_polls_only_where_the_protocol_needs_it():
    assert isinstance(open_scale("loop://", "xk3190-a9", print), ScaleReader)
    assert isinstance(open_scale("loop://", "xk3190-a9?mode=command", print), PollingReader)
    assert isinstance(open_scale("loop://", "mt-sics", print), PollingReader)
    with pytest.raises(CommandUnsupported):
        PollingReader("loop://", "ad-ascii", print)


# -- without a pty: pyserial's loop:// echoes what is written ---------------------------------

def test_loop_url_callback_errors_do_not_stop_the_reader():
    seen = []

    def callback(event):
        seen.append(event)
        if isinstance(event, Reading) and len(seen) < 3:
            raise RuntimeError("a buggy consumer")

    frame = xk3190_a9.encode(Decimal("1.00"), 2)
    with ScaleReader("loop://", "xk3190-a9", callback, **FAST) as reader:
        wait_for(lambda: reader.state is LinkState.OPEN)
        reader.send(frame)
        reader.send(frame)
        wait_for(lambda: sum(isinstance(e, Reading) for e in seen) == 2, what="two readings")


def test_request_timeout_and_unsupported_commands():
    with ScaleReader("loop://", "mt-sics", lambda e: None, **FAST) as reader:
        wait_for(lambda: reader.state is LinkState.OPEN)
        with pytest.raises(CommandTimeout, match="no answer to mt-sics SI"):
            reader.request("SI", timeout=0.2)  # loop:// echoes "SI", which is not an answer
    with pytest.raises(CommandUnsupported, match="output only"):
        ScaleReader("loop://", "ad-ascii", lambda e: None).request("SI")


def test_send_before_open_and_invalid_url():
    events = Events()
    reader = ScaleReader("nosuchscheme://x", "ad-ascii", events)
    with pytest.raises(PortError, match="not open"):
        reader.send(b"x")
    with reader:
        closed = events.wait_link(LinkState.CLOSED)
        assert "cannot use nosuchscheme://x" in closed.detail
        wait_for(lambda: not reader.running, what="reader thread ended")


# -- other URL kinds: a TCP serial server (ser2net) and spy:// --------------------------------

def test_socket_url_with_a_server_that_drops_the_client():
    """A ser2net-like TCP server sends A&D lines; it drops the connection once, the reader
    reports the loss and reconnects."""
    import socket

    from drivers.scale import ad_ascii

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def serve():
        for weight, lines in (("1.00", 10), ("2.00", 500)):
            conn, _ = server.accept()
            with conn:  # the first client is dropped after 10 lines
                line = ad_ascii.encode(Decimal(weight), "kg")
                for _ in range(lines):
                    if done.is_set():
                        return
                    try:
                        conn.sendall(line)
                    except OSError:
                        break
                    done.wait(0.02)

    threading.Thread(target=serve, daemon=True).start()
    events = Events()
    try:
        with ScaleReader(f"socket://127.0.0.1:{port}", "ad-ascii", events, **FAST):
            events.wait(lambda e: isinstance(e, Reading) and e.weight == Decimal("1.00"))
            lost = events.wait_link(LinkState.LOST)
            assert "socket disconnected" in lost.detail
            events.wait(lambda e: isinstance(e, Reading) and e.weight == Decimal("2.00"))
    finally:
        done.set()
        server.close()


def test_spy_url_logs_the_traffic(pty_pair, tmp_path):
    log = tmp_path / "spy.txt"
    events = Events()
    sim = simulator(pty_pair, "ad-ascii")
    url = f"spy://{pty_pair.device}?file={log}"
    with ScaleReader(url, "ad-ascii", events, **FAST):
        events.wait(lambda e: isinstance(e, Reading))
    sim.stop()
    assert " RX " in log.read_text()  # pyserial's hex dump of what was read
