"""The hourly `inventory.snapshot`: what each lot holds, in a form the bank can audit.

The digest is the SHA-256 of the present tags' EPCs (lowercase hex), sorted and joined by "\\n"
with no trailing newline, so the bank can recompute it from the list, or from its own audit
count on site, without trusting the person who runs the warehouse.
"""

from __future__ import annotations

from agent.contract.events import Draft
from agent.warehouse.custody import Custody, snapshot_digest
from agent.warehouse.presence import Presence, TagStatus


def snapshot_drafts(custody: Custody, presence: Presence) -> list[Draft]:
    drafts = []
    down = presence.readers_down()
    for lot in sorted(custody.lots.values(), key=lambda x: x.id):
        present = sorted(e for e in lot.epcs if presence.status(e) is TagStatus.PRESENT)
        unknown = sum(1 for e in lot.epcs if presence.status(e) is TagStatus.UNKNOWN)
        body = {
            "lot": lot.id,
            "tags": present,
            "count": len(present),
            "epcs_sha256": snapshot_digest(present),
            "bound_tags": len(lot.epcs),
            "unknown_tags": unknown,
            "readers_down": down,
        }
        pledge = custody.pledge_of(lot.id)
        if pledge is not None:
            body.update(pledge=pledge.id, pledged_tags=pledge.tags,
                        released_tags=pledge.released_tags, pledged_kg=pledge.kg)
        drafts.append(Draft("inventory.snapshot", "alert", body))
    return drafts
