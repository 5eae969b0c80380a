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
    "legal_hold": "The weighing and pricing software has changed: a supervisor must swipe "
                  "the supervisor's card to acknowledge it before any sale",
    # Card authentication ([card] auth = "psam"): {card} is "farmer card" or "staff card".
    "card_cannot_authenticate": "This {card} cannot answer the station's authentication "
                                "challenge ({detail}): it is an older card or not the "
                                "cooperative's. Do not accept it; its holder gets a new card at "
                                "the cooperative office",
    "card_failed_authentication": "This {card} failed the authentication challenge: it is not "
                                  "the card the cooperative issued (a copy?). Keep it and send "
                                  "its holder to the cooperative office",
    "card_refused_station": "This {card} did not accept the station's PSAM ({detail}): the "
                            "card and the PSAM in the SAM slot belong to different key sets. "
                            "Call the cooperative's technician",
    "psam_unavailable": "Cards cannot be checked: {reason}. Call the cooperative's technician",
    "m1_not_allowed": "This station takes CPU cards only: MIFARE (M1) cards are switched off "
                      "here. The farmer gets a CPU card at the cooperative office",
    "m1_weaker": "M1 card: the weaker kind (it cannot be challenged; a copy is caught only by "
                 "the bank's counter check)",
    # The bank's list of blocked cards, by its age ([card] blacklist_max_age_h, _refuse_age_h).
    "blacklist_never": "No card blacklist from the bank yet (or its age is unknown): connect "
                       "the station",
    "blacklist_stale": "The card blacklist is {age_h} h old (over {max_h} h): connect the "
                       "station so that the bank's list can arrive",
    "blacklist_too_old": "No sale: the card blacklist is {age_h} h old (over {limit_h} h). The "
                         "station sells again once a fresh list arrives from the bank: connect "
                         "it",
}


def message(key: str, **values: str) -> str:
    """The English text of `key`, with its {values} filled in."""
    return CATALOGUE[key].format(**values)
