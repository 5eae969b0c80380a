"""How long each step of a purchase may wait, in its own small module so that reading the
`[station]` section does not load the whole purchase flow (every command reads the file)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    signed_in_s: float = 1800.0  # clerk idle at the bench
    weighing_s: float = 300.0
    grading_s: float = 600.0
    confirming_s: float = 180.0
    duplicate_window_s: float = 600.0
    # Writing the sale to the card: a card (or reader) that has not answered by then counts as
    # a failed write (CardWriteFailed): the sale stands and is owed to the card. The station
    # enforces it, since the write blocks the thread that would see a deadline pass.
    card_write_s: float = 10.0
