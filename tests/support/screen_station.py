"""A station on simulated hardware with its clerk's screen, for the screen's tests: the
tests' pcscd with a staff card and a farmer card in a vpcd reader, an XK3190-A9 simulator on
a pty, the agent (outbox, link, broker, ingest) and [screen] on a free loopback port."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.contract.signing import Ed25519Signer
from agent.demo.station import give_the_bank, install_price_table
from agent.screen.server import ScreenPart
from agent.station.part import StationPart
from drivers.scale.sim_model import WeightModel
from drivers.scale.simulator import Simulator

from .running import add_device
from .station_cards import SAM_READER, SUPERVISOR, farmer_card, psam, staff_card
from .waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
READER = "00 00"


def table_in_force(now: datetime) -> dict:
    doc = json.loads((ROOT / "config" / "price-table.example.json").read_text())
    doc["valid_from"] = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["valid_until"] = (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return doc


@dataclass
class ScreenStation:
    site: object
    running: object
    part: StationPart
    screen: ScreenPart
    sim: Simulator
    staff: object       # the staff card (a context manager: in, then out)
    farmer: object      # the farmer card (insert() / remove())
    supervisor: object  # a supervisor's staff card (like `staff`)

    @property
    def url(self) -> str:
        return self.screen.url


def start_screen_station(site, services, pty_pair, tmp_path, virtual_card, *,
                         language: str = "en", settle_s: float = 0.2,
                         port: int = 0, screen: dict | None = None,
                         before_start=None) -> ScreenStation:
    """`screen`: more [screen] keys; `before_start(data_dir)` runs before the agent starts
    (a technician's set-up on the device)."""
    issuer = Ed25519Signer.generate()
    issuer_pem = tmp_path / "issuer.pem"
    issuer_pem.write_bytes(issuer.public_key_pem())
    pty = pty_pair.plug()
    sim = Simulator(str(pty.peer), "xk3190-a9", WeightModel(settle_s=settle_s),
                    rate_hz=20).start()
    config = add_device(site, "station-01",
                        station={"confirming_s": 120, "grading_s": 300},
                        card={"reader": READER, "issuer_public_key_file": str(issuer_pem),
                              "sam_reader": SAM_READER},
                        scale={"port": str(pty.device), "protocol": "xk3190-a9", "id": "bench-1",
                               "division_g": "20", "capacity_g": "150000", "tare_g": 400,
                               "stable_count": 4, "stable_window_s": 1.0},
                        printer={"url": f"file://{tmp_path / 'vouchers.escpos'}"},
                        screen={"port": port, "language": language, **(screen or {})})
    give_the_bank(site, install_price_table(config.parent / "data", datetime.now(timezone.utc),
                                            site.backend_key))
    if before_start is not None:
        before_start(config.parent / "data")
    psam(virtual_card).insert()                      # the PSAM in the SAM slot ([card] auth)
    services.ingest(site.ingest_config)
    running = services.agent(config)
    part = next(x for x in running.agent.parts if isinstance(x, StationPart))
    screen = next(x for x in running.agent.parts if isinstance(x, ScreenPart))
    if port == 0:
        wait_for(lambda: screen.url, 10, what="the screen served")
    return ScreenStation(site, running, part, screen, sim,
                         staff_card(virtual_card, READER, issuer),
                         farmer_card(virtual_card, READER, issuer),
                         staff_card(virtual_card, READER, issuer, serial="5300000000000008",
                                    staff=SUPERVISOR))
