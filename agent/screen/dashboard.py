"""The warehouse monitor's dashboard, served by a warehouse's agent like the clerk's screen.

    GET  /  (or /dashboard)  the dashboard (a new session, as the clerk's screen)
    GET  /events, /state     the warehouse's state, pushed as Server-Sent Events / once
    GET  /climate            the day's climate readings, for the page's chart
    POST /sign-in            {"staff": "W-07"}: who the monitor at the screen is
    POST /sign-out
    POST /acknowledge        {"alert_seq": 18, "note": "..."}: a signed `alert.acknowledged`

A view of the running warehouse (agent.warehouse.service.Warehouse) and of the terminal view's
counts (agent.warehouse.screen.load_view): lots with pledged against present tags, each tag's
last read, open alerts with what to do, doors, tamper and power, the siren and the light, the
climate and the readers. It adds no rule: what is open, short or acknowledged is the
warehouse's to say (`Warehouse.acknowledge` checks the alert and records the event).

Who acknowledges: a warehouse has no staff card reader in this release, so the monitor signs in
on the dashboard with a staff id, kept with the page's session. The dashboard answers on the
device itself only (loopback, as the clerk's screen), so whoever signs in stands at it; actions
need the session's cookie and token and a same-origin request, so no other site can act.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from string import Template

from babel.dates import format_timedelta

from agent.errors import EXPECTED, CocoonError
from agent.screen.config import ScreenConfig
from agent.screen.i18n import Language
from agent.screen.server import (
    COOKIE,
    MAX_SESSIONS,
    STATIC,
    Broadcaster,
    Refused,
    ScreenApp,
)
from agent.warehouse.screen import STALE_S, load_view

ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript",
          "common.js": "text/javascript"}
DOMAIN = "dashboard"

CLIMATE_HOURS = 24
RECENT_S = 60           # a tag read within the last minute was seen "just now"


def labels(lang: Language) -> dict[str, str]:
    """The page's fixed words (its `data-t` attributes name them)."""
    _ = lang._
    return {
        "title": _("Warehouse"),
        "alerts": _("Open alerts"),
        "no_alerts": _("No open alert"),
        "what_to_do": _("What to do"),
        "acknowledge": _("Acknowledge"),
        "acknowledged_by": _("Acknowledged by"),
        "note": _("Note"),
        "note_hint": _("What you found or did"),
        "send": _("Record"),
        "cancel": _("Cancel"),
        "lots": _("Lots"),
        "lot": _("Lot"),
        "pledge": _("Pledge"),
        "pledged": _("Pledged"),
        "present": _("Present"),
        "unknown": _("Unknown"),
        "gone": _("Gone"),
        "tags": _("Tags"),
        "tag": _("Tag"),
        "state": _("State"),
        "where": _("Where"),
        "last_seen": _("Last read"),
        "no_lot": _("No lot received yet"),
        "site": _("Doors, tamper and power"),
        "siren": _("Siren"),
        "light": _("Alert light"),
        "climate": _("Climate, last 24 hours"),
        "temperature": _("Temperature"),
        "humidity": _("Humidity"),
        "readers": _("Tag readers"),
        "stale": _("The agent has stopped reporting: what you see may be out of date. "
                   "Call the technician"),
        "sign_in": _("Sign in"),
        "sign_out": _("Sign out"),
        "staff_id": _("Your staff number"),
        "signed_in_as": _("Signed in:"),
        "sign_in_first": _("Sign in with your staff number to acknowledge"),
        "preset_checked": _("Checked on site"),
        "preset_bank": _("Bank's supervisor told"),
        "preset_tech": _("Technician called"),
    }


def _alert_words(lang: Language, kind: str) -> tuple[str, str]:
    """An alert's title and what to do about it, in plain words."""
    _ = lang._
    words = {
        "custody.breach": (
            _("A pledged bale left without a release"),
            _("Check the doors and the loading area now. Find the bale with this tag and bring "
              "it back, and tell the bank's supervisor. The alert closes when the tag is read "
              "again")),
        "custody.shortfall": (
            _("A pledge is short of goods"),
            _("Fewer pledged bales are in the store than the bank holds. Count the lot's bales "
              "and tell the bank's supervisor")),
        "reader.offline": (
            _("A tag reader does not answer"),
            _("Check the reader's power and cable. While it is down its bales are unknown, not "
              "missing. If it stays down, call the technician")),
        "door.opened": (
            _("A door was opened out of hours"),
            _("Go and check the door, then close it. The alert closes when it is shut")),
        "tamper.detected": (
            _("The device's box was opened"),
            _("Check who opened the box and close it. Call the technician")),
        "power.lost": (
            _("Mains power is lost"),
            _("The device runs on its battery and will shut down. Restore the power supply")),
        "climate.out_of_range": (
            _("Humidity out of range"),
            _("Dried cocoons keep at 60 to 70 % humidity: ventilate if too humid, close the "
              "vents if too dry")),
        "climate.sensor_failed": (
            _("The climate sensor does not answer"),
            _("Check the sensor's cable. If it stays silent, call the technician")),
    }
    return words.get(kind, (kind, ""))


def _ago(lang: Language, seconds: float) -> str:
    if seconds < RECENT_S:
        return lang._("just now")
    return format_timedelta(timedelta(seconds=seconds), threshold=1.5, add_direction=True,
                            locale=lang.locale)


def dashboard_view(device: str, store_path: Path):
    """The state function the broadcaster calls: `view(warehouse, lang, cache)`."""

    def view(wh, lang: Language, cache: dict) -> dict:
        version = wh.version        # read before the state: a change meanwhile is seen next
        if cache.get("version") != version:
            try:
                cache["state"] = snapshot(wh, device, store_path, lang)
            except sqlite3.Error as exc:     # the broadcaster keeps the last state and says so
                raise CocoonError(f"cannot read {store_path}: {exc}") from None
            cache["version"] = version
        return cache["state"]

    return view


def snapshot(wh, device: str, store_path: Path, lang: Language) -> dict:
    """What the dashboard shows, read from the running warehouse and its store."""
    _ = lang._
    now = time.time()
    with wh.lock:
        # Under the warehouse's lock: the stored counts and the live state are of one moment
        # (a housekeeping pass writes its alerts before its tags).
        counts = load_view(store_path, device)      # the terminal view's counts, same rule
        now_ms = wh.mono_ms()
        tags = {epc: (t.status.value, f"{t.location[0]}#{t.location[1]}",
                      now - (now_ms - t.last_seen_ms) / 1000)
                for epc, t in wh.presence.tags.items()}
        lots = {lot.id: sorted(lot.epcs) for lot in wh.custody.lots.values()}
        readers = [(r.name, r.down_reason, r.detail, now - (now_ms - max(r.last_read_ms,
                                                                          r.last_answer_ms))
                    / 1000) for r in sorted(wh.presence.readers.values(), key=lambda r: r.name)]
        inputs = [(name, inp.kind.value, bool(wh.guard.alarm.get(name)))
                  for name, inp in wh.guard.inputs.items()]
        siren = None if wh.pins.siren is None else bool(wh.pins.siren.value)
        light = None if wh.pins.light is None else bool(wh.pins.light.value)
        alerts = wh.store.alert_rows()
        acks = wh.store.acks()
        climate = wh.store.load_climate()
        alive = float(wh.store.meta("alive") or 0)
        settings = wh.config.climate
    status_words = {"present": _("present"), "unknown": _("unknown"),
                    "departed": _("gone"), "": _("not read yet")}
    pledges = {p.pledge: p for p in counts.pledges}
    lot_rows = []
    for line in counts.lots:
        pledge = pledges.get(line.pledge) if line.pledge else None
        lot_rows.append({
            "lot": line.lot, "pledge": line.pledge, "bound": line.bound,
            "present": line.present, "unknown": line.unknown, "gone": line.departed,
            "pledged": None if pledge is None else pledge.required,
            "missing": 0 if pledge is None else pledge.missing,
            "tags": [{"epc": epc, "status": tags.get(epc, ("",))[0],
                      "status_text": status_words.get(tags.get(epc, ("",))[0], ""),
                      "where": tags[epc][1] if epc in tags else "",
                      "seen": _ago(lang, now - tags[epc][2]) if epc in tags else ""}
                     for epc in lots.get(line.lot, [])]})
    by_alert: dict[str, list] = {}
    for key, _seq, _ack, staff, note, at in acks:
        by_alert.setdefault(key, []).append({"staff": staff, "note": note,
                                             "at": lang.time(at, _local())})
    alert_rows = []
    for key, kind, detail, opened, seq in alerts:
        title, advice = _alert_words(lang, kind)
        alert_rows.append({"key": key, "kind": kind, "seq": seq, "title": title,
                           "advice": advice, "detail": detail,
                           "opened": _ago(lang, now - opened),
                           "acks": by_alert.get(key, [])})
    kinds = {"door": (_("open"), _("closed")), "tamper": (_("opened"), _("closed")),
             "power": (_("on battery"), _("mains"))}
    names = {"door": _("Door"), "tamper": _("Box"), "power": _("Power")}
    site = [{"name": name, "kind": kind, "alarm": alarm,
             "label": f"{names.get(kind, kind)} {name}" if kind == "door" else
             names.get(kind, kind),
             "text": kinds[kind][0 if alarm else 1]} for name, kind, alarm in inputs]
    reader_rows = [{"name": name, "ok": not reason, "reason": reason, "detail": detail,
                    "text": _("answering") if not reason else
                    (_("offline") if reason == "offline" else _("silent")),
                    "seen": _ago(lang, now - seen),
                    "advice": "" if not reason else
                    _("Check the reader's power and cable; its bales are unknown meanwhile")}
                   for name, reason, detail, seen in readers]
    band_words = {"ok": _("in range"), "high": _("too humid"), "low": _("too dry")}
    state = {
        "device": device,
        "lang": lang.tag,
        "lots": lot_rows,
        "alerts": alert_rows,
        "site": site,
        "siren": siren,
        "siren_text": "" if siren is None else (_("sounding") if siren else _("quiet")),
        "light": light,
        "light_text": "" if light is None else (_("on") if light else _("off")),
        "readers": reader_rows,
        "climate": None if climate is None else {
            "temp": climate[0], "rh": climate[1], "band": climate[2],
            "band_text": band_words.get(climate[2], climate[2]), "error": climate[3] or "",
            "updated": climate[4],
            "low": str(settings.rh_low_c100 / 100), "high": str(settings.rh_high_c100 / 100)},
        "alive": alive,
        "stale": bool(alive) and now - alive > STALE_S,
        "stale_after": STALE_S,
    }
    return state


def _local():
    return datetime.now().astimezone().tzinfo


class DashboardApp(ScreenApp):
    """The clerk's screen's server (sessions, same-origin checks, streams) with the
    dashboard's pages and actions."""

    def __init__(self, warehouse, config: ScreenConfig, broadcaster: Broadcaster,
                 stop: threading.Event, store_path: Path):
        super().__init__(warehouse, config, broadcaster, stop)
        self.warehouse, self.store_path = warehouse, store_path
        self.lang = Language(config.language, DOMAIN)
        self._staff: dict[str, str] = {}       # session cookie -> the signed-in staff id
        self._pages = {"dashboard": Template(
            (STATIC / "dashboard.html").read_text(encoding="utf-8"))}

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        try:
            self._check_host(environ)
            if method == "GET" and path in ("/", "/dashboard"):
                return self._page(start_response, "dashboard", new_session=True,
                                  secure=environ.get("wsgi.url_scheme") == "https")
            if method == "GET" and path == "/climate":
                return self._climate(start_response)
            if method == "POST" and path in ("/sign-in", "/sign-out", "/acknowledge"):
                return self._act(environ, start_response, path[1:])
            if path in ("/", "/dashboard", "/climate", "/sign-in", "/sign-out",
                        "/acknowledge"):
                raise Refused("405 Method Not Allowed", "method not allowed")
            if path in ("/events", "/state") or path.startswith("/static/"):
                return super().__call__(environ, start_response)
            raise Refused("404 Not Found", "no such page")
        except Refused as exc:
            return self._json(start_response, exc.status, {"ok": False, "error": str(exc)})

    def _page(self, start_response, name: str, *, new_session: bool, secure: bool = False):
        cookie, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[cookie] = token
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        words = labels(self.lang)
        body = self._pages[name].substitute(
            lang=self.lang.tag, token=token, title=words["title"],
            labels=json.dumps(words, ensure_ascii=False).replace("</", "<\\/"))
        return self._send(start_response, "200 OK", "text/html; charset=utf-8",
                          body.encode("utf-8"),
                          [("Set-Cookie", f"{COOKIE}={cookie}; Path=/; HttpOnly; "
                                          f"SameSite=Strict{'; Secure' if secure else ''}")])

    def _asset(self, start_response, name: str):
        if name not in ASSETS:
            raise Refused("404 Not Found", "no such file")
        data = (STATIC / name).read_bytes()
        return self._send(start_response, "200 OK", f"{ASSETS[name]}; charset=utf-8", data,
                          [("Cache-Control", "no-cache")])

    def _climate(self, start_response):
        from agent.warehouse.store import WarehouseStore

        since = time.time() - CLIMATE_HOURS * 3600
        try:
            store = WarehouseStore(self.store_path, readonly=True)
            try:
                rows = store.climate_log(since)
            finally:
                store.close()
        except (sqlite3.Error, *EXPECTED) as exc:
            raise Refused("503 Service Unavailable", str(exc)) from None
        settings = self.warehouse.config.climate
        doc = {"from": since, "to": time.time(),
               "rh_low": settings.rh_low_c100 / 100, "rh_high": settings.rh_high_c100 / 100,
               "points": [[at, float(t), float(h)] for at, t, h in rows]}
        return self._json(start_response, "200 OK", doc)

    def _act(self, environ, start_response, action: str):
        from agent.warehouse.service import STAFF_MAX, AcknowledgeError

        cookie = self._check_same_origin(environ)
        request = self._body(environ)
        _ = self.lang._
        if action == "sign-in":
            staff = request.get("staff")
            staff = staff.strip() if isinstance(staff, str) else ""
            if not staff or len(staff) > STAFF_MAX or not staff.isprintable():
                raise Refused("400 Bad Request", _("Type your staff number"))
            with self._lock:
                self._staff[cookie] = staff
                for gone in [c for c in self._staff if c not in self._sessions]:
                    del self._staff[gone]
            return self._json(start_response, "200 OK", {"ok": True, "staff": staff})
        if action == "sign-out":
            with self._lock:
                self._staff.pop(cookie, None)
            return self._json(start_response, "200 OK", {"ok": True})
        with self._lock:
            staff = self._staff.get(cookie)
        if staff is None:
            raise Refused("403 Forbidden", _("Sign in with your staff number to acknowledge"))
        try:
            seq = self.warehouse.acknowledge(request.get("alert_seq"), request.get("note", ""),
                                             staff)
        except AcknowledgeError as exc:
            raise Refused("409 Conflict", str(exc)) from None
        return self._json(start_response, "202 Accepted", {"ok": True, "seq": seq})


def dashboard_app(agent, config: ScreenConfig, stop: threading.Event) -> DashboardApp | None:
    """The dashboard for the agent's warehouse part, or None without one."""
    from agent.warehouse.service import STORE_NAME, Warehouse

    warehouse = next((x for x in agent.parts if isinstance(x, Warehouse)), None)
    if warehouse is None:
        return None
    device = agent.config.device.id
    store_path = agent.config.device.data_dir / STORE_NAME
    broadcaster = Broadcaster(warehouse, Language(config.language, DOMAIN),
                              view=dashboard_view(device, store_path))
    app = DashboardApp(warehouse, config, broadcaster, stop, store_path)
    app.broadcaster = broadcaster
    return app
