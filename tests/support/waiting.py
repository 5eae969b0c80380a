"""Wait for a condition with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, *, what: str = "",
             interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something truthy; return that value.

    Raises AssertionError naming `what` (or the predicate) after `timeout` seconds. Exceptions
    raised by the predicate propagate at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {name}")
        time.sleep(interval)
