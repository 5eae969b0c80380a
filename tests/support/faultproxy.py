"""A small TCP proxy on 127.0.0.1 that injects link faults between a client and a server.

Modes (`FaultProxy.set_mode`), each taking effect before `set_mode` returns:

- ``pass``: new connections are forwarded to the target.
- ``blackhole``: every current connection silently swallows bytes in both directions from now
  on (the proxy never closes it; when one end closes, the other is left hanging), and new
  connections are accepted and swallowed without reaching the target. Like a route that
  vanished: TCP stays up, nothing gets through. A connection once blackholed stays so, even
  after going back to ``pass`` (bytes were lost, the stream cannot be resumed).
- ``reset``: every current connection is closed at once with an RST (SO_LINGER 0) on both sides,
  and every new one is reset as soon as it is accepted, for as long as the mode lasts.
- ``refuse``: the listening socket is closed, so new connections are refused (ECONNREFUSED);
  current connections are left alone. Leaving the mode listens again on the same port.

Threads: one acceptor that owns the listening socket, and one pump thread per direction of each
connection. Everything is local: the proxy listens on 127.0.0.1 and connects only to the target
given (a local broker in the tests).
"""

from __future__ import annotations

import select
import socket
import struct
import threading

MODES = ("pass", "blackhole", "reset", "refuse")
_CHUNK = 65536
_IO_TIMEOUT = 0.2


def _rst_close(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.close()
    except OSError:
        pass


class _Conn:
    """One proxied connection: client side, optional upstream side, a pump thread for each."""

    def __init__(self, proxy: FaultProxy, client: socket.socket,
                 upstream: socket.socket | None, swallow: bool):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.swallow = swallow
        self.kill = False  # pumps stop
        self.rst = False  # ... and the sockets are closed with an RST
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._open_sides = {"client": True, "upstream": upstream is not None}
        for sock in (client, upstream):
            if sock is not None:
                sock.settimeout(_IO_TIMEOUT)

    def start(self) -> None:
        pairs = [(self.client, self.upstream, "client")]
        if self.upstream is not None:
            pairs.append((self.upstream, self.client, "upstream"))
        for src, dst, side in pairs:
            threading.Thread(target=self._pump, args=(src, dst, side),
                             name=f"faultproxy-{side}", daemon=True).start()

    def blackhole(self) -> None:
        self.swallow = True

    def reset(self) -> None:
        with self._lock:
            self.rst = True
            self.kill = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")  # never drained: stays readable until the end
        except OSError:
            pass

    def _send_all(self, dst: socket.socket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self.kill or self.swallow:
                return True
            try:
                n = dst.send(view)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return False
            view = view[n:]
        return True

    def _pump(self, src: socket.socket, dst: socket.socket | None, side: str) -> None:
        try:
            while not self.kill:
                try:
                    ready, _, _ = select.select([src, self._wake_r], [], [], 1.0)
                except (OSError, ValueError):
                    break
                if self.kill:
                    break
                if src not in ready:
                    continue
                try:
                    data = src.recv(_CHUNK)
                except (TimeoutError, BlockingIOError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    break
                if self.swallow or dst is None:
                    continue
                if not self._send_all(dst, data):
                    break
        finally:
            self._side_done(side)

    def _side_done(self, side: str) -> None:
        with self._lock:
            self._open_sides[side] = False
            last = not any(self._open_sides.values())
            if not last and not self.kill and not self.swallow:
                self.kill = True  # one side ended: end the whole connection, as a proxy does
                wake = True
            else:
                wake = False
            rst = self.rst
        if wake:
            self._wake()
        if not last:
            return  # a blackholed connection leaves the other side hanging
        for sock in (self.client, self.upstream):
            (_rst_close if rst else _close)(sock)
        _close(self._wake_r)
        _close(self._wake_w)
        self.closed.set()
        self.proxy._forget(self)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1",
                 port: int = 0):
        self.target = (target_host, target_port)
        self.host = host
        self._port = port
        self._mode = "pass"
        self._lock = threading.Condition()
        self._conns: set[_Conn] = set()
        self._listener: socket.socket | None = None
        self._ctl_r, self._ctl_w = socket.socketpair()
        self._wanted_mode = "pass"
        self._applied = 0
        self._requested = 0
        self._stopping = False
        self._acceptor: threading.Thread | None = None
        self.accepted = 0
        self.resets = 0

    # -- public API ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def mode(self) -> str:
        return self._mode

    def start(self) -> FaultProxy:
        self._listen()
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultproxy-accept",
                                          daemon=True)
        self._acceptor.start()
        return self

    def set_mode(self, mode: str, timeout: float = 5.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        with self._lock:
            self._wanted_mode = mode
            self._requested += 1
            ticket = self._requested
            self._ctl_w.send(b"m")
            if not self._lock.wait_for(lambda: self._applied >= ticket, timeout):
                raise RuntimeError(f"fault proxy did not switch to {mode!r} in {timeout} s")
            conns = list(self._conns)
        if mode == "reset":
            for conn in conns:
                conn.closed.wait(timeout)

    def connection_count(self) -> int:
        with self._lock:
            return len(self._conns)

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            conns = list(self._conns)
        try:
            self._ctl_w.send(b"s")
        except OSError:
            pass
        if self._acceptor is not None:
            self._acceptor.join(5)
        for conn in conns:
            conn.reset()
        for conn in conns:
            conn.closed.wait(5)
        _close(self._ctl_r)
        _close(self._ctl_w)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(64)
        self._port = sock.getsockname()[1]
        self._listener = sock

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _apply_mode(self) -> None:
        """In the acceptor thread: make the wanted mode real, then tell set_mode()."""
        with self._lock:
            mode, ticket = self._wanted_mode, self._requested
            conns = list(self._conns)
        if mode == "refuse":
            if self._listener is not None:
                _close(self._listener)
                self._listener = None
        elif self._listener is None:
            self._listen()
        if mode == "blackhole":
            for conn in conns:
                conn.blackhole()
        elif mode == "reset":
            for conn in conns:
                self.resets += 1
                conn.reset()
        with self._lock:
            self._mode = mode
            self._applied = max(self._applied, ticket)
            self._lock.notify_all()

    def _accept_loop(self) -> None:
        try:
            while True:
                watched = [self._ctl_r] + ([self._listener] if self._listener else [])
                ready, _, _ = select.select(watched, [], [])
                if self._ctl_r in ready:
                    cmds = self._ctl_r.recv(1024)
                    if b"s" in cmds or not cmds:
                        return
                    self._apply_mode()
                    continue
                if self._listener is not None and self._listener in ready:
                    try:
                        client, _ = self._listener.accept()
                    except OSError:
                        continue
                    self._admit(client)
        finally:
            _close(self._listener)
            self._listener = None

    def _admit(self, client: socket.socket) -> None:
        self.accepted += 1
        mode = self._mode
        if mode == "reset":
            self.resets += 1
            _rst_close(client)
            return
        upstream = None
        if mode == "pass":
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                _rst_close(client)
                return
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(self, client, upstream, swallow=(mode != "pass"))
        with self._lock:
            self._conns.add(conn)
        conn.start()
