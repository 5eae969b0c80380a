"""The station's audit trail of its legally relevant software and parameters (WELMEC 7.2 /
OIML R76 5.5.1, the "event counter" of an indicator): checked at every start.

At start the station compares what runs with what it last recorded, in the outbox's meta
table (so the record and the event that says it are one transaction, and a restored backup
carries both):

- the software identification (agent.contract.legal, `legal <sha256>` of `--version`);
- the legally relevant parameters: the [scale] section (protocol, e, Min, Max, tare,
  stability) and the price tables installed (grading, prices, rounding, by digest).

A change of the parameters is recorded as a signed `legal.parameters_changed` event, whatever
made it: a signed remote `config.set`, a price table from the backend, or a local edit of
agent.toml found at start-up. A change of the software is recorded as
`legal.software_changed`, and the station then refuses to sell until a supervisor
acknowledges it with the supervisor's card (`legal.acknowledged`). Each of these events
carries `counter`, which goes up by one with each and never goes back; the first start records
`legal.identified` with the identification and parameters in force.
"""

from __future__ import annotations

import hashlib
import json
import logging

from agent.contract.canonical import canonical
from agent.contract.events import Draft

log = logging.getLogger(__name__)

# The [scale] keys that decide a weight (the port and its speed do not).
SCALE_KEYS = ("protocol", "scale_id", "division_g", "min_divisions", "capacity_g", "tare_g",
              "stable_count", "stable_window_s")
META_KEYS = ("legal_id", "legal_counter", "legal_parameters", "legal_acknowledged")


def legal_parameters(scale, tables) -> dict:
    """The legally relevant parameters as JSON-safe strings: the scale's settings and each
    installed price table's digest (`id:version` -> digest)."""
    return {
        "scale": {key: "" if getattr(scale, key) is None else str(getattr(scale, key))
                  for key in SCALE_KEYS},
        "price_tables": {f"{t.table_id}:{t.version}": t.digest for t in tables},
    }


def parameters_hash(parameters: dict) -> str:
    return hashlib.sha256(canonical(parameters)).hexdigest()


def changed_keys(old: dict, new: dict) -> list[str]:
    """`scale.division_g`, `price_tables.2026-spring:4`...: what differs, sorted."""
    keys = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        keys += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return keys


class LegalRecord:
    """What the outbox says was last identified; `check` brings it up to date at start."""

    def __init__(self, outbox, legal_id: str, parameters: dict):
        self.outbox = outbox
        self.legal_id = legal_id
        self.parameters = parameters
        self.counter = 0
        self.acknowledged = ""

    def _meta(self) -> dict:
        rows = self.outbox.read(
            f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(META_KEYS))})",
            META_KEYS)
        return dict(rows)

    @property
    def hold(self) -> bool:
        """True while the software that runs is not the one a supervisor acknowledged."""
        return self.acknowledged != self.legal_id

    def check(self, source: str = "start") -> list[str]:
        """Record what changed since the last identification; the event types recorded."""
        meta = self._meta()
        self.counter = int(meta.get("legal_counter") or 0)
        self.acknowledged = meta.get("legal_acknowledged", "")
        recorded_id = meta.get("legal_id", "")
        try:
            old_params = json.loads(meta.get("legal_parameters") or "{}")
        except ValueError:
            old_params = {}
        new_hash = parameters_hash(self.parameters)
        recorded = []
        if not recorded_id:
            self._append("legal.identified", {"legal": self.legal_id,
                                              "parameters": self.parameters,
                                              "parameters_hash": new_hash}, acknowledge=True)
            return ["legal.identified"]
        if recorded_id != self.legal_id:
            self._append("legal.software_changed", {"old_legal": recorded_id,
                                                    "legal": self.legal_id})
            recorded.append("legal.software_changed")
            log.warning("the legally relevant software changed (%s -> %s): sales wait for a "
                        "supervisor's acknowledgement", recorded_id[:12], self.legal_id[:12])
        if old_params != self.parameters:
            self._append("legal.parameters_changed", {
                "old_hash": parameters_hash(old_params) if old_params else "",
                "new_hash": new_hash, "changed": changed_keys(old_params, self.parameters),
                "parameters": self.parameters, "source": source})
            recorded.append("legal.parameters_changed")
        return recorded

    def acknowledge(self, supervisor: str) -> int:
        """A supervisor's card acknowledged the software that runs; the event's seq."""
        return self._append("legal.acknowledged", {"legal": self.legal_id,
                                                   "supervisor": supervisor},
                            acknowledge=True)

    def _append(self, type_: str, body: dict, *, acknowledge: bool = False) -> int:
        counter = self.counter + 1
        values = {"legal_counter": str(counter), "legal_id": self.legal_id,
                  "legal_parameters": json.dumps(self.parameters, sort_keys=True)}
        if acknowledge:
            values["legal_acknowledged"] = self.legal_id

        def within(execute, seq: int) -> dict:
            for key, value in values.items():
                execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
                        "UPDATE SET value = excluded.value", (key, value))
            return {}

        seq = self.outbox.append(Draft(type_, "alert", {**body, "counter": counter}),
                                 within=within)
        self.counter = counter
        if acknowledge:
            self.acknowledged = self.legal_id
        return seq
