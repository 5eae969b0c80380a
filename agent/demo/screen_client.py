"""The clerk's screen's HTTP interface, as its page uses it, for the scripted clerk and tests.

`ScreenClient(url).open()` loads the page as a browser would (its session cookie and the action
token in the page), `act()` posts an action with them, from the page's own origin, and
`follow()` reads the Server-Sent Events stream in a thread, resuming with Last-Event-ID.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.cookiejar import CookieJar
from urllib.parse import urlsplit

TOKEN_RE = re.compile(r'<meta name="cocoon-token" content="([^"]*)">')


class ScreenClient:
    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/"
        parts = urlsplit(self.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(self.jar))
        self.token = ""
        self.last_event_id: str | None = None

    def open(self, timeout: float = 10) -> ScreenClient:
        with self.opener.open(self.url, timeout=timeout) as reply:
            page = reply.read().decode("utf-8")
        self.token = TOKEN_RE.search(page).group(1)
        return self

    def act(self, action: str, *, headers: dict | None = None, timeout: float = 10,
            **extra) -> tuple[int, dict]:
        """POST the action; (HTTP status, the JSON answer)."""
        body = json.dumps({"action": action, **extra}).encode()
        request = urllib.request.Request(self.url + "action", data=body, method="POST", headers={
            "Content-Type": "application/json", "Origin": self.origin,
            "X-Cocoon-Token": self.token, **(headers or {})})
        try:
            with self.opener.open(request, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def state(self, timeout: float = 10) -> dict:
        with self.opener.open(self.url + "state", timeout=timeout) as reply:
            return json.loads(reply.read())

    def follow(self, on_state: Callable[[dict], None], stop: threading.Event) -> threading.Thread:
        """Call `on_state` with each state pushed, reconnecting (with Last-Event-ID) until
        `stop` is set."""

        def run() -> None:
            while not stop.is_set():
                headers = {} if self.last_event_id is None else {
                    "Last-Event-ID": self.last_event_id}
                request = urllib.request.Request(self.url + "events", headers=headers)
                try:
                    with self.opener.open(request, timeout=30) as reply:
                        self._read_stream(reply, on_state, stop)
                except OSError:
                    stop.wait(0.5)

        thread = threading.Thread(target=run, name="screen-client", daemon=True)
        thread.start()
        return thread

    def _read_stream(self, reply, on_state, stop: threading.Event) -> None:
        event_id, data = None, []
        for raw in reply:
            if stop.is_set():
                return
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif not line and data:
                if event_id is not None:
                    self.last_event_id = event_id
                on_state(json.loads("\n".join(data)))
                event_id, data = None, []
