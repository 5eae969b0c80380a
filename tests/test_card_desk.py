"""The station's card desk through the real pcscd: staff and farmer cards become flow inputs,
forged, blocked and unknown cards are refused in plain words, and a sale the card missed is
written to it at its next swipe. The desk challenges cards as configured by default ([card]
auth = "psam"), with the tests' PSAM in the second reader; tests/test_card_psam.py has the
challenge's own cases."""

from __future__ import annotations

import copy
import queue
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contract.commands import Command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import Ed25519Signer, Verifier
from agent.station import purchase as p
from agent.station import sales
from agent.station.blacklist import Blacklist, BlacklistRefused
from agent.station.card_desk import CardDesk, CardWriteError
from agent.station.effects import EffectRunner
from drivers.pcsc import CardMonitor
from drivers.pcsc import farmer_card as fc
from tests.support.cpu_card import CpuFarmerCard
from tests.support.station_cards import (
    CLERK,
    HOLDER,
    SUPERVISOR,
    farmer_card,
    psam,
    staff_card,
)

READER = "00 00"
GOOD = p.Weighing("scale-1", 52_400, 400, 52_000, True, True, frames_digest="d" * 64)
PRICED = p.Priced("+1", Decimal("38.50"), Decimal("2002.00"), {"table": "t:1"})


@pytest.fixture(scope="module")
def issuer():
    return Ed25519Signer.generate()


class Desk:
    """A CardDesk watching the reader through a real CardMonitor; inputs land in a queue."""

    def __init__(self, outbox, issuer, **kwargs):
        self.inputs: queue.Queue = queue.Queue()
        self.outbox = outbox
        self.blacklist = Blacklist(outbox)
        self.desk = CardDesk(reader=READER, issuer_verifier=Verifier.from_pem(
            issuer.public_key_pem()), outbox=outbox, submit=self.inputs.put,
            blacklist=self.blacklist, **kwargs)
        self.monitor = CardMonitor(self.desk.observe, poll_s=0.2).start()

    def next(self, timeout: float = 10.0):
        return self.inputs.get(timeout=timeout)

    def events(self, type_: str) -> list[dict]:
        stored = [parse_json_object(s.payload) for s in self.outbox.pending(1000)]
        return [e for e in stored if e["type"] == type_]


@pytest.fixture
def desk(make_outbox, issuer, virtual_card):
    psam(virtual_card).insert()                 # in the SAM slot for the whole test
    d = Desk(make_outbox(device="station-01"), issuer)
    yield d
    d.monitor.stop()
    d.desk.close()


def test_staff_and_farmer_cards_become_flow_inputs(desk, virtual_card, issuer):
    with staff_card(virtual_card, READER, issuer, staff=SUPERVISOR):
        assert desk.next() == p.StaffCard(p.Staff("S-01", "Supervisor Zhao", "supervisor"))
    card = farmer_card(virtual_card, READER, issuer)
    card.files[fc.SFI_COUNTER].data[:] = (41).to_bytes(4, "big")
    with card:
        got = desk.next()
        assert isinstance(got, p.FarmerCard)
        assert got.farmer == p.Farmer("8600112233445566", "cpu", HOLDER["farmer_id"],
                                      HOLDER["name"], HOLDER["account_ref"], 42)
    assert desk.next() == p.CardRemoved()


def test_forged_blocked_and_unknown_cards_are_refused_and_reported(desk, virtual_card, issuer):
    forged = farmer_card(virtual_card, READER, issuer)
    record = forged.files[fc.SFI_HOLDER].records[0]
    forged.files[fc.SFI_HOLDER].records[0] = record.replace(b"acct-7f3a9c", b"acct-000000")
    with forged:
        refused = desk.next()
        assert isinstance(refused, p.CardRefused) and "forged" in refused.reason
    # a refused card was never accepted: pulling it out is not a CardRemoved
    with pytest.raises(queue.Empty):
        desk.next(timeout=0.5)

    desk.blacklist.handle(Command("b1", "station-01", "blacklist.set", None, None, {
        "version": 3, "cards": [{"card_uid": "8600112233445566", "reason": "reported stolen"}]},
        "k"))
    with farmer_card(virtual_card, READER, issuer):
        refused = desk.next()
        assert "blocked by the bank (reported stolen)" in refused.reason
    with pytest.raises(BlacklistRefused, match="not newer"):
        desk.blacklist.handle(Command("b2", "station-01", "blacklist.set", None, None,
                                      {"version": 3, "cards": []}, "k"))

    with virtual_card(READER, respond=lambda apdu: bytes.fromhex("6A82")):
        refused = desk.next()
        assert "unknown card" in refused.reason
    with staff_card(virtual_card, READER, Ed25519Signer.generate(), staff=CLERK):
        refused = desk.next()
        assert isinstance(refused, p.CardRefused) and "forged" in refused.reason
    reports = desk.events("card.refused")
    assert [r["priority"] for r in reports] == ["alert"] * 3
    assert [r["body"]["card_kind"] for r in reports] == ["cpu", "cpu", "staff"]
    assert reports[1]["body"]["reason"] == "blacklisted: reported stolen"


def test_a_malformed_card_is_refused_with_the_reason(desk, virtual_card, issuer):
    card = farmer_card(virtual_card, READER, issuer)
    card.files[fc.SFI_HOLDER].records[0] = b"\x70\x40\xc1\x05F-001" + b"\xff" * 20
    with card:
        refused = desk.next()
        assert isinstance(refused, p.CardRefused) and "cut short" in refused.reason


def sell(station, desk):
    station.handle(p.StaffCard(p.Staff("S-07", "Clerk Li", "clerk")))
    station.handle(p.ScaleUpdate(GOOD))
    station.handle(desk.next())
    station.handle(p.Graded(PRICED))
    station.handle(p.Confirm())


def test_the_sale_is_written_to_the_card(desk, virtual_card, issuer):
    station = EffectRunner("station-01", desk.outbox, write_card=desk.desk.write_card)
    card = farmer_card(virtual_card, READER, issuer)
    with card:
        sell(station, desk)
        (recorded,) = desk.events("purchase.recorded")
        assert recorded["body"]["farmer"]["card_counter"] == 1
        assert card.files[fc.SFI_COUNTER].data == bytearray((0, 0, 0, 1))
        on_card = fc.parse_sale(card.files[fc.SFI_SALES].records[0])
        assert (on_card.voucher, on_card.counter) == (recorded["body"]["voucher"], 1)
        assert (on_card.net_g, on_card.amount, on_card.grade) == (52_000, "2002.00", "+1")
        assert station.flow.phase is p.Phase.READY


def test_a_card_pulled_out_while_writing_gets_the_sale_at_its_next_swipe(desk, virtual_card,
                                                                          issuer):
    station = EffectRunner("station-01", desk.outbox, write_card=desk.desk.write_card)
    card = farmer_card(virtual_card, READER, issuer)
    card.pull_on(lambda apdu: apdu[1] == 0xE2)     # pulled out as the sale record is appended
    card.insert()
    sell(station, desk)
    (failed,) = desk.events("card.write_failed")
    voucher = failed["body"]["voucher"]
    assert sales.owed_to_card(desk.outbox, "8600112233445566")[0][1]["voucher"] == voucher
    assert desk.next() == p.CardRemoved()          # the flow already finished the sale
    assert card.files[fc.SFI_COUNTER].data == bytearray((0, 0, 0, 1))  # counter, no record
    with pytest.raises(CardWriteError, match="no longer in the reader"):
        desk.desk.write_card(_farmer(), {"seq": 1})

    card.insert()                                   # the next swipe catches the card up
    farmer = desk.next().farmer
    assert farmer.card_counter == 3                 # counter 1 was spent, the sale took 2
    (caught,) = desk.events("card.caught_up")
    assert caught["priority"] == "money"
    assert caught["body"] | {"seq": 0} == {
        "card_uid": "8600112233445566", "card_kind": "cpu", "voucher": voucher, "seq": 0,
        "sale_counter": 1, "written_counter": 2}
    assert sales.owed_to_card(desk.outbox, "8600112233445566") == []
    assert fc.parse_sale(card.files[fc.SFI_SALES].records[0]).voucher == voucher


def test_a_sale_owed_to_a_card_that_already_holds_it_is_not_written_twice(desk, virtual_card,
                                                                         issuer):
    """A write the station gave up on (it timed out) that reached the card after all."""
    station = EffectRunner("station-01", desk.outbox, write_card=desk.desk.write_card)
    card = farmer_card(virtual_card, READER, issuer)
    card.insert()
    sell(station, desk)
    (recorded,) = desk.events("purchase.recorded")
    voucher = recorded["body"]["voucher"]
    assert len(card.files[fc.SFI_SALES].records) == 1
    sales.owe_card(desk.outbox, recorded["seq"], {**_card_sale(recorded), "counter": 1})
    card.remove()
    assert desk.next() == p.CardRemoved()

    card.insert()
    farmer = desk.next().farmer
    assert farmer.card_counter == 2                 # nothing was written: the counter stayed
    assert len(card.files[fc.SFI_SALES].records) == 1
    assert card.files[fc.SFI_COUNTER].data == bytearray((0, 0, 0, 1))
    (caught,) = desk.events("card.caught_up")
    assert caught["body"] == {
        "card_uid": "8600112233445566", "card_kind": "cpu", "voucher": voucher,
        "seq": recorded["seq"], "sale_counter": 1, "written_counter": 1,
        "already_on_card": True}
    assert sales.owed_to_card(desk.outbox, "8600112233445566") == []


def _card_sale(recorded):
    body = recorded["body"]
    return {"voucher": body["voucher"], "seq": recorded["seq"], "grade": body["grade"],
            "net_g": int(body["scale"]["net_g"]), "unit_price": body["unit_price"],
            "amount": body["amount"]}


def _farmer():
    return p.Farmer("8600112233445566", "cpu", "F", "n", "a", 1)


# -- card authentication (INTERNAL AUTHENTICATE) -----------------------------------------------

def test_a_card_with_its_own_key_answers_the_challenge(desk, virtual_card, issuer):
    desk.desk.auth = "ed25519"
    with farmer_card(virtual_card, READER, issuer, own_key=True) as card:
        assert isinstance(desk.next(), p.FarmerCard)
        assert any(apdu[1] == 0x88 for apdu in card.commands)
    assert desk.next() == p.CardRemoved()


def test_a_copied_card_fails_the_challenge(desk, virtual_card, issuer):
    desk.desk.auth = "ed25519"
    genuine = farmer_card(virtual_card, READER, issuer, own_key=True)
    clone = virtual_card(READER, cls=CpuFarmerCard, serial=bytes.fromhex("8600112233445566"))
    clone.files = copy.deepcopy(genuine.files)      # every readable byte, serial included
    clone.auth_private = Ed25519PrivateKey.generate()   # but not the card's secret key
    with clone:
        refused = desk.next()
        assert isinstance(refused, p.CardRefused)
        assert "failed the authentication challenge" in refused.reason
    (report,) = desk.events("card.refused")
    assert report["body"]["card_uid"] == "8600112233445566"


def test_a_station_that_requires_card_keys_refuses_cards_without_one(desk, virtual_card,
                                                                     issuer):
    desk.desk.auth, desk.desk.require_card_key = "ed25519", True
    with farmer_card(virtual_card, READER, issuer):
        refused = desk.next()
        assert "cannot answer the authentication challenge" in refused.reason
    with farmer_card(virtual_card, READER, issuer, own_key=True):
        assert isinstance(desk.next(), p.FarmerCard)


def test_issuing_a_card_with_its_own_key_through_the_reader(virtual_card, issuer):
    from drivers.pcsc import ApduTransport, card_auth

    verifier = Verifier.from_pem(issuer.public_key_pem())
    with virtual_card(READER, cls=CpuFarmerCard) as card, \
            ApduTransport.open(READER, removal_grace_s=2.0) as transport:
        issued = fc.issue_cpu_card(transport, HOLDER, issuer)
        assert issued.auth_key is not None and card.auth_private is not None
        data = fc.read_farmer_card(transport, verifier)
        assert data.signature_valid and data.auth_key == issued.auth_key
        assert card_auth.challenge_card(transport, bytes.fromhex(data.uid), data.auth_key) == ""
        # the key record is covered by the issuer signature: swapping it in breaks the card
        other = card_auth.build_auth_record(bytes(32))
        card.files[card_auth.SFI_AUTH_KEY].records[0] = other + b"\xff" * (40 - len(other))
        assert not fc.read_farmer_card(transport, verifier).signature_valid
    with virtual_card(READER, cls=CpuFarmerCard, own_key=False), \
            ApduTransport.open(READER, removal_grace_s=2.0) as transport:
        older = fc.issue_cpu_card(transport, HOLDER, issuer)     # a card without the command
        assert older.auth_key is None
        assert fc.read_farmer_card(transport, verifier).signature_valid


def test_a_swap_reported_while_the_card_stays_connected_is_ignored(make_outbox, issuer):
    """pcscd's event counter can move while a card stays in the reader, which the monitor
    reports as a quick swap; the card's own connection shows it never left."""
    from drivers.pcsc import CardInserted, CardWithdrawn

    class Connection:
        present = True
        closed = False

        def card_present(self):
            return self.present

        def close(self):
            self.closed = True

    inputs = []
    outbox = make_outbox(device="station-01")
    desk = CardDesk(reader=READER, issuer_verifier=Verifier.from_pem(issuer.public_key_pem()),
                    outbox=outbox, submit=inputs.append, blacklist=Blacklist(outbox),
                    open_transport=lambda reader: pytest.fail("must not reconnect"))
    name, atr = "Virtual PCD 00 00", b"\x3b\x00"
    assert desk._ours(name)
    connection = desk._transport = Connection()
    desk._farmer = p.Farmer("8600112233445566", "cpu", "F", "n", "a", 1)
    desk.observe(CardWithdrawn(name, atr))
    desk.observe(CardInserted(name, atr))
    assert inputs == [] and not connection.closed
    connection.present = False                     # now it really went
    desk.observe(CardWithdrawn(name, atr))
    assert inputs == [p.CardRemoved()] and connection.closed
