"""The station's messages to the clerk that a screen shows by key, so that each can be given in
the clerk's language (the screens translate this catalogue; the console shows the English).

Only messages a test or a screen must recognise whatever the language are here; a `Show` names
its key beside its text.
"""

from __future__ import annotations

CATALOGUE: dict[str, str] = {
    # The outbox could not tell whether the sale was stored (the disk failed while making it
    # durable) and it was not found on looking: it may still appear after a restart.
    "sale_may_be_recorded": "The sale MAY HAVE BEEN RECORDED: check today's sales list before "
                            "selling this lot again ({reason})",
    # The legally relevant software changed since it was last identified (an update, or an
    # edited file): no sale until a supervisor acknowledges it (agent.station.legal).
    # The price tables failed their check at use (edited on disk, unsigned, unreadable).
    "cannot_price": "The station CANNOT PRICE: {reason}",
    "legal_hold": "The weighing and pricing software has changed: a supervisor must swipe "
                  "the supervisor's card to acknowledge it before any sale",
}


def message(key: str, **values: str) -> str:
    """The English text of `key`, with its {values} filled in."""
    return CATALOGUE[key].format(**values)
