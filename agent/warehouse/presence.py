"""Which tags are in the warehouse, and which readers can be trusted to say so.

A pure state machine: no threads, no clock reads; every call is given the monotonic time in
milliseconds. It turns reads and reader health into changes:

- a tag is *present* from its first read; *departed* after `departed_after_ms` unread while its
  reader is healthy; it *moved* when a new antenna's RSSI moving average beats the old one's
  after at least `moved_min_reads` recent reads there;
- a reader that reports itself offline, or neither reads nor answers for `reader_silent_ms`, is
  *down*: one change for the outage, and its tags become *unknown* instead of departing, so an
  unplugged cable never looks like the whole warehouse walking out. When it is back its tags
  get a full `departed_after_ms` to be read again.
- a reader that keeps answering (`answered`: an inventory round, even an empty one, a "no tag"
  reply, a keepalive) is not silent however long it reads nothing: its field may really be
  empty, and then its tags depart like any others. Emptying a reader's whole field must look
  like goods leaving, never like a reader outage.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction


class TagStatus(enum.StrEnum):
    PRESENT = "present"
    DEPARTED = "departed"
    UNKNOWN = "unknown"  # its reader is down, or has not read it since coming back


@dataclass(frozen=True)
class PresenceSettings:
    departed_after_ms: int = 600_000
    moved_min_reads: int = 2
    moved_window_ms: int = 60_000      # RSSI samples older than this do not count
    moved_margin_db: int = 0           # the new average must beat the old by more than this
    rssi_window: int = 5               # samples per antenna in the moving average
    reader_silent_ms: int = 600_000    # 0: a reader that reads nothing is not suspected
    forget_departed_ms: int = 30 * 86_400_000  # a tag departed this long is forgotten; 0: never


Location = tuple[str, int]  # (reader, antenna)


def location_name(loc: Location) -> str:
    return f"{loc[0]}#{loc[1]}"


# -- changes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arrived:
    epc: str
    location: Location
    returned: bool  # it had departed before


@dataclass(frozen=True)
class Moved:
    epc: str
    from_: Location
    to: Location
    rssi_avg: Fraction


@dataclass(frozen=True)
class Departed:
    epc: str
    location: Location
    unread_ms: int


@dataclass(frozen=True)
class Forgotten:
    """A tag departed long ago, dropped so that memory follows the tags around, not every tag
    ever seen. Seen again later, it is a new arrival."""

    epc: str


@dataclass(frozen=True)
class ReaderDown:
    reader: str
    reason: str     # "offline" (the driver says so) or "silent" (no read, no answer)
    detail: str
    tags_unknown: int


@dataclass(frozen=True)
class ReaderUp:
    reader: str
    down_ms: int
    reason: str     # what the outage was


# -- state --------------------------------------------------------------------------------

@dataclass
class Tag:
    epc: str
    status: TagStatus
    location: Location
    last_seen_ms: int
    samples: dict[Location, deque] = field(default_factory=dict)


@dataclass
class Reader:
    name: str
    down_reason: str = ""       # "" while healthy
    detail: str = ""
    since_ms: int = 0           # when it came up or went down
    last_read_ms: int = 0
    last_answer_ms: int = 0     # the driver's last sign of life, with or without tags

    @property
    def up(self) -> bool:
        return not self.down_reason


class Presence:
    def __init__(self, settings: PresenceSettings | None = None):
        self.settings = settings or PresenceSettings()
        self.tags: dict[str, Tag] = {}
        self.readers: dict[str, Reader] = {}

    # -- restoring after a restart --------------------------------------------------------

    def add_reader(self, name: str, now_ms: int, *, down_reason: str = "",
                   detail: str = "") -> None:
        """Watch a reader from `now_ms`; `down_reason` restores an outage already reported."""
        self.readers[name] = Reader(name, down_reason, detail, now_ms, now_ms, now_ms)

    def restore(self, rows: Iterable[tuple[str, str, str, int]], now_ms: int) -> None:
        """Tags as saved (epc, status, reader, antenna). Nobody watched while the agent was
        down, so each restored tag gets a full `departed_after_ms` from now to be read again."""
        for epc, status, reader, antenna in rows:
            self.tags[epc] = Tag(epc, TagStatus(status), (reader, antenna), now_ms)

    # -- inputs ---------------------------------------------------------------------------

    def read(self, reader: str, epc: str, antenna: int, rssi: int, now_ms: int) -> list:
        changes: list = []
        r = self.readers.get(reader)
        if r is None:
            self.add_reader(reader, now_ms)
            r = self.readers[reader]
        elif not r.up:
            changes.append(self._reader_up(r, now_ms))
        r.last_read_ms = now_ms
        loc = (reader, antenna)
        tag = self.tags.get(epc)
        if tag is None:
            tag = self.tags[epc] = Tag(epc, TagStatus.PRESENT, loc, now_ms)
            changes.append(Arrived(epc, loc, returned=False))
        elif tag.status is TagStatus.DEPARTED:
            tag.status, tag.location, tag.samples = TagStatus.PRESENT, loc, {}
            changes.append(Arrived(epc, loc, returned=True))
        else:
            tag.status = TagStatus.PRESENT
        tag.last_seen_ms = now_ms
        self._sample(tag, loc, rssi, now_ms)
        if loc != tag.location:
            moved = self._maybe_move(tag, loc, now_ms)
            if moved:
                changes.append(moved)
        return changes

    def health(self, reader: str, online: bool, detail: str, now_ms: int) -> list:
        r = self.readers.get(reader)
        if r is None:
            self.add_reader(reader, now_ms)
            r = self.readers[reader]
        if not online:
            if r.up:
                return [self._reader_down(r, "offline", detail, now_ms)]
            r.detail = detail or r.detail  # the same outage: no second change
            return []
        if not r.up and r.down_reason == "offline":
            # Back online; a silent reader stays down until it reads or answers.
            return [self._reader_up(r, now_ms)]
        return []

    def answered(self, reader: str, now_ms: int) -> list:
        """The reader's driver heard from the device: an inventory round with or without tags,
        a "no tag" reply, a keepalive. A reader that answers is not silent, so the tags it no
        longer reads depart; one that was silent and answers again is back."""
        r = self.readers.get(reader)
        if r is None:
            self.add_reader(reader, now_ms)
            return []
        r.last_answer_ms = max(r.last_answer_ms, now_ms)
        if not r.up and r.down_reason == "silent":
            return [self._reader_up(r, now_ms)]
        return []

    def tick(self, now_ms: int) -> list:
        """Readers gone silent (neither a read nor an answer for `reader_silent_ms`), then tags
        unread for too long (in that order, so a reader that stopped answering makes its tags
        unknown instead of departed)."""
        s = self.settings
        changes: list = []
        if s.reader_silent_ms:
            for r in self.readers.values():
                quiet = now_ms - max(r.last_read_ms, r.last_answer_ms, r.since_ms)
                if r.up and quiet >= s.reader_silent_ms:
                    changes.append(self._reader_down(
                        r, "silent", f"no read and no answer for {quiet // 1000} s", now_ms))
        for tag in self.tags.values():
            if tag.status is TagStatus.DEPARTED:
                continue
            r = self.readers.get(tag.location[0])
            if r is None or not r.up:
                continue
            unread = now_ms - max(tag.last_seen_ms, r.since_ms)
            if unread >= s.departed_after_ms:
                tag.status, tag.samples = TagStatus.DEPARTED, {}
                changes.append(Departed(tag.epc, tag.location, now_ms - tag.last_seen_ms))
        if s.forget_departed_ms:
            stale = [t.epc for t in self.tags.values() if t.status is TagStatus.DEPARTED
                     and now_ms - t.last_seen_ms >= s.forget_departed_ms]
            for epc in stale:
                del self.tags[epc]
                changes.append(Forgotten(epc))
        return changes

    # -- queries --------------------------------------------------------------------------

    def status(self, epc: str) -> TagStatus | None:
        tag = self.tags.get(epc)
        return None if tag is None else tag.status

    def present(self, epcs: Iterable[str]) -> list[str]:
        return [e for e in epcs if self.status(e) is TagStatus.PRESENT]

    def readers_down(self) -> list[str]:
        return sorted(r.name for r in self.readers.values() if not r.up)

    # -- internals ------------------------------------------------------------------------

    def _reader_down(self, r: Reader, reason: str, detail: str, now_ms: int) -> ReaderDown:
        r.down_reason, r.detail, r.since_ms = reason, detail, now_ms
        n = 0
        for tag in self.tags.values():
            if tag.location[0] == r.name and tag.status is TagStatus.PRESENT:
                tag.status = TagStatus.UNKNOWN
                n += 1
        return ReaderDown(r.name, reason, detail, n)

    def _reader_up(self, r: Reader, now_ms: int) -> ReaderUp:
        change = ReaderUp(r.name, now_ms - r.since_ms, r.down_reason)
        r.down_reason, r.detail, r.since_ms = "", "", now_ms
        return change

    def _sample(self, tag: Tag, loc: Location, rssi: int, now_ms: int) -> None:
        window = tag.samples.get(loc)
        if window is None:
            window = tag.samples[loc] = deque(maxlen=self.settings.rssi_window)
        window.append((now_ms, rssi))

    def _average(self, tag: Tag, loc: Location, now_ms: int) -> tuple[int, Fraction | None]:
        horizon = now_ms - self.settings.moved_window_ms
        recent = [rssi for t, rssi in tag.samples.get(loc, ()) if t >= horizon]
        return len(recent), (Fraction(sum(recent), len(recent)) if recent else None)

    def _maybe_move(self, tag: Tag, loc: Location, now_ms: int) -> Moved | None:
        n, new_avg = self._average(tag, loc, now_ms)
        if n < self.settings.moved_min_reads:
            return None
        _, old_avg = self._average(tag, tag.location, now_ms)
        if old_avg is not None and new_avg <= old_avg + self.settings.moved_margin_db:
            return None
        old = tag.location
        tag.location = loc
        for other in [k for k in tag.samples if k not in (loc, old)]:
            del tag.samples[other]
        return Moved(tag.epc, old, loc, new_avg)
