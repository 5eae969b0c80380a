"""Which warehouse events open or close an alert, and which sound the siren.

One table for every kind, so the light (on while any alert is open), the siren (sounded when
a security alert opens) and the terminal view agree on what is open.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.contract.events import Draft

SIREN = {"custody.breach", "tamper.detected", "door.opened"}


@dataclass(frozen=True)
class AlertChange:
    key: str
    open: bool
    detail: str = ""
    siren: bool = False


def alert_change(draft: Draft) -> AlertChange | None:
    t, b = draft.type, draft.body
    if t == "reader.offline":
        return AlertChange(f"reader:{b['reader']}", True, f"reader {b['reader']} "
                           f"{b['reason']}: {b['detail']}")
    if t == "reader.online":
        return AlertChange(f"reader:{b['reader']}", False)
    if t == "custody.breach":
        return AlertChange(f"breach:{b['epc']}", True, f"lot {b['lot']}: tag {b['epc']} left "
                           "without a release", siren=True)
    if t == "tag.arrived":
        return AlertChange(f"breach:{b['epc']}", False)
    if t == "custody.shortfall":
        return AlertChange(f"shortfall:{b['pledge']}", True, f"pledge {b['pledge']}: "
                           f"{b['in_stock_tags']} of {b['required_tags']} tags in stock")
    if t == "custody.restored":
        return AlertChange(f"shortfall:{b['pledge']}", False)
    if t == "door.opened" and b["out_of_hours"]:
        return AlertChange(f"door:{b['door']}", True, f"door {b['door']} opened out of hours",
                           siren=True)
    if t == "door.closed":
        return AlertChange(f"door:{b['door']}", False)
    if t in ("tamper.detected", "tamper.cleared"):
        return AlertChange(f"tamper:{b['input']}", t == "tamper.detected",
                           f"tamper switch {b['input']} open", siren=t == "tamper.detected")
    if t in ("power.lost", "power.restored"):
        return AlertChange("power", t == "power.lost", f"power lost ({b['input']})")
    if t in ("climate.out_of_range", "climate.in_range"):
        return AlertChange("climate", t == "climate.out_of_range",
                           f"humidity {b['rh_pct']} % {b.get('band', '')}")
    if t in ("climate.sensor_failed", "climate.sensor_restored"):
        return AlertChange("climate-sensor", t == "climate.sensor_failed",
                           f"climate sensor: {b.get('detail', '')}")
    return None


def guard_inputs(keys) -> set[str]:
    """The door, tamper and power inputs whose alert is open, from the stored alerts' keys
    (see `alert_change`), so the guard starts where it was before a restart."""
    names = set()
    for key in keys:
        if key == "power":
            names.add("power")
        elif key.startswith(("door:", "tamper:")):
            names.add(key.split(":", 1)[1])
    return names
