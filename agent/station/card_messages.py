"""The card desk's messages to the clerk, by key, so that each can be given in the clerk's
language (the screens translate this catalogue as they do agent/station/messages.py's; the
console shows the English).

Kept apart from agent/station/messages.py, which belongs to the legally relevant part
(agent/contract/legal_manifest.txt): card authentication and the blacklist are not weighing or
pricing, and changing their words must not change the software's legal identification.
"""

from __future__ import annotations

CATALOGUE: dict[str, str] = {
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
