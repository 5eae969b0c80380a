"""The demo station's simulated hardware: a card reader with cards, and a scale on a pty.

- a private pcscd with vpcd virtual readers (drivers.vpcd), a clerk's staff card and a few
  farmers' CPU cards issued by a demo issuer key, and the station's PSAM in the second reader
  (the SAM slot) with the demo's master keys, from which every card's keys are diversified;
- a Yaohua XK3190-A9 indicator simulated on one end of a socat pty pair; the agent opens the
  other end as it would /dev/ttyUSB0.

The cards' contents (counters, sales) are kept in a JSON file between runs, as a real card
keeps them, so a second run continues each card's transaction counter instead of replaying it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

from agent.contract.signing import generate_key_file, load_signer
from drivers.pcsc import farmer_card as fc
from drivers.pcsc import staff_card as sc
from drivers.pcsc.psam import USAGE_EXTERNAL, USAGE_INTERNAL
from drivers.pcsc.symmetric import ALG_SM4
from drivers.vpcd.cpu_card import BinaryFile, CpuFarmerCard, RecordFile
from drivers.vpcd.pcscd import SOCKET_ENV, Pcscd
from drivers.vpcd.psam import VirtualPsam, card_keys

FARMERS = [
    {"farmer_id": "F-330521-0042", "name": "Wang Xiuying", "address": "Xinshi town, group 3",
     "labour": 3, "mulberry_area_mu": "4.5", "silkworm_room_area_m2": "60",
     "account_ref": "acct-7f3a9c"},
    {"farmer_id": "F-330521-0117", "name": "Li Guohua", "address": "Xinshi town, group 5",
     "labour": 2, "mulberry_area_mu": "3.2", "silkworm_room_area_m2": "45",
     "account_ref": "acct-19b2e0"},
    {"farmer_id": "F-330521-0230", "name": "Zhou Meilan", "address": "Leidian town, group 1",
     "labour": 4, "mulberry_area_mu": "6", "silkworm_room_area_m2": "80",
     "account_ref": "acct-c4d871"},
]
CLERK = {"staff_id": "S-07", "name": "Clerk Li", "role": "clerk"}
READER = "PCD 00 00"          # a unique part of the first vpcd reader's name
SAM_READER = "PCD 00 01"      # the second: the reader's SAM slot, with the PSAM


def _dump(card: CpuFarmerCard) -> dict:
    out = {}
    for sfi, f in card.files.items():
        if isinstance(f, BinaryFile):
            out[str(sfi)] = {"binary": bytes(f.data).hex(), "writable": f.writable}
        else:
            out[str(sfi)] = {"record_size": f.record_size, "capacity": f.capacity,
                             "cyclic": f.cyclic, "records": [r.hex() for r in f.records]}
    return out


def _load(card: CpuFarmerCard, files: dict) -> None:
    for sfi, f in files.items():
        if "binary" in f:
            card.files[int(sfi)] = BinaryFile(bytearray.fromhex(f["binary"]), f["writable"])
        else:
            card.files[int(sfi)] = RecordFile(f["record_size"], f["capacity"], f["cyclic"],
                                              [bytes.fromhex(r) for r in f["records"]])


class Bench:
    """The simulated station bench under `root`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cards_file = self.root / "cards.json"
        self.issuer_key = self.root / "issuer.key"
        self.issuer_pem = self.root / "issuer.pem"
        self.psam_keys = self.root / "psam-masters.json"    # the PSAM's secret, kept by it
        self.pcscd: Pcscd | None = None
        self.psam: VirtualPsam | None = None
        self.socat: subprocess.Popen | None = None
        self.scale_port = self.root / "scale-indicator"   # the agent's end of the cable
        self._sim_port = self.root / "scale-sim"
        self.scale = None
        self.staff: CpuFarmerCard | None = None
        self.farmers: list[CpuFarmerCard] = []

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        if not self.issuer_key.exists():
            generate_key_file(self.issuer_key)
        issuer = load_signer(self.issuer_key)
        self.issuer_pem.write_bytes(issuer.public_key_pem())
        socket_path = self.root / "pcscd.comm"
        os.environ[SOCKET_ENV] = str(socket_path)   # before the first PC/SC call
        self.pcscd = Pcscd(self.root / "pcscd", socket_path)
        self.pcscd.start()
        self._start_scale()
        reader = self.pcscd.reader(READER)
        self.masters = self._masters()
        self.psam = VirtualPsam(self.pcscd.reader(SAM_READER), alg=ALG_SM4,
                                masters=self.masters).insert()
        saved = json.loads(self.cards_file.read_text()) if self.cards_file.exists() else {}
        self.staff = self._card(reader, "5300000000000007", sc.STAFF_AID,
                                sc.build_staff(CLERK), issuer, saved)
        self.farmers = [self._card(reader, f"86001122334455{i:02d}", fc.AID,
                                   fc.build_holder(holder), issuer, saved)
                        for i, holder in enumerate(FARMERS, start=1)]

    def _masters(self) -> dict[int, bytes]:
        """The demo PSAM's master keys, made once (SM4, 16 bytes each)."""
        if not self.psam_keys.exists():
            self.psam_keys.write_text(json.dumps({
                "internal": os.urandom(16).hex(), "external": os.urandom(16).hex()}))
            self.psam_keys.chmod(0o600)
        keys = json.loads(self.psam_keys.read_text())
        return {USAGE_INTERNAL: bytes.fromhex(keys["internal"]),
                USAGE_EXTERNAL: bytes.fromhex(keys["external"])}

    def _card(self, reader, serial: str, aid: bytes, record: bytes, issuer, saved: dict):
        # Every card carries the PSAM scheme's keys, diversified by its serial, as the card
        # maker personalises the cooperative's cards (cards saved by an earlier run too).
        card = CpuFarmerCard(reader, serial=bytes.fromhex(serial), aid=aid, sales_capacity=10,
                             sym_alg=ALG_SM4,
                             sym_keys=card_keys(ALG_SM4, self.masters, bytes.fromhex(serial)))
        if serial in saved:
            _load(card, saved[serial])
        else:                                        # issued as `cocoon-agent card issue` does
            signature = issuer.sign(fc.signed_bytes(bytes.fromhex(serial), record))
            card.files[fc.SFI_HOLDER].records[0] = record
            card.files[fc.SFI_SIGNATURE].records[0] = fc.build_signature(issuer.alg, signature)
        return card

    def _start_scale(self) -> None:
        from drivers.scale.sim_model import WeightModel
        from drivers.scale.simulator import Simulator

        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is missing: install the Debian package socat "
                               "(scripts/bootstrap does)")
        for link in (self.scale_port, self._sim_port):
            link.unlink(missing_ok=True)
        self.socat = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self._sim_port}",
             f"pty,raw,echo=0,link={self.scale_port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)     # a terminal's Ctrl-C is for the demo; stop() ends it
        deadline = time.monotonic() + 5
        while not (self.scale_port.exists() and self._sim_port.exists()):
            if time.monotonic() > deadline or self.socat.poll() is not None:
                raise RuntimeError("socat did not create the scale's pty pair")
            time.sleep(0.02)
        self.scale = Simulator(str(self._sim_port), "xk3190-a9",
                               WeightModel(settle_s=0.6, noise_divisions=3), rate_hz=10).start()

    def save(self) -> None:
        cards = [self.staff, *self.farmers] if self.staff else []
        data = {bytes(c.files[fc.SFI_SERIAL].data).hex().upper(): _dump(c) for c in cards}
        tmp = self.cards_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.cards_file)

    def stop(self) -> None:
        for card in [self.staff, *self.farmers, self.psam]:
            if card is not None and card.inserted:
                card.remove(wait=False)
        self.save()
        if self.scale is not None:
            self.scale.stop()
        if self.socat is not None and self.socat.poll() is None:
            self.socat.terminate()
            self.socat.wait(5)
        if self.pcscd is not None:
            self.pcscd.stop()

    # -- what the clerk does with it --------------------------------------------------------

    def load_platform(self, kg: Decimal | str) -> None:
        self.scale.set_target(Decimal(kg))
