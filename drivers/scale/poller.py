"""Reading an indicator that speaks only when asked: a `ScaleReader` plus a thread that asks.

An MT-SICS balance sends nothing until a command arrives, and an XK3190-A9 in command mode
answers one weight per command. `PollingReader` asks every `interval_s` and hands the answers
on as readings, with `ScaleReader`'s interface (`start`, `stop`, `state`, `request`):

    MT-SICS          `TA` (the tare the balance holds), then `SI` (the net weight at once,
                     with the balance's stable flag), joined into one reading of gross,
                     tare and net (`mtsics.with_tare`). A balance without `TA` (it answers
                     ES) gives a net weight whose tare is unknown, which no sale takes.
    XK3190-A9        C (tare), then D (net), joined into one reading of net, tare and gross
    command mode     (`xk3190_a9.net_with_tare`); the separate answers are not delivered, so a
                     tare answer is never taken for a load.

An indicator that stops answering for `silence_s` is reported as `LinkEvent(SILENT)`, as a
continuous indicator that stops talking is, and `OPEN` ("answers again") when it is back.
`open_scale` picks the plain reader or this one from the protocol.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import mtsics, xk3190_a9
from .errors import CommandFailed, CommandTimeout, CommandUnsupported, PortError
from .protocols import Protocol, get_protocol
from .reader import LinkEvent, LinkState, ReaderEvent, ScaleReader
from .reading import Reading, Reply

log = logging.getLogger(__name__)


def _ask_sics(reader: ScaleReader, timeout: float) -> Reading | None:
    try:
        tare = reader.request("TA", timeout)
    except CommandFailed:
        tare = None                 # ES/EL: the balance cannot say which tare it holds
    weight = reader.request("SI", timeout)
    if not isinstance(weight, Reading) or (tare is not None and not isinstance(tare, Reading)):
        raise CommandFailed("the balance answered TA or SI without a weight",
                            weight if isinstance(weight, Reply) else tare)
    return mtsics.with_tare(tare, weight)


def _ask_a9(reader: ScaleReader, timeout: float) -> Reading | None:
    tare = reader.request("tare", timeout)
    net = reader.request("net", timeout)
    if not isinstance(tare, Reading) or not isinstance(net, Reading):
        raise CommandFailed("the XK3190-A9 answered the tare or net command without a weight",
                            net if isinstance(net, Reply) else tare)
    return xk3190_a9.net_with_tare(tare, net)


# protocol name -> (how to ask once, whether the reader's own readings are delivered)
ASKING: dict[str, tuple[Callable[[ScaleReader, float], Reading | None], bool]] = {
    mtsics.NAME: (_ask_sics, False),
    xk3190_a9.NAME: (_ask_a9, False),
}


class PollingReader:
    """Reads the ask-and-answer indicator `protocol` on `url`; `on_event` gets what a
    `ScaleReader`'s callback gets, one call at a time. Other keyword arguments go to the
    `ScaleReader` (baudrate, settings, open_port, name...)."""

    def __init__(self, url: str, protocol: Protocol | str,
                 on_event: Callable[[ReaderEvent], None], *, interval_s: float = 0.1,
                 answer_timeout_s: float = 0.5, silence_s: float = 2.0, **reader_options):
        self.protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
        if self.protocol.continuous or self.protocol.name not in ASKING:
            raise CommandUnsupported(f"{self.protocol.spec} is not an ask-and-answer protocol "
                                     "this reader knows how to poll")
        self._ask, self._pass_readings = ASKING[self.protocol.name]
        self.url = url
        self.on_event = on_event
        self.interval_s, self.answer_timeout_s = interval_s, answer_timeout_s
        self.silence_s = silence_s
        self._deliver_lock = threading.Lock()
        self._stop = threading.Event()
        self._silent = False
        self._problem = ""                       # the last failed answer, logged once
        self._last_answer = time.monotonic()
        self.reader = ScaleReader(url, self.protocol, self._from_reader, silence_s=None,
                                  **reader_options)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"scale-poll {url}")

    # -- ScaleReader's interface -----------------------------------------------------------

    def start(self) -> PollingReader:
        self.reader.start()
        if self._thread.ident is None:
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.reader.stop(timeout)

    def __enter__(self) -> PollingReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.reader.running

    @property
    def state(self) -> LinkState | None:
        state = self.reader.state
        return LinkState.SILENT if self._silent and state is LinkState.OPEN else state

    def request(self, command, timeout: float = 2.0):
        return self.reader.request(command, timeout)

    def send(self, data: bytes) -> None:
        self.reader.send(data)

    # -- events ----------------------------------------------------------------------------

    def _deliver(self, event: ReaderEvent) -> None:
        with self._deliver_lock:
            try:
                self.on_event(event)
            except Exception:  # the callback is the caller's code; it must not end the loop
                log.exception("scale poller %s: event callback failed", self.url)

    def _from_reader(self, event: ReaderEvent) -> None:
        if isinstance(event, LinkEvent) and event.state is LinkState.OPEN:
            self._silent = False                 # (re)opened: silence counts from now
            self._last_answer = time.monotonic()
        elif isinstance(event, Reading | Reply) and not self._pass_readings:
            return                               # an answer: the poller delivers the joint one
        self._deliver(event)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.reader.state is not LinkState.OPEN:
                continue
            try:
                reading = self._ask(self.reader, self.answer_timeout_s)
            except CommandTimeout as exc:
                quiet = time.monotonic() - self._last_answer
                if not self._silent and quiet >= self.silence_s:
                    self._silent = True
                    log.warning("scale port %s silent: %s", self.url, exc)
                    self._deliver(LinkEvent(LinkState.SILENT, self.url,
                                            f"no answer for {quiet:.1f} s"))
                continue
            except PortError:
                continue            # the reader reports the port and reopens it
            except (CommandFailed, ValueError) as exc:
                if str(exc) != self._problem:
                    log.warning("scale port %s: %s", self.url, exc)
                self._problem = str(exc)
                reading = None      # it answers, so it is there; no weight this time
            else:
                self._problem = ""
            self._last_answer = time.monotonic()
            if self._silent:
                self._silent = False
                log.info("scale port %s answers again", self.url)
                self._deliver(LinkEvent(LinkState.OPEN, self.url, "answers again"))
            if reading is not None and not self._stop.is_set():
                self._deliver(reading)


def open_scale(url: str, protocol: Protocol | str, on_event: Callable[[ReaderEvent], None],
               **options) -> ScaleReader | PollingReader:
    """A `ScaleReader` for an indicator that talks by itself, a `PollingReader` for one that
    must be asked (MT-SICS, XK3190-A9 command mode). Not started."""
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if protocol.continuous:
        return ScaleReader(url, protocol, on_event, **options)
    return PollingReader(url, protocol, on_event, **options)
