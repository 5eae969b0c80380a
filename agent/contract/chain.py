"""Checks a capture of events offline: signatures, sequence and the hash chain.

Used by `cocoon-agent verify`, the tool an integrator or auditor runs over a file of event
messages (one JSON message per line, as received from the events topic). It reports every bad
signature, gap, duplicate, reordering and broken chain link; gaps declared by a valid
`seq.skipped` event are not gaps, and the chain is checked across them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.contract import events
from agent.contract.envelope import parse_json_object
from agent.contract.errors import EventFormatError, SignatureError
from agent.contract.signing import Verifier


@dataclass
class Report:
    events: int = 0
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {
        "malformed": 0, "bad_signature": 0, "gap": 0, "duplicate": 0, "conflict": 0,
        "reordered": 0, "broken_link": 0,
    })

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        self.problems.append(f"{kind}: {message}")

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts.items())
        verdict = "OK" if self.ok else "FAILED"
        return f"{verdict}: {self.events} valid events; {parts}"


def check_capture(lines: Iterable[str | bytes], verifier: Verifier) -> Report:
    report = Report()
    by_seq: dict[int, tuple[dict, str]] = {}
    skipped: dict[int, str] = {}  # last seq of a declared range -> hash the chain continues from
    covered: set[int] = set()
    max_seq = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = parse_json_object(line, f"line {lineno}")
            events.check_shape(event)
        except EventFormatError as exc:
            report.add("malformed", f"line {lineno}: {exc}")
            continue
        seq = event["seq"]
        try:
            events.verify(event, verifier)
        except (SignatureError, EventFormatError) as exc:
            report.add("bad_signature", f"line {lineno} seq {seq}: {exc}")
            continue
        digest = events.event_hash(event)
        if seq in by_seq:
            if by_seq[seq][1] == digest:
                report.add("duplicate", f"line {lineno}: seq {seq} appears again")
            else:
                report.add("conflict", f"line {lineno}: seq {seq} appears with other content")
            continue
        if seq < max_seq:
            report.add("reordered", f"line {lineno}: seq {seq} arrives after seq {max_seq}")
        max_seq = max(max_seq, seq)
        by_seq[seq] = (event, digest)
        report.events += 1
        if event["type"] == events.SEQ_SKIPPED:
            try:
                for first, last, last_hash in events.skipped_ranges(event):
                    covered.update(range(first, last + 1))
                    skipped[last] = last_hash
            except EventFormatError as exc:
                report.add("malformed", f"line {lineno}: {exc}")

    first_seq = min(by_seq) if by_seq else 1  # an empty capture has no gap
    for seq in sorted(by_seq):
        event, _ = by_seq[seq]
        if seq == 1:
            if event["prev"] != events.GENESIS_PREV:
                report.add("broken_link", "seq 1 must chain to 64 zeros")
            continue
        before = by_seq.get(seq - 1)
        expected = before[1] if before else skipped.get(seq - 1)
        if expected is not None and event["prev"] != expected:
            report.add("broken_link", f"seq {seq} does not chain to seq {seq - 1}")
    missing = [s for s in range(first_seq, max_seq + 1) if s not in by_seq and s not in covered]
    for first, last in runs(missing):
        report.add("gap", f"seq {first}-{last} missing" if last > first else f"seq {first} missing")
    return report


def runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Consecutive numbers as (first, last) ranges: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs
