"""The station's scale as the running agent reads it: protocol specs from the [scale] section,
indicators that must be asked for each weight (an MT-SICS balance; an XK3190-A9 in command
mode, whose tare comes from the indicator), and the status light's fault for a missing card
reader. Each through a socat pty with the scale simulator and the agent's own station part."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from agent.contract.signing import Ed25519Signer
from agent.station.part import StationPart
from drivers.scale import xk3190_a9
from drivers.scale.sim_model import WeightModel
from drivers.scale.simulator import Simulator
from tests.support.running import add_device
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)


def station(site, services, tmp_path: Path, pair, protocol: str, *, reader: str = "00 00",
            signals: bool = False, **scale) -> StationPart:
    issuer = tmp_path / "issuer.pem"
    issuer.write_bytes(Ed25519Signer.generate().public_key_pem())
    sections = {"signals": {"status_light": 17, "buzzer": 27, "factory": "mock"}} \
        if signals else {}
    config = add_device(site, "station-01", station={},
                        card={"reader": reader, "issuer_public_key_file": str(issuer)},
                        scale={"port": str(pair.device), "protocol": protocol, "id": "bench-1",
                               "division_g": "10", "capacity_g": "150000", "stable_count": 3,
                               "stable_window_s": 1.0, **scale},
                        **sections)
    running = services.agent(config)
    return next(x for x in running.agent.parts if isinstance(x, StationPart))


def sale_weight(part):
    w = part.weighing
    return None if w is None or not w.sale_ok else (w.gross_g, w.tare_g, w.net_g)


def test_the_station_asks_an_mtsics_balance_for_each_weight(site, services, tmp_path,
                                                             pty_pair):
    sim = Simulator(str(pty_pair.peer), "mt-sics", WeightModel(settle_s=0.2), power_up=False,
                    rate_hz=40).start()
    try:
        part = station(site, services, tmp_path, pty_pair, "mt-sics", tare_g=500)
        sim.set_target("10.50")
        wait_for(lambda: sale_weight(part) == (10_500, 500, 10_000), 10,
                 what=f"a stable weight asked for with SI ({part.weighing})")
        assert set(sim.commands) == {b"TA", b"SI"}
        sim.pause()                                       # the balance stops answering
        wait_for(lambda: part.scale_fault and part.weighing is None, 10,
                 what="a silent balance is a scale fault with no weight")
        assert "no answer" in part.scale_fault
        sim.resume()
        wait_for(lambda: sale_weight(part) == (10_500, 500, 10_000) and not part.scale_fault,
                 10, what="weighing again once the balance answers")
    finally:
        sim.stop()


def test_an_mtsics_balance_holding_a_tare_is_not_tared_twice(site, services, tmp_path,
                                                             pty_pair):
    """The basket tared on the balance and [scale] tare_g = 2000 as well: `S S 20.350 kg` is
    the net, and the station records 22.350 gross, 2.000 tare, 20.350 net (it sold 18.350)."""
    sim = Simulator(str(pty_pair.peer), "mt-sics",
                    WeightModel(settle_s=0.2, division=Decimal("0.001")), power_up=False,
                    rate_hz=40).start()
    try:
        sim.set_target("2.000")
        wait_for(lambda: sim.display().stable, what="the basket settled")
        assert sim.take_tare()
        part = station(site, services, tmp_path, pty_pair, "mt-sics", tare_g=2000)
        sim.set_target("22.350")
        wait_for(lambda: sale_weight(part) == (22_350, 2_000, 20_350), 10,
                 what=f"the balance's net with its own tare ({part.weighing})")
        assert part.weighing.tare_source == "indicator"
    finally:
        sim.stop()


def test_the_station_takes_the_tare_from_an_a9_in_command_mode(site, services, tmp_path,
                                                                pty_pair):
    sim = Simulator(str(pty_pair.peer), "xk3190-a9", WeightModel(settle_s=0.2), mode="command",
                    rate_hz=40).start()
    try:
        sim.set_target("0.50")                            # the basket, tared on the indicator
        wait_for(lambda: sim.display().stable, what="the basket settled")
        assert sim.take_tare()
        # tare_g is the station's guess of the basket; the indicator's own tare wins
        part = station(site, services, tmp_path, pty_pair, "xk3190-a9?mode=command",
                       tare_g=300)
        sim.set_target("10.50")                           # basket and cocoons
        wait_for(lambda: sale_weight(part) == (10_500, 500, 10_000), 10,
                 what=f"gross, tare and net from the indicator ({part.weighing})")
        assert len(part.weighing.frames_digest) == 64
        asked = set(sim.commands)
        assert asked == {xk3190_a9.command("tare").data, xk3190_a9.command("net").data}
    finally:
        sim.stop()


def rising_edges(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:], strict=False) if not a and b)


@pytest.mark.parametrize("reader, status", [("ACR1252", "fault"), ("00 00", "online")])
def test_the_light_shows_a_fault_when_the_card_reader_is_missing(site, services, tmp_path,
                                                                 pty_pair, pcscd, reader,
                                                                 status):
    from drivers.signals import Status

    sim = Simulator(str(pty_pair.peer), "xk3190-a9", WeightModel(settle_s=0.1),
                    rate_hz=20).start()
    try:
        part = station(site, services, tmp_path, pty_pair, "xk3190-a9", reader=reader,
                       signals=True)
        wait_for(lambda: part.monitor.service_available and part.weighing is not None, 10,
                 what="pcscd seen and the scale read")
        wait_for(lambda: part.signals.status is Status(status), 10, what=f"the light {status}")
        assert not part.scale_fault and part.agent.link.status.connected
        if status == "fault":
            assert part.card_reader_fault() == "card reader 'ACR1252' missing"
            pin = part.signals.light.pin
            before = rising_edges(pin)
            wait_for(lambda: rising_edges(pin) >= before + 2, 3, what="fast blinking")
        else:
            assert part.card_reader_fault() == "" and part.signals.light.is_lit
    finally:
        sim.stop()
