"""A command to an indicator: the bytes to send and how to recognise its answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """`data` goes to the port as is; `answers(frame)` says whether a received frame (raw
    bytes, terminators included) is the answer to it. `name` is for messages."""

    name: str
    data: bytes
    answers: Callable[[bytes], bool]
