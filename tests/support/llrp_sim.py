"""An LLRP reader simulator: a TCP server on 127.0.0.1 speaking the LLRP 1.0.1 messages the
sllurp client uses, encoded here byte by byte (sllurp only encodes the client's side).

    connect         -> READER_EVENT_NOTIFICATION (ConnectionAttemptEvent: Success)
    GET_READER_CAPABILITIES -> ..._RESPONSE (status, GeneralDeviceCapabilities with the
                       antenna count, RegulatoryCapabilities: power table, RF mode table)
    GET_READER_CONFIG, SET_READER_CONFIG (its KeepaliveSpec sets the keepalive period),
    DELETE_ACCESSSPEC, DELETE_ROSPEC, ADD_ROSPEC (its AISpec names the antennas),
    ENABLE_ROSPEC (inventory starts), START/STOP/DISABLE_ROSPEC, CLOSE_CONNECTION -> responses
    then      RO_ACCESS_REPORT every `report_s` (TagReportData: EPC-96, AntennaID, PeakRSSI,
              TagSeenCount) from a TagField, and KEEPALIVE every keepalive period.

Like a real reader it drops a client that leaves `max_missed_keepalives` keepalives without
KEEPALIVE_ACK. Faults: `hang()` (connection kept, nothing sent: only keepalives reveal it),
`drop()` (closes the connection), `refuse(True)` (new connections closed at once).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from drivers.tags.sim_field import TagField

VERSION = 1
MSG = {"GET_READER_CAPABILITIES": 1, "GET_READER_CONFIG": 2, "SET_READER_CONFIG": 3,
       "CLOSE_CONNECTION": 14, "ADD_ROSPEC": 20, "DELETE_ROSPEC": 21, "START_ROSPEC": 22,
       "STOP_ROSPEC": 23, "ENABLE_ROSPEC": 24, "DISABLE_ROSPEC": 25, "ADD_ACCESSSPEC": 40,
       "DELETE_ACCESSSPEC": 41, "ENABLE_ACCESSSPEC": 42, "DISABLE_ACCESSSPEC": 43,
       "ENABLE_EVENTS_AND_REPORTS": 64, "KEEPALIVE_ACK": 72}
RESPONSE = {1: 11, 2: 12, 3: 13, 14: 4, 20: 30, 21: 31, 22: 32, 23: 33, 24: 34, 25: 35,
            40: 50, 41: 51, 42: 52, 43: 53}
RO_ACCESS_REPORT, KEEPALIVE, READER_EVENT_NOTIFICATION = 61, 62, 63


# -- encoding ---------------------------------------------------------------

def message(msg_type: int, body: bytes, msg_id: int = 0) -> bytes:
    return struct.pack("!HII", VERSION << 10 | msg_type, 10 + len(body), msg_id) + body


def tlv(param_type: int, body: bytes) -> bytes:
    return struct.pack("!HH", param_type, 4 + len(body)) + body


def tv(param_type: int, fmt: str, *values) -> bytes:
    return bytes([0x80 | param_type]) + struct.pack("!" + fmt, *values)


def status(code: int = 0, text: str = "") -> bytes:
    data = text.encode()
    return tlv(287, struct.pack("!HH", code, len(data)) + data)


def capabilities(antennas: int) -> bytes:
    firmware = b"sim-1.0"
    general = tlv(137, struct.pack("!HHIIH", antennas, 0x4000, 25882, 1, len(firmware))
                  + firmware)
    powers = b"".join(tlv(145, struct.pack("!HH", i, 1000 + 100 * i)) for i in range(1, 21))
    frequency = tlv(146, b"\x00")
    mode = tlv(328, tlv(329, struct.pack("!IBBBBIIIII", 1000, 0x80, 2, 0, 4, 160000,
                                         1500, 6250, 25000, 0)))
    regulatory = tlv(143, struct.pack("!HH", 156, 0) + tlv(144, powers + frequency + mode))
    return status() + general + regulatory


def tag_report(epc: bytes, antenna: int, rssi: int, seen: int = 1) -> bytes:
    if len(epc) == 12:
        epc_param = tv(13, "12s", epc)
    else:
        epc_param = tlv(241, struct.pack("!H", len(epc) * 8) + epc)
    return tlv(240, epc_param + tv(1, "H", antenna) + tv(6, "b", rssi) + tv(8, "H", seen))


def connection_attempt(status_code: int = 0) -> bytes:
    stamp = tlv(128, struct.pack("!Q", time.time_ns() // 1000))
    return tlv(246, stamp + tlv(256, struct.pack("!H", status_code)))


# -- decoding what the client sends ---------------------------------------------------------------

def params(data: bytes):
    """(type, body) of each TLV parameter in `data` (TV parameters are not sent by clients
    in the messages read here)."""
    while len(data) >= 4:
        ptype, length = struct.unpack("!HH", data[:4])
        if length < 4 or ptype & 0x8000:
            return
        yield ptype & 0x3FF, data[4:length]
        data = data[length:]


def keepalive_ms(set_reader_config: bytes) -> int | None:
    for ptype, body in params(set_reader_config[1:]):
        if ptype == 220 and len(body) >= 5:
            trigger, interval = struct.unpack("!BI", body[:5])
            return interval if trigger == 1 else None
    return None


def rospec_antennas(add_rospec: bytes) -> list[int]:
    for ptype, body in params(add_rospec):
        if ptype == 177:                               # ROSpec: id, priority, state
            for sub, sbody in params(body[6:]):
                if sub == 183:                         # AISpec: count, antenna ids
                    (n,) = struct.unpack("!H", sbody[:2])
                    return list(struct.unpack(f"!{n}H", sbody[2:2 + 2 * n]))
    return [0]


# -- the server ---------------------------------------------------------------

class LLRPSimulator:
    def __init__(self, field: TagField | None = None, *, report_s: float = 0.05,
                 max_missed_keepalives: int = 3):
        self.field = field or TagField()
        self.report_s, self.max_missed_keepalives = report_s, max_missed_keepalives
        self.received: list[int] = []             # message types from clients, in order
        self.connections = 0
        self.reports_sent = 0
        self.keepalive_ms: int | None = None
        self.antennas: list[int] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._hung = threading.Event()
        self._refuse = threading.Event()
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="llrp-sim")

    @property
    def url(self) -> str:
        return f"llrp://127.0.0.1:{self.port}"

    def start(self) -> LLRPSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.drop()
        self._server.close()
        if self._thread.ident is not None:
            self._thread.join(5)

    def __enter__(self) -> LLRPSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def hang(self) -> None:
        self._hung.set()

    def resume(self) -> None:
        self._hung.clear()

    def refuse(self, on: bool = True) -> None:
        (self._refuse.set if on else self._refuse.clear)()

    def drop(self) -> None:
        with self._lock:
            conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def inventorying(self) -> bool:
        return self._conn is not None and bool(self.antennas)

    def _serve(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refuse.is_set():
                conn.close()
                continue
            self.connections += 1
            with self._lock:
                self._conn = conn
            try:
                self._session(conn)
            except OSError:
                pass
            finally:
                with self._lock:
                    self._conn = None
                conn.close()
                self.antennas = []

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(0.01)
        send = conn.sendall
        send(message(READER_EVENT_NOTIFICATION, connection_attempt()))
        buf = b""
        inventory = False
        self.keepalive_ms = None
        next_report = next_keepalive = time.monotonic()
        unacked = 0
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            except TimeoutError:
                pass
            while len(buf) >= 10:
                head, length, msg_id = struct.unpack("!HII", buf[:10])
                if len(buf) < length:
                    break
                msg_type, body, buf = head & 0x3FF, buf[10:length], buf[length:]
                self.received.append(msg_type)
                if self._hung.is_set():
                    continue
                if msg_type == MSG["KEEPALIVE_ACK"]:
                    unacked = 0
                    continue
                if msg_type == MSG["SET_READER_CONFIG"]:
                    self.keepalive_ms = keepalive_ms(body)
                    next_keepalive = time.monotonic() + (self.keepalive_ms or 0) / 1000
                elif msg_type == MSG["ADD_ROSPEC"]:
                    self.antennas = rospec_antennas(body)
                elif msg_type in (MSG["ENABLE_ROSPEC"], MSG["START_ROSPEC"]):
                    inventory = True
                elif msg_type in (MSG["DELETE_ROSPEC"], MSG["DISABLE_ROSPEC"],
                                  MSG["STOP_ROSPEC"]):
                    inventory = False
                if msg_type in RESPONSE:
                    body = (capabilities(self.field.antennas)
                            if msg_type == MSG["GET_READER_CAPABILITIES"] else status())
                    send(message(RESPONSE[msg_type], body, msg_id))
                if msg_type == MSG["CLOSE_CONNECTION"]:
                    return
            if self._hung.is_set():
                continue
            now = time.monotonic()
            if inventory and now >= next_report:
                next_report = max(next_report + self.report_s, now)
                wanted = set(self.antennas) - {0}
                reports = [tag_report(s.epc, s.antenna, s.rssi) for s in self.field.round()
                           if not wanted or s.antenna in wanted]
                if reports:
                    send(message(RO_ACCESS_REPORT, b"".join(reports)))
                    self.reports_sent += len(reports)
            if self.keepalive_ms and now >= next_keepalive:
                if unacked >= self.max_missed_keepalives:
                    return                              # the reader drops a dead client
                next_keepalive = now + self.keepalive_ms / 1000
                unacked += 1
                send(message(KEEPALIVE, b""))
