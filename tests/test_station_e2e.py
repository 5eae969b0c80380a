"""A whole sale, end to end, through every real part: the tests' pcscd with a virtual farmer
card and a staff card in a vpcd reader, a simulated XK3190-A9 indicator on a pty, the agent's
station part, the outbox, Mosquitto with TLS and the ingest, which verifies and acknowledges."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from agent.contract.envelope import parse_json_object
from agent.contract.signing import Ed25519Signer, Verifier
from agent.demo.station import give_the_bank, install_price_table
from agent.station import purchase as p
from agent.station.part import StationPart
from drivers.pcsc import ApduTransport
from drivers.pcsc import farmer_card as fc
from drivers.pcsc.m1_card import issue_m1_card, read_m1_card
from drivers.scale.sim_model import WeightModel
from drivers.scale.simulator import Simulator
from tests.support.m1_card import M1Card
from tests.support.running import BIN, add_device, ingest_store_rows
from tests.support.station_cards import HOLDER, SAM_READER, farmer_card, psam, staff_card
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty", "tests.support.coprocessor")
ROOT = Path(__file__).resolve().parent.parent
READER = "00 00"


MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


def issued_m1_card(virtual_card, issuer) -> M1Card:
    """A MIFARE Classic card issued through the real reader path, then taken out."""
    card = virtual_card(READER, cls=M1Card, uid=bytes.fromhex("A1B2C3D4")).insert()
    with ApduTransport.open(READER, removal_grace_s=2.0) as transport:
        issue_m1_card(transport, HOLDER, issuer, MASTER)
    card.remove()
    return card


@pytest.fixture
def station(site, services, pty_pair, tmp_path, virtual_card):
    issuer = Ed25519Signer.generate()
    issuer_pem = tmp_path / "issuer.pem"
    issuer_pem.write_bytes(issuer.public_key_pem())
    master = tmp_path / "m1-master.hex"
    master.write_text(MASTER.hex() + "\n")
    pty = pty_pair.plug()
    sim = Simulator(str(pty.peer), "xk3190-a9", WeightModel(settle_s=0.2), rate_hz=20).start()
    config = add_device(site, "station-01",
                        station={"confirming_s": 60},
                        card={"reader": READER, "issuer_public_key_file": str(issuer_pem),
                              "m1_master_key_file": str(master), "sam_reader": SAM_READER},
                        scale={"port": str(pty.device), "protocol": "xk3190-a9", "id": "bench-1",
                               "division_g": "20", "capacity_g": "150000", "tare_g": 400,
                               "stable_count": 4, "stable_window_s": 0.3},
                        signals={"status_light": 17, "buzzer": 27, "factory": "mock"})
    give_the_bank(site, install_price_table(config.parent / "data", datetime.now(timezone.utc),
                                            site.backend_key))
    m1_card = issued_m1_card(virtual_card, issuer)   # at the office, before the station runs
    psam(virtual_card).insert()                      # the PSAM in the SAM slot ([card] auth)
    services.ingest(site.ingest_config)
    running = services.agent(config)
    part = next(x for x in running.agent.parts if isinstance(x, StationPart))
    yield site, running, part, sim, issuer, m1_card
    sim.stop()


def phase(part) -> p.Phase:
    return part.station.flow.phase


def wait_phase(part, wanted: p.Phase, what: str) -> None:
    try:
        wait_for(lambda: phase(part) is wanted, 10, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the station says: {part.message}") from None


@pytest.mark.parametrize("kind", ["cpu", "m1"])
def test_a_sale_from_card_insertion_to_an_acknowledged_event(station, virtual_card, kind):
    site, running, part, sim, issuer, m1_card = station
    if kind == "m1":
        card, uid = m1_card, "A1B2C3D4"
    else:
        card = farmer_card(virtual_card, READER, issuer)
        uid = "8600112233445566"
    with staff_card(virtual_card, READER, issuer):
        wait_phase(part, p.Phase.READY, "clerk signed in")
    card.insert()
    wait_phase(part, p.Phase.WEIGHING, "farmer card accepted")
    # the screen marks an M1 card as the weaker kind (it cannot be challenged)
    assert ("M1 card: the weaker kind" in part.message) is (kind == "m1")
    sim.set_target("52.40")
    wait_phase(part, p.Phase.GRADING, "a stable weight")
    part.grade({"shell_g": "9.6", "moisture_pct": "15", "reelable_pct": "100",
                "defects_pct": dict.fromkeys(("perforated", "stained", "thin", "mouldy"), "0")})
    try:
        wait_phase(part, p.Phase.CONFIRMING, "the sale priced")
    except AssertionError:
        raise AssertionError(part.message) from None
    part.submit(p.Confirm())
    wait_phase(part, p.Phase.READY, "the sale recorded")

    def recorded():
        rows = [parse_json_object(r["payload"]) for r in ingest_store_rows(site, "station-01")]
        return [e for e in rows if e["type"] == "purchase.recorded"]

    (event,) = wait_for(recorded, 15, what="purchase.recorded at the ingest")
    body = event["body"]
    assert body["scale"]["id"] == "bench-1"
    assert (body["scale"]["gross_g"], body["scale"]["tare_g"], body["scale"]["net_g"]) == (
        "52400", "400", "52000")
    assert body["farmer"]["card_uid"] == uid and body["farmer"]["card_kind"] == kind
    assert body["farmer"]["farmer_id"] == HOLDER["farmer_id"]
    assert body["farmer"]["card_counter"] == 1
    assert Decimal(body["amount"]) == (Decimal(body["unit_price"]) * 52).quantize(Decimal("0.01"))
    wait_for(lambda: running.outbox.acked_seq() >= event["seq"], 15,
             what="the ingest's acknowledgement")
    with ApduTransport.open(READER, removal_grace_s=2.0) as transport:  # read back as a clerk
        verifier = Verifier.from_pem(issuer.public_key_pem())
        data = (read_m1_card(transport, verifier, MASTER) if kind == "m1"
                else fc.read_farmer_card(transport, verifier))
    assert data.counter == 1 and data.signature_valid
    assert (data.sales[0].voucher, data.sales[0].net_g) == (body["voucher"], 52_000)
    screen = part.screen()
    assert body["voucher"] in screen and "acknowledged" in screen

    # the bank recomputed the amount from the event alone, with its own copy of the table
    listed = subprocess.run([str(BIN / "cocoon-ingest"), "--config", str(site.ingest_config),
                             "purchases", "--json"], capture_output=True, text=True, timeout=60)
    (purchase,) = json.loads(listed.stdout)
    assert (purchase["seq"], purchase["voucher"], purchase["result"], purchase["payment"]) == (
        event["seq"], body["voucher"], "match", "unpaid")
    assert purchase["recomputed"] == purchase["amount"] == body["amount"]
    # the bank pays: mark-paid records it and sends the signed payment.confirmed, which marks
    # the sale paid at the station
    sent = subprocess.run(
        [str(BIN / "cocoon-ingest"), "--config", str(site.ingest_config), "mark-paid",
         f"station-01/{event['seq']}", "--ref", "BANK-0001", "--key", str(site.bank_key),
         "--operator", str(site.operator_config)],
        capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: "paid" in part.screen(), 10, what="the sale shown paid")
    assert f"Voucher {body['voucher']} paid by the bank (BANK-0001)" in part.message



def test_the_status_light_shows_online_offline_and_fault(station):
    from drivers.signals import Status

    site, running, part, sim, issuer, _ = station
    wait_for(lambda: part.signals.status is Status.ONLINE, 10, what="online: steady light")
    assert part.signals.light.is_lit
    site.broker.stop()
    wait_for(lambda: part.signals.status is Status.OFFLINE, 15, what="offline: slow blink")
    sim.pause()                                      # the indicator goes silent: a fault
    wait_for(lambda: part.signals.status is Status.FAULT, 15, what="fault: fast blink")
    sim.resume()
    site.broker.start()
    wait_for(lambda: part.signals.status is Status.ONLINE, 20, what="online again")


def test_a_station_weighs_through_the_field_box_load_cell(site, services, field_box, tmp_path,
                                                         virtual_card):
    """[scale] protocol = "coproc": the box's load cell, read through the firmware bridge,
    judged by the same stability and sale checks as an RS-232 indicator."""
    issuer = Ed25519Signer.generate()
    (tmp_path / "issuer.pem").write_bytes(issuer.public_key_pem())
    box, _ = field_box(bridge=False)
    config = add_device(site, "station-02",
                        station={}, card={"reader": READER,
                                          "issuer_public_key_file": str(tmp_path / "issuer.pem")},
                        scale={"port": str(field_box.pair.device), "protocol": "coproc",
                               "id": "box-cell", "division_g": "10", "tare_g": 400,
                               "stable_count": 3, "stable_window_s": 0.3})
    running = services.agent(config)
    part = next(x for x in running.agent.parts if isinstance(x, StationPart))
    box.set_weight(30_400, stable=True)
    wait_for(lambda: part.weighing is not None and part.weighing.sale_ok, 10,
             what="a stable weight from the box")
    w = part.weighing
    assert (w.scale_id, w.gross_g, w.tare_g, w.net_g) == ("box-cell", 30_400, 400, 30_000)
    box.set_weight(None)                                 # the box's ADC goes silent
    wait_for(lambda: part.weighing is None or not part.weighing.sale_ok, 10,
             what="no sale weight once the load cell is silent")
