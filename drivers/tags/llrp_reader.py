"""`LLRPReader`: an LLRP reader on the network (`llrp://host[:5084]`), as a `TagReader`,
through the sllurp package's client.

sllurp speaks the protocol (capabilities, configuration, ROSpec, reports, keepalive
acknowledgements); this module owns the connection's life. Each read carries the antenna id
and peak RSSI (the ROSpec asks for both). The reader is asked for a keepalive every
`keepalive_s`; any message from it counts as a sign of life, and `silence_s` without one is
an outage: sllurp waits on its socket without a timeout, so a link that swallows packets
(a cut cable behind a switch) is only noticed this way. An outage or a closed connection is
reported once as `ReaderHealth(online=False)`, and a new client connects with exponential
backoff (sllurp's own reconnection waits 60 s between attempts and gives up; it is off).
`online=True` is reported when inventory runs, not when TCP connects. Once it runs, every
message from the reader (a report, a keepalive) adds one to `answers`: a reader that keeps
answering with no tag in its reports is watching an empty field, not broken.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from .reads import HealthReporting, ReaderHealth, TagRead, mono_ms

log = logging.getLogger(__name__)
DEFAULT_PORT = 5084
#: Messages that prove the reader is alive (sllurp calls back per message name).
_SIGNS_OF_LIFE = ("KEEPALIVE", "RO_ACCESS_REPORT", "READER_EVENT_NOTIFICATION",
                  "GET_READER_CAPABILITIES_RESPONSE", "GET_READER_CONFIG_RESPONSE",
                  "SET_READER_CONFIG_RESPONSE", "ADD_ROSPEC_RESPONSE",
                  "ENABLE_ROSPEC_RESPONSE", "DELETE_ROSPEC_RESPONSE",
                  "DELETE_ACCESSSPEC_RESPONSE")


def parse_url(url: str) -> tuple[str, int]:
    """`llrp://host[:port]` -> (host, port). Raises ValueError with what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "llrp" or not parts.hostname:
        raise ValueError(f"{url!r} is not an LLRP address like llrp://192.168.1.50:5084")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number 1..65535") from None
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{url!r}: an LLRP address has only a host and a port")
    return parts.hostname, port


class LLRPReader(HealthReporting):
    """One LLRP reader. `antennas`: the antenna ids to inventory (empty: all)."""

    def __init__(self, url: str, *, name: str | None = None, antennas: Sequence[int] = (),
                 silence_s: float = 10.0, keepalive_s: float | None = None,
                 connect_timeout: float = 5.0, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0, on_error: Callable | None = None):
        self.host, self.port = parse_url(url)
        if silence_s <= 0:
            raise ValueError("silence_s must be positive")
        if any(a < 1 for a in antennas):
            raise ValueError(f"antenna ids start at 1, got {list(antennas)}")
        self.url, self.name = url, name or url
        self.antennas = list(antennas) or [0]            # LLRP antenna 0: all antennas
        self.silence_s = silence_s
        self.keepalive_s = keepalive_s if keepalive_s is not None else silence_s / 3
        self.connect_timeout = connect_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.on_error = on_error                          # LLRP has no frames to reject
        self.reads = 0
        self.answers = 0        # messages from the reader while inventory runs
        sllurp_log = logging.getLogger("sllurp")
        if sllurp_log.level == logging.NOTSET:
            # sllurp logs every lost connection with a traceback; this reader reports
            # those as health. LOG_LEVEL=debug-style tracing stays possible by setting a level.
            sllurp_log.setLevel(logging.CRITICAL)

    def _config(self):
        from sllurp.llrp import LLRPReaderConfig

        selector = {"EnableROSpecID": False, "EnableSpecIndex": False,
                    "EnableInventoryParameterSpecID": False, "EnableAntennaID": True,
                    "EnableChannelIndex": False, "EnablePeakRSSI": True,
                    "EnableFirstSeenTimestamp": False, "EnableLastSeenTimestamp": False,
                    "EnableTagSeenCount": True, "EnableAccessSpecID": False}
        return LLRPReaderConfig({
            "antennas": list(self.antennas), "tx_power": 0, "report_every_n_tags": 1,
            "tag_content_selector": selector, "start_inventory": True,
            "reset_on_connect": True, "reconnect": False,
            "keepalive_interval": max(100, int(self.keepalive_s * 1000)),
        })

    # -- TagReader ----------------------------------------------------------------------------

    def run(self, on_read: Callable[[TagRead], None],
            on_health: Callable[[ReaderHealth], None], stop: threading.Event) -> None:
        from sllurp.llrp import LLRPReaderClient, LLRPReaderState
        from sllurp.llrp_errors import ReaderConfigurationError
        from sllurp.llrp_proto import LLRPError

        self._on_health = on_health
        delay = self.backoff_initial
        while not stop.is_set():
            try:
                config = self._config()
            except LLRPError as exc:  # a configuration sllurp refuses: retrying cannot help
                self._health(False, f"LLRP configuration refused: {exc}")
                stop.wait(self.backoff_max)
                continue
            client = LLRPReaderClient(self.host, self.port, config,
                                      timeout=self.connect_timeout)
            session = _Session(self, on_read)
            client.add_tag_report_callback(session.tags)
            for name in _SIGNS_OF_LIFE:
                client.add_message_callback(name, session.alive)
            client.add_state_callback(LLRPReaderState.STATE_INVENTORYING, session.inventorying)
            client.add_disconnected_callback(session.disconnected)
            try:
                client.connect()
            except (OSError, ReaderConfigurationError, LLRPError) as exc:
                client.hard_disconnect()
                self._health(False, f"cannot connect to {self.host}:{self.port}: {exc}")
                stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            try:
                if self._watch(client, session, stop):
                    delay = self.backoff_initial
            finally:
                self._close(client, polite=stop.is_set())
            if not stop.is_set():
                stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)

    def _watch(self, client, session: _Session, stop: threading.Event) -> bool:
        """Until stopped, disconnected or silent; True if inventory ran."""
        while not stop.wait(0.05):
            if session.lost.is_set() or not client.is_alive():
                self._health(False, f"connection to {self.host}:{self.port} closed")
                break
            quiet = time.monotonic() - session.last
            if quiet >= self.silence_s:
                what = ("no keepalive or report" if session.started.is_set()
                        else "inventory did not start")
                self._health(False, f"{what} from {self.host}:{self.port} for "
                                    f"{self.silence_s:g} s")
                break
        return session.started.is_set()

    @staticmethod
    def _close(client, *, polite: bool) -> None:
        """Stop inventory politely when we are stopping (the reader is fine), else just
        close the socket; wait for sllurp's thread either way."""
        if polite and client.is_alive():
            try:
                client.disconnect(timeout=1.0)
            except Exception:  # sllurp raises many kinds while a socket dies under it
                log.debug("polite LLRP disconnect failed", exc_info=True)
        client.hard_disconnect()
        client.join(2.0)


class _Session:
    """Callbacks for one sllurp client (they run on sllurp's socket thread)."""

    def __init__(self, reader: LLRPReader, on_read):
        self.reader, self.on_read = reader, on_read
        self.last = time.monotonic()
        self.started = threading.Event()
        self.lost = threading.Event()

    def alive(self, _client, _msg) -> None:
        self.last = time.monotonic()
        if self.started.is_set():
            self.reader.answers += 1

    def inventorying(self, _client, _state) -> None:
        self.started.set()
        self.last = time.monotonic()
        self.reader.answers += 1
        self.reader._health(True, "inventory running")

    def disconnected(self, *_args) -> None:
        self.lost.set()

    def tags(self, _client, reports) -> None:
        r = self.reader
        for tag in reports:
            try:
                epc = tag["EPC"]
                read = TagRead((epc.decode() if isinstance(epc, bytes) else str(epc)).lower(),
                               int(tag["PeakRSSI"]), int(tag["AntennaID"]), mono_ms())
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("tag reader %s: report without a usable EPC, antenna or RSSI "
                            "(%s): %r", r.name, exc, tag)
                continue
            r.reads += 1
            try:
                self.on_read(read)
            except Exception:
                log.exception("tag reader %s: read callback failed", r.name)
