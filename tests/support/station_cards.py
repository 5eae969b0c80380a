"""Personalised virtual cards for station tests: farmer and staff CPU cards, as issued, and
the station's PSAM.

The files are filled with the drivers' own record builders and a real issuer signature, so a
test starts with a card in the state `cocoon-agent card issue` leaves it in, without spending
APDUs on issuing it every time (issuing itself is tested through pcscd elsewhere). Cards hold
the keys of the PSAM scheme, diversified from MASTERS by their serial (SM4 unless told), as the
cooperative's card maker personalises them; `psam()` is the PSAM that goes with them.
"""

from __future__ import annotations

from drivers.pcsc import card_auth
from drivers.pcsc import farmer_card as fc
from drivers.pcsc import staff_card as sc
from drivers.pcsc.psam import USAGE_EXTERNAL, USAGE_INTERNAL
from drivers.pcsc.symmetric import ALG_SM4
from drivers.vpcd.psam import VirtualPsam, card_keys

from .cpu_card import CpuFarmerCard

#: The tests' PSAM master keys (usage -> key).
MASTERS = {USAGE_INTERNAL: bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0"),
           USAGE_EXTERNAL: bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")}
SAM_READER = "00 01"

HOLDER = {
    "farmer_id": "F-330521-0042",
    "name": "Wang Xiuying",
    "address": "Deqing county, Huzhou, group 3",
    "labour": 3,
    "mulberry_area_mu": "4.5",
    "silkworm_room_area_m2": "60",
    "account_ref": "acct-7f3a9c",
}
#: A holder record with the Chinese text real cards carry (multi-byte UTF-8 near the limits).
HOLDER_ZH = {
    "farmer_id": "F-330521-0042",
    "name": "王秀英",
    "address": "浙江省湖州市德清县新市镇蚕桑村 3 组",
    "labour": 3,
    "mulberry_area_mu": "4.5",
    "silkworm_room_area_m2": "60",
    "account_ref": "acct-7f3a9c",
}
CLERK = {"staff_id": "S-07", "name": "Clerk Li", "role": "clerk"}
SUPERVISOR = {"staff_id": "S-01", "name": "Supervisor Zhao", "role": "supervisor"}


def card_sale(n: int) -> dict:
    """The n-th sample sale as a card keeps it (distinct voucher and weight per n)."""
    return {"date": "2026-05-2" + str(n % 10), "voucher": f"st-01-20260520-{n:04d}",
            "grade": "+1", "net_g": 12_340 + n, "unit_price": "52.60", "amount": "649.08"}


def _personalise(card: CpuFarmerCard, record: bytes, issuer_signer, *,
                 own_key: bool = False) -> CpuFarmerCard:
    serial = bytes(card.files[fc.SFI_SERIAL].data)
    auth = b""
    if own_key:                     # as GENERATE ASYMMETRIC KEY PAIR leaves it
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        card.auth_private = Ed25519PrivateKey.generate()
        auth = card_auth.build_auth_record(card.auth_private.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw))
        card.files[card_auth.SFI_AUTH_KEY].records[0] = auth
    signature = issuer_signer.sign(fc.signed_bytes(serial, record, auth))
    card.files[fc.SFI_HOLDER].records[0] = record
    card.files[fc.SFI_SIGNATURE].records[0] = fc.build_signature(issuer_signer.alg, signature)
    return card


def psam(make, reader=SAM_READER, *, alg: int = ALG_SM4, masters: dict | None = None,
         **kwargs) -> VirtualPsam:
    """The station's PSAM (not inserted) with the tests' master keys."""
    return make(reader, cls=VirtualPsam, alg=alg, masters=masters or MASTERS, **kwargs)


def _keys(serial: str, sym_alg: int | None, masters: dict | None) -> dict:
    if sym_alg is None:
        return {}
    return {"sym_alg": sym_alg,
            "sym_keys": card_keys(sym_alg, masters or MASTERS, bytes.fromhex(serial))}


def farmer_card(make, reader, issuer_signer, *, serial: str = "8600112233445566",
                holder: dict | None = None, own_key: bool = False,
                sym_alg: int | None = ALG_SM4, masters: dict | None = None,
                **kwargs) -> CpuFarmerCard:
    """A farmer CPU card issued to `holder` (not inserted), with the PSAM scheme's keys
    (`sym_alg` None: none, an older card) and its own Ed25519 key when `own_key`. `make` is
    the virtual_card fixture's factory."""
    card = make(reader, cls=CpuFarmerCard, serial=bytes.fromhex(serial), own_key=own_key,
                **_keys(serial, sym_alg, masters), **kwargs)
    return _personalise(card, fc.build_holder(holder or HOLDER), issuer_signer,
                        own_key=own_key)


def staff_card(make, reader, issuer_signer, *, serial: str = "5300000000000007",
               staff: dict | None = None, sym_alg: int | None = ALG_SM4,
               masters: dict | None = None) -> CpuFarmerCard:
    """A staff card (the staff application on a CPU card), not inserted."""
    card = make(reader, cls=CpuFarmerCard, serial=bytes.fromhex(serial), aid=sc.STAFF_AID,
                **_keys(serial, sym_alg, masters))
    return _personalise(card, sc.build_staff(staff or CLERK), issuer_signer)
