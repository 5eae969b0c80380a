"""Card authentication real cards can do, and the blacklist's age (issue 14, items 7 and 8).

The ciphers against published vectors and an independent SM4 (gmssl); the PSAM and the CPU
cards as virtual cards behind the tests' real pcscd, answering real APDUs; the station's card
desk refusing what it used to let through: a CPU card that cannot answer the challenge (6D00,
6A86), a copy with every readable byte but not the keys, an unchallenged staff card, and sales
on a months-old blacklist."""

from __future__ import annotations

import copy
import queue
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from agent.config import load_config
from agent.contract.commands import Command
from agent.contract.signing import Ed25519Signer, Verifier
from agent.errors import ConfigError
from agent.station import purchase as p
from agent.station.blacklist import Blacklist
from agent.station.card_desk import CardDesk
from drivers.pcsc import (
    ApduTransport,
    CardMonitor,
    SecurityStatusNotSatisfied,
    card_auth,
    symmetric,
)
from drivers.pcsc import farmer_card as fc
from drivers.pcsc.psam import USAGE_EXTERNAL, USAGE_INTERNAL, Psam, PsamError
from drivers.pcsc.symmetric import ALG_3DES, ALG_SM4
from drivers.vpcd.psam import card_keys
from tests.support.cpu_card import CpuFarmerCard
from tests.support.station_cards import (
    CLERK,
    HOLDER,
    MASTERS,
    SAM_READER,
    farmer_card,
    psam,
    staff_card,
)
from tests.test_config import MINIMAL, write

READER = "00 00"
SERIAL = bytes.fromhex("8600112233445566")
OTHER_MASTERS = {USAGE_INTERNAL: bytes(range(16)), USAGE_EXTERNAL: bytes(range(16, 32))}


# -- the ciphers and the diversification, pure -----------------------------------------------

def test_sm4_gives_the_gb_t_32907_example():
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    out = symmetric.encrypt(ALG_SM4, key, key)
    assert out == bytes.fromhex("681edf34d206965e86b3e94f536e4246")
    assert symmetric.decrypt(ALG_SM4, key, out) == key


def _des(key8: bytes, block: bytes, decrypt: bool = False) -> bytes:
    """Single DES (triple DES with K1 = K2 = K3 is DES)."""
    cipher = Cipher(TripleDES(key8 * 3), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def test_3des_is_two_key_ede_built_on_the_published_des_example():
    # the worked DES example (key 133457799BBCDFF1, plaintext 0123456789ABCDEF)
    assert _des(bytes.fromhex("133457799BBCDFF1"), bytes.fromhex("0123456789ABCDEF")) == \
        bytes.fromhex("85E813540F0AB405")
    key, block = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes(range(8))
    k1, k2 = key[:8], key[8:]
    ede = _des(k1, _des(k2, _des(k1, block), decrypt=True))
    assert symmetric.encrypt(ALG_3DES, key, block) == ede


def test_sm4_diversification_matches_gmssl_and_the_formula():
    from gmssl.sm4 import SM4_ENCRYPT, CryptSM4

    def gm_sm4(key: bytes, block: bytes) -> bytes:
        gm = CryptSM4()                 # pads with PKCS#7: a whole block gains a second one,
        gm.set_key(key, SM4_ENCRYPT)    # and in ECB the first block's ciphertext stands alone
        return gm.crypt_ecb(block)[:16]

    vector = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert gm_sm4(vector, vector) == bytes.fromhex("681edf34d206965e86b3e94f536e4246")
    master = MASTERS[USAGE_INTERNAL]
    expected = gm_sm4(master, SERIAL + bytes(b ^ 0xFF for b in SERIAL))   # SM4(MK, f || ~f)
    assert symmetric.diversify(ALG_SM4, master, SERIAL) == expected
    two = symmetric.diversify(ALG_SM4, master, SERIAL + b"COCOON01")      # a second level
    assert two == gm_sm4(expected, b"COCOON01" + bytes(b ^ 0xFF for b in b"COCOON01"))


def test_3des_diversification_is_the_pboc_formula():
    master = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    k1, k2 = master[:8], master[8:]

    def ede(block):
        return _des(k1, _des(k2, _des(k1, block), decrypt=True))

    inverted = bytes(b ^ 0xFF for b in SERIAL)
    assert symmetric.diversify(ALG_3DES, master, SERIAL) == ede(SERIAL) + ede(inverted)


@pytest.mark.parametrize("bad", [b"", b"1234567", b"x" * 32])
def test_diversification_refuses_factors_that_are_not_whole_levels(bad):
    with pytest.raises(ValueError, match="factors of 8 bytes"):
        symmetric.diversify(ALG_SM4, MASTERS[USAGE_INTERNAL], bad)


# -- the PSAM and the card through pcscd -----------------------------------------------------

@pytest.mark.parametrize("alg", [ALG_3DES, ALG_SM4], ids=["3des", "sm4"])
def test_mutual_authentication_through_the_psam(virtual_card, alg):
    sam = psam(virtual_card, alg=alg).insert()
    card = virtual_card(READER, cls=CpuFarmerCard, serial=SERIAL, sym_alg=alg,
                        sym_keys=card_keys(alg, MASTERS, SERIAL)).insert()
    with ApduTransport.open(SAM_READER) as sam_t, ApduTransport.open(READER) as t:
        station_psam = Psam.select(sam_t)
        assert station_psam.block == symmetric.BLOCK[alg]
        fc.select(t)
        assert card_auth.psam_authenticate(t, station_psam, SERIAL).ok
        assert card.station_authenticated
        assert [c[1] for c in card.commands[1:]] == [0x88, 0x84, 0x82]
        assert [c[1] for c in sam.commands[1:]] == [0x1A, 0xFA, 0x1A, 0xFA]
        # the PSAM's answer is the card's key at work: the card's keys are the masters'
        # diversified by its serial, which never left the PSAM
        challenge = bytes(symmetric.BLOCK[alg])
        assert station_psam.cryptogram(USAGE_INTERNAL, SERIAL, challenge) == \
            symmetric.encrypt(alg, card.sym_keys[card_auth.CARD_KID_INTERNAL], challenge)


def test_the_virtual_psam_answers_real_status_words(virtual_card):
    psam(virtual_card).insert()
    with ApduTransport.open(SAM_READER) as t:
        def sw(apdu_hex: str) -> int:
            return t.transmit(bytes.fromhex(apdu_hex), check=False).sw

        assert sw("801A4101088600112233445566") == 0x6982                    # not selected
        Psam.select(t)
        assert sw("80FA0000100000000000000000000000000000000000") == 0x6985  # no key loaded
        assert sw("801A7701088600112233445566") == 0x6A88                    # no such usage
        assert sw("801A4102088600112233445566") == 0x6A88                    # no such version
        assert sw("801A41010786001122334455") == 0x6700                      # 7-byte factor
        assert sw("001A4101088600112233445566") == 0x6E00                    # CLA 00
        assert sw("80CA000000") == 0x6D00                                    # unknown INS
        assert sw("801A4101088600112233445566") == 0x9000
        assert sw("80FA0000080000000000000000") == 0x6700                    # half an SM4 block
        assert sw("80FA0500100000000000000000000000000000000000") == 0x6A86  # MAC mode: no
    with virtual_card(READER, cls=CpuFarmerCard), ApduTransport.open(READER) as t, \
            pytest.raises(PsamError, match="no PSAM application"):
        Psam.select(t)                                       # a farmer card is not a PSAM


def test_card_side_status_words(virtual_card):
    keys = card_keys(ALG_SM4, MASTERS, SERIAL)
    card = virtual_card(READER, cls=CpuFarmerCard, serial=SERIAL, sym_alg=ALG_SM4,
                        sym_keys=keys).insert()
    with ApduTransport.open(READER) as t:
        with pytest.raises(SecurityStatusNotSatisfied):                 # 6982: not selected
            t.transmit(card_auth.get_challenge_apdu(16))
        fc.select(t)

        def sw(apdu: bytes) -> int:
            return t.transmit(apdu, check=False).sw

        assert sw(card_auth.external_authenticate_apdu(bytes(16))) == 0x6985  # no challenge
        assert sw(bytes.fromhex("0084000005")) == 0x6700                       # odd length
        assert sw(bytes.fromhex("0082000710") + bytes(16)) == 0x6A88           # no key 07
        assert sw(bytes.fromhex("0088000710") + bytes(16) + b"\0") == 0x6A86   # no key 07
        theirs = t.transmit(card_auth.get_challenge_apdu(16)).data
        assert sw(card_auth.external_authenticate_apdu(bytes(16))) == 0x63CE   # 14 tries left
        assert sw(card_auth.external_authenticate_apdu(bytes(16))) == 0x6985   # used up
        assert card.external_tries == 14 and theirs
        card.external_tries = 0
        assert sw(card_auth.external_authenticate_apdu(bytes(16))) == 0x6983   # blocked


# -- the station's card desk (item 7) --------------------------------------------------------

@pytest.fixture(scope="module")
def issuer():
    return Ed25519Signer.generate()


class Desk:
    def __init__(self, outbox, issuer, **kwargs):
        self.inputs: queue.Queue = queue.Queue()
        self.outbox = outbox
        self.blacklist = Blacklist(outbox)
        self.desk = CardDesk(reader=READER, issuer_verifier=Verifier.from_pem(
            issuer.public_key_pem()), outbox=outbox, submit=self.inputs.put,
            blacklist=self.blacklist, **kwargs)
        self.monitor = CardMonitor(self.desk.observe, poll_s=0.2).start()

    def swipe(self, card):
        with card:
            got = self.inputs.get(timeout=10)
        if isinstance(got, p.FarmerCard):
            assert self.inputs.get(timeout=10) == p.CardRemoved()
        return got

    def reports(self) -> list[dict]:
        from agent.contract.envelope import parse_json_object

        stored = [parse_json_object(s.payload) for s in self.outbox.pending(1000)]
        return [e["body"] for e in stored if e["type"] == "card.refused"]


@pytest.fixture
def make_desk(make_outbox, issuer):
    made = []

    def make(**kwargs) -> Desk:
        desk = Desk(make_outbox(device="station-01"), issuer, **kwargs)
        made.append(desk)
        return desk

    yield make
    for desk in made:
        desk.monitor.stop()
        desk.desk.close()


def test_psam_is_the_default_and_every_cpu_card_must_answer(virtual_card, make_desk, issuer,
                                                             tmp_path):
    card = load_config(write(tmp_path, MINIMAL + '[card]\nissuer_public_key_file = "i.pem"\n'
                             )).section("card")
    assert (card.auth, card.sam_reader, card.allow_m1) == ("psam", "", True)
    psam(virtual_card).insert()
    desk = make_desk()                          # CardDesk's default is the configuration's
    genuine = farmer_card(virtual_card, READER, issuer)
    assert isinstance(desk.swipe(genuine), p.FarmerCard)
    assert [c[1] for c in genuine.commands if c[1] in (0x88, 0x84, 0x82)] == [0x88, 0x84, 0x82]

    # a CPU card without the scheme's keys: 6D00, no longer taken unchallenged
    older = farmer_card(virtual_card, READER, issuer, sym_alg=None)
    refused = desk.swipe(older)
    assert isinstance(refused, p.CardRefused)
    assert "cannot answer the station's authentication challenge" in refused.reason
    assert "6D00" in refused.reason
    # a card with only an Ed25519 key of its own: 6A86
    ed_only = farmer_card(virtual_card, READER, issuer, sym_alg=None, own_key=True)
    refused = desk.swipe(ed_only)
    assert isinstance(refused, p.CardRefused) and "6A86" in refused.reason

    # a copy of every readable byte, serial included, keyed by another issuer's masters
    clone = farmer_card(virtual_card, READER, issuer, masters=OTHER_MASTERS)
    clone.files = copy.deepcopy(genuine.files)
    refused = desk.swipe(clone)
    assert isinstance(refused, p.CardRefused)
    assert "failed the authentication challenge" in refused.reason

    # key 01 right (the card proves itself) but key 02 from other masters: the card refuses
    # the station's proof (63CX)
    half = farmer_card(virtual_card, READER, issuer)
    half.sym_keys[card_auth.CARD_KID_EXTERNAL] = card_keys(
        ALG_SM4, OTHER_MASTERS, SERIAL)[card_auth.CARD_KID_EXTERNAL]
    refused = desk.swipe(half)
    assert isinstance(refused, p.CardRefused)
    assert "did not accept the station's PSAM" in refused.reason and "63CE" in refused.reason
    assert [r["card_uid"] for r in desk.reports()] == ["8600112233445566"] * 4


def test_staff_cards_are_challenged_too(virtual_card, make_desk, issuer):
    alg = ALG_3DES              # (the desk's other tests use SM4, the tests' default)
    psam(virtual_card, alg=alg).insert()
    desk = make_desk(sam_reader=SAM_READER)
    clerk = staff_card(virtual_card, READER, issuer, sym_alg=alg)
    assert desk.swipe(clerk) == p.StaffCard(p.Staff("S-07", "Clerk Li", "clerk"))
    assert 0x88 in [c[1] for c in clerk.commands] and clerk.station_authenticated
    unkeyed = staff_card(virtual_card, READER, issuer, staff=CLERK, sym_alg=None)
    refused = desk.swipe(unkeyed)
    assert isinstance(refused, p.CardRefused)
    assert "This staff card cannot answer" in refused.reason
    assert desk.reports()[0]["card_kind"] == "staff"


def test_without_a_psam_no_cpu_card_is_accepted(virtual_card, make_desk, issuer):
    # auth = "none", chosen explicitly, keeps the old behaviour: no challenge at all
    none = make_desk(auth="none")
    older = farmer_card(virtual_card, READER, issuer, sym_alg=None)
    assert isinstance(none.swipe(older), p.FarmerCard)
    assert not any(c[1] in (0x88, 0x84, 0x82) for c in older.commands)
    none.monitor.stop()

    desk = make_desk()                          # the default: psam, and no PSAM in any slot
    refused = desk.swipe(farmer_card(virtual_card, READER, issuer))
    assert isinstance(refused, p.CardRefused)
    assert refused.reason.startswith("Cards cannot be checked: no PSAM of the cooperative")
    assert desk.reports() == []                 # the station's fault, not the card's
    psam(virtual_card).insert()                 # put in: the next swipe finds it
    assert isinstance(desk.swipe(farmer_card(virtual_card, READER, issuer)), p.FarmerCard)


def test_m1_cards_are_the_weaker_kind_or_switched_off(virtual_card, make_desk, issuer):
    from drivers.pcsc.m1_card import issue_m1_card
    from tests.support.m1_card import M1Card

    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    m1 = virtual_card(READER, cls=M1Card, uid=bytes.fromhex("A1B2C3D4")).insert()
    with ApduTransport.open(READER, removal_grace_s=2.0) as transport:
        issue_m1_card(transport, HOLDER, issuer, master)
    m1.remove()
    desk = make_desk(m1_master_key=master)
    m1.insert()
    got = desk.inputs.get(timeout=10)
    assert isinstance(got, p.FarmerCard) and got.farmer.card_kind == "m1"
    assert any("M1 card: the weaker kind" in n for n in desk.desk.notices())
    m1.remove()
    assert desk.inputs.get(timeout=10) == p.CardRemoved()
    assert not any("weaker" in n for n in desk.desk.notices())
    off = make_desk(m1_master_key=master, allow_m1=False)
    refused = off.swipe(m1)
    assert isinstance(refused, p.CardRefused) and "MIFARE (M1) cards are switched off" in \
        refused.reason


# -- the blacklist's age (item 8) ------------------------------------------------------------

def _list_command(version: int, issued: datetime, cards=()) -> Command:
    return Command(f"b{version}-{issued.timestamp()}", "station-01", "blacklist.set", issued,
                   issued + timedelta(hours=1), {"version": version, "cards": list(cards)}, "k")


def test_an_old_blacklist_warns_then_stops_sales_until_a_fresh_one(virtual_card, make_desk,
                                                                   issuer):
    psam(virtual_card).insert()
    desk = make_desk()
    now = datetime.now(timezone.utc)
    # no list yet: a line in the log, and sales go on (the default test sells so)
    assert desk.blacklist.freshness(24, 72).state == "never" and desk.desk.notices() == []

    desk.blacklist.handle(_list_command(1, now - timedelta(hours=30)))
    assert isinstance(desk.swipe(farmer_card(virtual_card, READER, issuer)), p.FarmerCard)
    assert any("The card blacklist is 30 h old (over 24 h)" in n for n in desk.desk.notices())

    desk.blacklist.handle(_list_command(2, now - timedelta(days=90)))   # a months-old list
    refused = desk.swipe(farmer_card(virtual_card, READER, issuer))
    assert isinstance(refused, p.CardRefused)
    assert refused.reason.startswith("No sale: the card blacklist is 2160 h old (over 72 h)")
    # staff still sign in (to see the screen, void a sale); only sales stop
    assert isinstance(desk.swipe(staff_card(virtual_card, READER, issuer)), p.StaffCard)

    # the same list sent again by the bank refreshes it; an older copy does not
    result = desk.blacklist.handle(_list_command(2, now - timedelta(minutes=5)))
    assert result["refreshed"] is True
    desk.blacklist.handle(_list_command(2, now - timedelta(days=90)))
    assert desk.blacklist.freshness(24, 72).state == "fresh"
    assert isinstance(desk.swipe(farmer_card(virtual_card, READER, issuer)), p.FarmerCard)
    assert not any("blacklist" in n for n in desk.desk.notices())


def test_blacklist_age_configuration(tmp_path):
    base = MINIMAL + '[card]\nissuer_public_key_file = "i.pem"\n'
    card = load_config(write(tmp_path, base)).section("card")
    assert (card.blacklist_max_age_h, card.blacklist_refuse_age_h) == (24, 72)
    with pytest.raises(ConfigError, match="must not be below blacklist_max_age_h"):
        load_config(write(tmp_path, base + "blacklist_max_age_h = 48\n"
                                           "blacklist_refuse_age_h = 12\n"))
    with pytest.raises(ConfigError, match=r"\[card\] auth"):
        load_config(write(tmp_path, base + 'auth = "des"\n'))
    with pytest.raises(ConfigError, match="internal_authenticate"):
        load_config(write(tmp_path, base + 'auth = "none"\ninternal_authenticate = true\n'))
