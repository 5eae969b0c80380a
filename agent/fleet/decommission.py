"""Decommissioning: wipe a device's keys and data, without silently losing the bank's events.

A device leaves service (sold, broken, moved to another cooperative) only once the bank has
acknowledged every event it recorded; then its keys and state are wiped, so that nothing it
signed can be forged with what is left on its SD card. When the outbox cannot be drained (the
bank is unreachable for good, the device is being replaced today), `discard` wipes anyway but
first records what is lost:

- a `device.decommissioned` alert event, signed with the device key before the key is wiped,
  listing how many events are discarded, their sequence range, types and priorities;
- a summary file outside the state directory, for the technician to hand to the bank: that
  signed event, the device's public signing key to verify it, the metadata of every discarded
  event, and the full signed payloads of the money events (purchases the bank must still settle).

Key files are overwritten with zeros and synced before they are removed. On flash storage the
controller may keep old blocks, so this lowers the risk rather than removing it: a device that
held a key on removable storage should have that card destroyed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent.contract.clock import utc_timestamp
from agent.contract.durable import fsync_dir, write_atomic
from agent.contract.events import Draft
from agent.errors import CocoonError

EVENT_TYPE = "device.decommissioned"


class DecommissionRefused(CocoonError):
    """Decommissioning would lose events or data; nothing was wiped."""


@dataclass(frozen=True)
class Unacked:
    seq: int
    type: str
    priority: str
    hash: str
    created: float


@dataclass
class Report:
    device: str
    acked_seq: int
    discarded: list[Unacked] = field(default_factory=list)
    event_seq: int | None = None
    summary_file: Path | None = None
    wiped: list[Path] = field(default_factory=list)


def key_files(config) -> list[Path]:
    """The device's secrets and the identity files that go with them."""
    m = config.mqtt
    return [config.device.signing_key_file, m.key_file, m.cert_file, m.key_file.with_suffix(".csr")]


def _unacked(outbox) -> list[Unacked]:
    rows = outbox.read("SELECT seq, type, priority, hash, created FROM events ORDER BY seq")
    return [Unacked(*row) for row in rows]


def _discard_body(unacked: list[Unacked], acked_seq: int) -> dict:
    return {
        "discarded_events": len(unacked),
        "from_seq": unacked[0].seq,
        "to_seq": unacked[-1].seq,
        "acked_seq": acked_seq,
        "by_priority": dict(sorted(Counter(u.priority for u in unacked).items())),
        "by_type": dict(sorted(Counter(u.type for u in unacked).items())),
        "oldest_created": utc_timestamp_of(unacked[0].created),
        "last_hash": unacked[-1].hash,
    }


def utc_timestamp_of(epoch: float) -> str:
    from datetime import datetime, timezone

    return utc_timestamp(datetime.fromtimestamp(epoch, timezone.utc))


def _check_summary_dir(config, summary_dir: Path) -> Path:
    summary_dir = Path(summary_dir).resolve()
    data_dir = config.device.data_dir.resolve()
    if summary_dir == data_dir or data_dir in summary_dir.parents:
        raise DecommissionRefused(f"the summary would be wiped with {data_dir}; write it "
                                  "elsewhere (--summary-dir, e.g. a USB stick)")
    return summary_dir


def decommission(config, *, discard: bool = False, summary_dir: Path = Path(".")) -> Report:
    """Wipe keys and data (see the module docstring). Raises DecommissionRefused, with
    nothing wiped, while events are unacknowledged and `discard` is not set."""
    from agent.contract.signing import load_device_signer
    from agent.spine.outbox import Outbox

    summary_dir = _check_summary_dir(config, summary_dir)
    report = Report(config.device.id, acked_seq=0)
    signer = None
    summary: dict = {"device": config.device.id, "decommissioned_at": utc_timestamp()}
    if config.outbox_path.exists():
        signer = load_device_signer(config.device)
        with Outbox(config.outbox_path, device=config.device.id, signer=signer,
                    capacity_bytes=config.outbox.capacity_bytes) as outbox:
            report.acked_seq = outbox.acked_seq()
            unacked = _unacked(outbox)
            if unacked and not discard:
                money = sum(u.priority == "money" for u in unacked)
                age = time.time() - unacked[0].created
                raise DecommissionRefused(
                    f"{len(unacked)} event(s) not yet acknowledged by the bank ({money} money, "
                    f"oldest {age / 3600:.1f} h old); nothing was wiped. Connect the device "
                    "and wait until `cocoon-agent queue` shows none pending, or run with "
                    "--discard to record and discard them")
            if unacked:
                report.discarded = unacked
                body = _discard_body(unacked, report.acked_seq)
                report.event_seq = outbox.append(Draft(EVENT_TYPE, "alert", body))
                (event,) = outbox.read("SELECT payload FROM events WHERE seq = ?",
                                       (report.event_seq,))
                money_rows = outbox.read(
                    "SELECT payload FROM events WHERE priority = 'money' ORDER BY seq")
                summary.update({
                    "discarded": body,
                    "event": json.loads(bytes(event[0])),
                    "discarded_events": [u.__dict__ for u in unacked],
                    "money_events": [json.loads(bytes(r[0])) for r in money_rows],
                })
    summary["acked_seq"] = report.acked_seq
    if signer is not None:
        summary["signing_key"] = {"alg": signer.alg, "kid": signer.kid,
                                  "public_key": signer.public_key_pem().decode()}
    summary["wiped"] = [str(p) for p in _targets(config)]
    stamp = summary["decommissioned_at"].replace(":", "").replace("-", "")[:15]
    report.summary_file = summary_dir / f"decommission-{config.device.id}-{stamp}.json"
    write_atomic(report.summary_file, json.dumps(summary, indent=2).encode() + b"\n",
                 mode=0o644)
    report.wiped = wipe(config)
    return report


def _targets(config) -> list[Path]:
    data_dir = config.device.data_dir
    keys = [p for p in key_files(config) if p.exists()]
    contents = sorted(data_dir.iterdir()) if data_dir.is_dir() else []
    return keys + [p for p in contents if p not in keys]


def _shred(path: Path) -> None:
    """Overwrite a file with zeros and sync it, then remove it."""
    left = path.stat().st_size
    zeros = bytes(1024 * 1024)
    with open(path, "r+b") as fh:
        while left > 0:
            left -= fh.write(zeros[:left])
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()


def wipe(config) -> list[Path]:
    """Remove the key files (shredded) and everything in the state directory (the directory
    itself stays: the service manager owns it)."""
    wiped = []
    for path in _targets(config):
        if path.is_file() and not path.is_symlink():
            _shred(path)
        elif path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            for inner in path.rglob("*"):
                if inner.is_file() and not inner.is_symlink():
                    _shred(inner)
            shutil.rmtree(path)
        wiped.append(path)
    for directory in {p.parent for p in wiped}:
        if directory.is_dir():
            fsync_dir(directory)
    return wiped
