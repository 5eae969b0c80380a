"""Which events open a device's alert and which close it: the table of docs/events.md.

An alert is named by its opening type and, where the device can have several at once, the body
field that tells them apart (`custody.breach:<epc>`, `door.opened:<door>`); the closing event
names the same alert by the same field. The warehouse raises and clears these very alerts
(agent/warehouse/alerts.py, which the tests hold to this table); the bank's ingest follows them
by seq, whatever order the events arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertKind:
    opens: str                  # the event type that opens the alert
    closes: str                 # the event type that closes it
    subject: str | None = None  # the body field naming one of several, if any
    only_if: str | None = None  # a body field that must be true for the opening event to open


DEVICE_ALERTS: tuple[AlertKind, ...] = (
    AlertKind("custody.breach", "tag.arrived", "epc"),
    AlertKind("custody.shortfall", "custody.restored", "pledge"),
    AlertKind("reader.offline", "reader.online", "reader"),
    AlertKind("door.opened", "door.closed", "door", only_if="out_of_hours"),
    AlertKind("tamper.detected", "tamper.cleared", "input"),
    AlertKind("power.lost", "power.restored"),
    AlertKind("climate.out_of_range", "climate.in_range"),
    AlertKind("climate.sensor_failed", "climate.sensor_restored"),
)

#: Event types that touch an alert without closing it (an operator's acknowledgement).
NOT_CLOSING = ("alert.acknowledged",)

_BY_TYPE = {k.opens: k for k in DEVICE_ALERTS} | {k.closes: k for k in DEVICE_ALERTS}


def alert_change(type_: str, body: dict) -> tuple[str, bool] | None:
    """(the alert's name, True if the event opens it / False if it closes it), or None for an
    event that does neither."""
    kind = _BY_TYPE.get(type_)
    if kind is None or not isinstance(body, dict):
        return None
    opens = type_ == kind.opens
    if opens and kind.only_if is not None and body.get(kind.only_if) is not True:
        return None
    name = kind.opens
    if kind.subject is not None:
        subject = body.get(kind.subject)
        if not isinstance(subject, str | int) or isinstance(subject, bool):
            return None
        name = f"{name}:{subject}"
    return name, opens
