"""Personalised virtual cards for station tests: farmer and staff CPU cards, as issued.

The files are filled with the drivers' own record builders and a real issuer signature, so a
test starts with a card in the state `cocoon-agent card issue` leaves it in, without spending
APDUs on issuing it every time (issuing itself is tested through pcscd elsewhere).
"""

from __future__ import annotations

from drivers.pcsc import farmer_card as fc
from drivers.pcsc import staff_card as sc

from .cpu_card import CpuFarmerCard

HOLDER = {
    "farmer_id": "F-330521-0042",
    "name": "Wang Xiuying",
    "address": "Deqing county, Huzhou, group 3",
    "labour": 3,
    "mulberry_area_mu": "4.5",
    "silkworm_room_area_m2": "60",
    "account_ref": "acct-7f3a9c",
}
CLERK = {"staff_id": "S-07", "name": "Clerk Li", "role": "clerk"}
SUPERVISOR = {"staff_id": "S-01", "name": "Supervisor Zhao", "role": "supervisor"}


def _personalise(card: CpuFarmerCard, record: bytes, issuer_signer) -> CpuFarmerCard:
    serial = bytes(card.files[fc.SFI_SERIAL].data)
    signature = issuer_signer.sign(fc.signed_bytes(serial, record))
    card.files[fc.SFI_HOLDER].records[0] = record
    card.files[fc.SFI_SIGNATURE].records[0] = fc.build_signature(issuer_signer.alg, signature)
    return card


def farmer_card(make, reader, issuer_signer, *, serial: str = "8600112233445566",
                holder: dict | None = None, **kwargs) -> CpuFarmerCard:
    """A farmer CPU card issued to `holder` (not inserted). `make` is the virtual_card
    fixture's factory."""
    card = make(reader, cls=CpuFarmerCard, serial=bytes.fromhex(serial), **kwargs)
    return _personalise(card, fc.build_holder(holder or HOLDER), issuer_signer)


def staff_card(make, reader, issuer_signer, *, serial: str = "5300000000000007",
               staff: dict | None = None) -> CpuFarmerCard:
    """A staff card (the staff application on a CPU card), not inserted."""
    card = make(reader, cls=CpuFarmerCard, serial=bytes.fromhex(serial), aid=sc.STAFF_AID)
    return _personalise(card, sc.build_staff(staff or CLERK), issuer_signer)
