"""The clerk's screen served over HTTP by waitress, from a few threads of the agent.

    GET  /          the clerk's screen (a new session: an HttpOnly, SameSite=Strict cookie and
                    a token the page sends back with each action)
    GET  /farmer    the farmer's display: weight, grade, price and amount, read only
    GET  /events    Server-Sent Events: the station's state as JSON, each with its id; a
                    browser that reconnects with Last-Event-ID gets only newer states (and,
                    after the agent started again, the current one at once)
    GET  /state     the current state, once
    POST /action    the clerk's action as JSON: {"action": "confirm" | "cancel" | "sign-out" |
                    "close-day" | "grade", "measurements": {"shell_g": "9.6", ...} |
                    "reprint" | "void" | "correct", "voucher": "...", "reason": "..."}

An action becomes the same flow input the console's key would (agent.station.console), so the
two screens cannot disagree. It needs the session's cookie and token, a request from the page's
own origin (Origin, Sec-Fetch-Site) and a clerk signed in by staff card; a Host header that is
not the screen's own address is refused, so another site cannot reach it by DNS rebinding.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from string import Template

import waitress
from waitress import wasyncore

from agent.errors import EXPECTED, CocoonError
from agent.screen.config import ScreenConfig
from agent.screen.flow_words import flow_words
from agent.screen.i18n import Language
from agent.screen.state import labels, snapshot
from agent.station.console import (
    ClerkKeyError,
    CloseDay,
    CorrectRequest,
    Grade,
    Reprint,
    VoidRequest,
    apply_key,
    parse_measurements,
)
from agent.station.purchase import Cancel, Confirm, SignOut

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
ASSETS = {"screen.css": "text/css", "clerk.js": "text/javascript",
          "farmer.js": "text/javascript", "common.js": "text/javascript"}
COOKIE = "cocoon_screen"
MAX_SESSIONS = 32
MAX_STREAMS = 6
KEEPALIVE_S = 5.0      # a closed page's stream is noticed (and its thread freed) by then
DISCONNECT_CHECK_S = 0.25   # how often a waiting stream looks whether its page went away
ACTIONS = {"confirm": Confirm(), "cancel": Cancel(), "sign-out": SignOut(),
           "close-day": CloseDay()}


class Refused(CocoonError):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class Broadcaster:
    """One thread turns the station's changes into numbered states; streams wait on it.

    Only this thread reads the station (and its outbox) for the screens, so the screens stop
    reading before the agent closes the outbox."""

    def __init__(self, part, lang: Language, view=snapshot):
        self.part, self.lang, self.view = part, lang, view
        # Ids are "<run>.<seq>": a browser that reconnects to an agent started again sends an
        # id of the previous run, and must get the current state at once, not after as many
        # changes as it had seen.
        self.run_id = secrets.token_hex(4)
        self.seq = 0
        self.data: str | None = None
        self.closed = False
        self._cache: dict = {}
        self._cond = threading.Condition()

    def run(self, stop: threading.Event) -> None:
        version = -1
        try:
            while not stop.is_set():
                try:
                    data = json.dumps(self.view(self.part, self.lang, self._cache),
                                      ensure_ascii=False, sort_keys=True)
                except EXPECTED as exc:
                    log.warning("screen: cannot read the station: %s", exc)
                    data = self.data
                if data != self.data:
                    with self._cond:
                        self.seq += 1
                        self.data = data
                        self._cond.notify_all()
                version = self.part.wait_change(version, timeout=0.5)
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def resume_from(self, last_event_id: str) -> int:
        """The seq after which a stream resumed with `last_event_id` starts (-1: at once)."""
        run, _, seq = last_event_id.partition(".")
        if run != self.run_id or not seq.isdigit():
            return -1
        return int(seq)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def next_after(self, seq: int, timeout: float) -> tuple[int, str | None]:
        """The first state newer than `seq` (waiting up to `timeout`), or (seq, None)."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or (self.data is not None
                                                        and self.seq > seq), timeout)
            if self.closed or self.data is None or self.seq <= seq:
                return seq, None
            return self.seq, self.data


class ScreenApp:
    """The WSGI application."""

    def __init__(self, part, config: ScreenConfig, broadcaster: Broadcaster,
                 stop: threading.Event):
        self.part, self.config, self.broadcaster, self.stop = part, config, broadcaster, stop
        self.lang = Language(config.language)
        self.port = config.port
        self._sessions: OrderedDict[str, str] = OrderedDict()   # cookie -> action token
        self._lock = threading.Lock()
        self._streams = 0
        self._pages = {name: Template((STATIC / f"{name}.html").read_text(encoding="utf-8"))
                       for name in ("clerk", "farmer")}

    # -- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        try:
            self._check_host(environ)
            if method == "GET" and path == "/":
                return self._page(start_response, "clerk", new_session=True,
                                  secure=environ.get("wsgi.url_scheme") == "https")
            if method == "GET" and path == "/farmer":
                return self._page(start_response, "farmer", new_session=False)
            if method == "GET" and path.startswith("/static/"):
                return self._asset(start_response, path[len("/static/"):])
            if method == "GET" and path == "/events":
                return self._events(environ, start_response)
            if method == "GET" and path == "/state":
                _, data = self.broadcaster.next_after(-1, 5)
                return self._send(start_response, "200 OK", "application/json",
                                  (data or "{}").encode())
            if method == "POST" and path == "/action":
                return self._action(environ, start_response)
            if path in ("/", "/farmer", "/events", "/state", "/action"):
                raise Refused("405 Method Not Allowed", "method not allowed")
            raise Refused("404 Not Found", "no such page")
        except Refused as exc:
            return self._json(start_response, exc.status, {"ok": False, "error": str(exc)})

    def _check_host(self, environ) -> None:
        if environ.get("cocoon.remote"):     # the remote screens' login checked it (names)
            return
        host = environ.get("HTTP_HOST", "")
        allowed = {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}
        if host not in allowed:
            raise Refused("421 Misdirected Request", f"this screen answers on 127.0.0.1:"
                                                     f"{self.port} only")

    def _page(self, start_response, name: str, *, new_session: bool, secure: bool = False):
        headers = []
        token = ""
        if new_session:
            cookie, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            with self._lock:
                self._sessions[cookie] = token
                while len(self._sessions) > MAX_SESSIONS:
                    self._sessions.popitem(last=False)
            headers.append(("Set-Cookie", f"{COOKIE}={cookie}; Path=/; HttpOnly; "
                                          f"SameSite=Strict{'; Secure' if secure else ''}"))
        words = labels(self.lang)
        body = self._pages[name].substitute(
            lang=self.lang.tag, token=token, title=words["title" if name == "clerk"
                                                          else "farmer_title"],
            labels=json.dumps(words, ensure_ascii=False).replace("</", "<\\/"))
        return self._send(start_response, "200 OK", "text/html; charset=utf-8",
                          body.encode("utf-8"), headers)

    def _asset(self, start_response, name: str):
        if name not in ASSETS:
            raise Refused("404 Not Found", "no such file")
        data = (STATIC / name).read_bytes()
        return self._send(start_response, "200 OK", f"{ASSETS[name]}; charset=utf-8", data,
                          [("Cache-Control", "no-cache")])

    def _events(self, environ, start_response):
        with self._lock:
            if self._streams >= MAX_STREAMS:
                raise Refused("503 Service Unavailable", "too many screens open")
            self._streams += 1
        last = self.broadcaster.resume_from(environ.get("HTTP_LAST_EVENT_ID", ""))
        start_response("200 OK", [("Content-Type", "text/event-stream; charset=utf-8"),
                                  ("Cache-Control", "no-cache"),
                                  ("X-Accel-Buffering", "no")])
        return self._stream(last, environ.get("waitress.client_disconnected"))

    def _stream(self, last: int, gone=None):
        """The states after `last`; it ends as soon as waitress sees the page gone (it reads
        ahead on the connection), so that a reloaded page's old stream frees its thread at
        once rather than at its next keep-alive."""
        try:
            yield b"retry: 1000\n\n"
            quiet = 0.0
            while not self.stop.is_set():
                seq, data = self.broadcaster.next_after(last, DISCONNECT_CHECK_S)
                if self.stop.is_set() or self.broadcaster.closed or (gone and gone()):
                    return
                if data is None:
                    quiet += DISCONNECT_CHECK_S
                    if quiet >= KEEPALIVE_S:
                        quiet = 0.0
                        yield b": still here\n\n"
                    continue
                quiet = 0.0
                last = seq
                yield f"id: {self.broadcaster.run_id}.{seq}\ndata: {data}\n\n".encode()
        finally:
            with self._lock:
                self._streams -= 1

    def _action(self, environ, start_response):
        self._check_same_origin(environ)
        request = self._body(environ)
        _ = self.lang._
        if self.part.station.flow.clerk is None:
            raise Refused("403 Forbidden", _("Sign in with your staff card first"))
        name = request.get("action")
        if name in ACTIONS:
            action = ACTIONS[name]
        elif name == "grade":
            measurements = request.get("measurements")
            if not isinstance(measurements, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in measurements.items()):
                raise Refused("400 Bad Request", "measurements: an object of name: \"number\"")
            try:
                action = Grade(parse_measurements([f"{k}={v}" for k, v in measurements.items()]))
            except ClerkKeyError as exc:
                raise Refused("400 Bad Request", str(exc)) from None
        elif name in ("void", "correct"):
            voucher, reason = request.get("voucher"), request.get("reason")
            if not isinstance(voucher, str) or not 0 < len(voucher) <= 128 or \
                    not isinstance(reason, str) or not 0 < len(reason.strip()) <= 200:
                raise Refused("400 Bad Request", f"{name}: a voucher number and a reason")
            kind = VoidRequest if name == "void" else CorrectRequest
            action = kind(voucher, reason.strip())
        elif name == "reprint":
            voucher = request.get("voucher")
            if not isinstance(voucher, str) or not 0 < len(voucher) <= 128:
                raise Refused("400 Bad Request", "reprint: a voucher number")
            action = Reprint(voucher)
        else:
            raise Refused("400 Bad Request", f"unknown action {name!r}")
        log.info("screen: clerk's action %s", name)
        try:
            apply_key(self.part, action)
        except CocoonError as exc:     # no such sale, or one voided or paid: said at once
            raise Refused("409 Conflict", flow_words(self.lang, str(exc))) from None
        return self._json(start_response, "202 Accepted", {"ok": True})

    @staticmethod
    def _body(environ) -> dict:
        """The action's JSON object (at most 16 KiB read); Refused when it is not one."""
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            request = json.loads(environ["wsgi.input"].read(min(size, 16384)) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise Refused("400 Bad Request", "the action is not JSON") from None
        if not isinstance(request, dict):
            raise Refused("400 Bad Request", "the action is not a JSON object")
        return request

    def _check_same_origin(self, environ) -> str:
        """Refuse a request from another site or without the page's session; its cookie."""
        origin = environ.get("HTTP_ORIGIN")
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        if origin is not None and origin != own:
            raise Refused("403 Forbidden", "cross-site request refused")
        if environ.get("HTTP_SEC_FETCH_SITE", "same-origin") not in ("same-origin", "none"):
            raise Refused("403 Forbidden", "cross-site request refused")
        if not environ.get("CONTENT_TYPE", "").startswith("application/json"):
            raise Refused("415 Unsupported Media Type", "send the action as application/json")
        cookie = SimpleCookie()
        try:
            cookie.load(environ.get("HTTP_COOKIE", ""))
        except CookieError:     # a malformed header is no session
            cookie = SimpleCookie()
        morsel = cookie.get(COOKIE)
        with self._lock:
            expected = self._sessions.get(morsel.value) if morsel is not None else None
        given = environ.get("HTTP_X_COCOON_TOKEN", "")
        if expected is None or not secrets.compare_digest(expected, given):
            raise Refused("403 Forbidden", "no screen session: reload the page")
        return morsel.value

    # -- replies ------------------------------------------------------------------------

    @staticmethod
    def _send(start_response, status: str, kind: str, body: bytes, headers=()):
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body))),
                                ("X-Content-Type-Options", "nosniff"),
                                ("X-Frame-Options", "DENY"),
                                ("Content-Security-Policy",
                                 "default-src 'self'; style-src 'self'; "
                                 "script-src 'self'; connect-src 'self'"),
                                *headers])
        return [body]

    def _json(self, start_response, status: str, doc: dict):
        return self._send(start_response, status, "application/json",
                          json.dumps(doc, ensure_ascii=False).encode())


class ScreenPart:
    """The screen as a part of the agent ([screen] in the configuration)."""

    def __init__(self, agent):
        self.agent = agent
        self.config: ScreenConfig = agent.config.section("screen")
        self.server = None
        self.url: str | None = None
        self.remote = None              # the TLS listener for other devices ([screen] listen)
        self.remote_url: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, stop: threading.Event) -> None:
        from agent.station.part import StationPart

        part = next((x for x in self.agent.parts if isinstance(x, StationPart)), None)
        if part is None:        # a warehouse's agent serves the monitor's dashboard
            from agent.screen.dashboard import dashboard_app

            app = dashboard_app(self.agent, self.config, self._stop)
            if app is None:
                log.error("screen: [screen] needs a station ([station] section) or a "
                          "warehouse ([warehouse]); not served")
                return
            broadcaster = app.broadcaster
        else:
            broadcaster = Broadcaster(part, Language(self.config.language))
            app = ScreenApp(part, self.config, broadcaster, self._stop)
        try:
            self.server = waitress.create_server(
                app, host=self.config.local_host,
                port=self.config.port, threads=MAX_STREAMS + 3, ident="cocoon-agent",
                channel_timeout=60, clear_untrusted_proxy_headers=True,
                channel_request_lookahead=1)
        except OSError as exc:
            # The station still records and forwards (and the console still sells); the
            # doctor's screen check and this line say what to fix.
            log.error("screen: cannot serve the clerk's screen on %s:%s (%s): another program "
                      "holds the port? Set [screen] port to a free one",
                      self.config.local_host, self.config.port, exc)
            return
        port = self.server.effective_port
        app.port = port
        self.url = f"http://{self.config.local_host}:{port}/"
        if part is None:
            log.info("screen: serving the warehouse's dashboard on %s", self.url)
        else:
            log.info("screen: serving the clerk's screen on %s (farmer's display %sfarmer)",
                     self.url, self.url)
        serving = [("screen-state", lambda: broadcaster.run(self._stop)),
                   ("screen-http", self.server.run)]
        if self.config.remote:
            self._serve_remote(app, serving)
        for name, target in serving:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.broadcaster = broadcaster
        watcher = threading.Thread(target=lambda: (stop.wait(), self._stop.set(),
                                                   broadcaster.wake()),
                                   name="screen-stop", daemon=True)
        watcher.start()

    def _serve_remote(self, app, serving: list) -> None:
        """The TLS listener for other devices, when `listen` says so and the device has its
        password and certificate; without them the kiosk's screen is still served, and this
        line and the doctor say what to make."""
        from agent.screen.remote import RemoteAccessError, RemoteServer, host_header

        try:
            self.remote = RemoteServer(app, self.config, self.agent.config.device.data_dir,
                                       MAX_STREAMS + 3)
        except RemoteAccessError as exc:
            log.error("screen: %s", exc)
            return
        self.remote_url = f"https://{host_header(self.config.names[0], self.remote.port)}/"
        log.info("screen: serving remote screens over TLS on %s:%s (%s), after a login",
                 self.config.listen, self.remote.port, self.remote_url)
        serving.append(("screen-https", self.remote.serve))

    def close(self) -> None:
        """Stop reading the station and serving, before the agent closes the outbox."""
        self._stop.set()
        if self.server is None:
            return
        self.broadcaster.wake()
        self._threads[0].join(timeout=5)     # the streams end with the broadcaster
        if self.remote is not None:
            self.remote.close()
        self.server.task_dispatcher.shutdown(timeout=3)
        # Closed on the loop's own thread: a socket closed from this one while the loop
        # waits in select() ends it with EBADF and a traceback (waitress 3.0, Pylons/waitress
        # #468). With nothing left in its map the loop returns.
        server = self.server
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        self._threads[1].join(timeout=3)
