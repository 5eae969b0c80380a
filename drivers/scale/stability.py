"""Is the weight stable? The indicator's flag where the protocol has one; otherwise N equal
readings within a time window.

A pure object: fed (reading, monotonic time), it keeps the current run of equal readings and
answers with a `Stability` that holds the frames of the stable window (for the sale's digest).
No clock, no thread: tests feed it times directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .digest import frames_digest
from .reading import Reading


@dataclass(frozen=True)
class Stability:
    """The verdict after one reading.

    `source` is "indicator" (its flag decided) or "inferred" (N equal readings decided).
    `frames` are the raw frames of the stable window, oldest first; empty when not stable.
    """

    stable: bool
    source: str
    frames: tuple[bytes, ...] = ()

    @property
    def digest(self) -> str | None:
        return frames_digest(self.frames) if self.stable else None


class StabilityDetector:
    """Decides stability from a stream of readings of one scale.

    `count` equal readings whose first and last arrived at most `window_s` apart make a
    stable weight when the protocol has no flag. Pick them for the indicator's output rate:
    at about 10 frames/s, 5 readings within 1.0 s is half a second of identical display.
    With a flag, the flag decides; `confirm_flag=True` also requires the `count` rule.
    The stable window is at most `count` frames. Overload, missing weights, an unstable flag,
    a change of value, unit or gross/net, or time going backwards start a new run.
    """

    def __init__(self, count: int = 5, window_s: float = 1.0, *, confirm_flag: bool = False):
        if count < 1 or window_s <= 0:
            raise ValueError("stability needs count >= 1 and window_s > 0")
        self.count, self.window_s, self.confirm_flag = count, window_s, confirm_flag
        self._run: deque[tuple[float, Reading]] = deque(maxlen=count)

    def reset(self) -> None:
        """Forget the run (port reopened, unit changed, sale finished)."""
        self._run.clear()

    def feed(self, reading: Reading, now: float) -> Stability:
        run = self._run
        usable = (reading.weight is not None and not reading.condition()
                  and reading.stable is not False)
        if not usable or (run and (not reading.same_weight(run[-1][1]) or now < run[-1][0])):
            run.clear()
        if usable:
            run.append((now, reading))
        counted = len(run) == self.count and run[-1][0] - run[0][0] <= self.window_s
        if reading.stable is None:
            stable, source = counted, "inferred"
        else:
            stable = reading.stable and not reading.condition() and (
                counted or not self.confirm_flag)
            source = "indicator"
        frames = tuple(r.raw for _, r in run) if stable else ()
        return Stability(stable, source, frames)
