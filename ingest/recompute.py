"""The bank recomputes every amount: a verified `purchase.recorded` priced again from the event
alone, with the bank's own copy of the price table it names and the same pure pricing code the
station runs (agent.contract.pricing).

The event carries every input (net weight, the sample's measurements), the table's id, version
and digest, and the rounding rule; the bank holds the tables the backend signed
(`cocoon-ingest price-tables add`). What can come out:

    match           the event's amount, unit price and pricing record are what the bank's
                    table gives for the event's own inputs
    mismatch        they are not: the device priced with another table (its digest differs
                    from the bank's), an altered program, or weights that do not add up
    table_unknown   the bank holds no table with that id and version: it cannot check
    unreadable      the event's pricing record is malformed

Only `match` may be paid; every other result holds the purchase from payment and raises an
alert (the event itself is stored and acknowledged all the same: the device may forget it,
the evidence stays at the bank).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from agent.contract.errors import CocoonError
from agent.contract.pricing.amount import price
from agent.contract.pricing.record import check_quote, lot_from_record, table_ref
from agent.contract.pricing.tables import PriceTable

MATCH, MISMATCH, TABLE_UNKNOWN, UNREADABLE = "match", "mismatch", "table_unknown", "unreadable"


@dataclass(frozen=True)
class Recomputation:
    result: str                 # MATCH, MISMATCH, TABLE_UNKNOWN or UNREADABLE
    amount: str | None          # the amount the bank computes (yuan), where it could
    reason: str = ""            # why it is not a match, in words

    @property
    def payable(self) -> bool:
        return self.result == MATCH


def recompute_purchase(body: dict,
                       find_table: Callable[[str, int], PriceTable | None]) -> Recomputation:
    """Price a `purchase.recorded` body again; `find_table(id, version)` is the bank's copy."""
    record = body.get("pricing") if isinstance(body, dict) else None
    try:
        table_id, version = table_ref(record)
    except CocoonError as exc:
        return Recomputation(UNREADABLE, None, str(exc))
    table = find_table(table_id, version)
    if table is None:
        return Recomputation(TABLE_UNKNOWN, None,
                             f"the bank holds no price table {table_id} v{version}")
    if record["table"].get("digest") != table.digest:
        return Recomputation(MISMATCH, None,
                             f"the device priced with a table {table_id} v{version} whose "
                             f"digest {record['table'].get('digest')} is not the bank's "
                             f"{table.digest}")
    try:
        quote = price(table, lot_from_record(record))
    except CocoonError as exc:
        return Recomputation(UNREADABLE, None, f"the event's inputs cannot be priced: {exc}")
    amount = str(quote.amount)
    problems = []
    try:
        check_quote(record, quote)
    except CocoonError as exc:
        problems.append(str(exc))
    for name, stated, computed in (("amount", body.get("amount"), quote.amount),
                                   ("unit_price", body.get("unit_price"), quote.unit_price)):
        if not _same(stated, computed):
            problems.append(f"the event's {name} {stated} is not the bank's {computed}")
    problems += _weights(body, record)
    if problems:
        return Recomputation(MISMATCH, amount, "; ".join(problems))
    return Recomputation(MATCH, amount)


def _same(stated, computed: Decimal) -> bool:
    try:
        return isinstance(stated, str) and Decimal(stated) == computed
    except InvalidOperation:
        return False


def _weights(body: dict, record: dict) -> list[str]:
    """The priced net is the weighed net, and gross = tare + net."""
    scale = body.get("scale") if isinstance(body.get("scale"), dict) else {}
    try:
        gross, tare, net = (int(scale[k]) for k in ("gross_g", "tare_g", "net_g"))
    except (KeyError, TypeError, ValueError):
        return ["the event's scale weights are not whole grams"]
    problems = []
    if gross != tare + net:
        problems.append(f"gross {gross} g is not tare {tare} g + net {net} g")
    if str(record.get("inputs", {}).get("net_g")) != str(net):
        problems.append(f"the priced net {record.get('inputs', {}).get('net_g')} g is not the "
                        f"weighed net {net} g")
    return problems
