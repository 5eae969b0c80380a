"""doctor's checks of the field box's co-processor (through the simulator on a pty) and of the
GPIO pins the configuration uses (mock pins; and the real backends, absent on this machine)."""

from __future__ import annotations

from types import SimpleNamespace

from agent.fleet.doctor import _coprocessor, _gpio, gpio_pins
from agent.fleet.doctor_checks import Status

pytest_plugins = ("tests.support.coprocessor", "tests.support.pty")


def firmware(port: str):
    return SimpleNamespace(port=port, baudrate=115200)


def test_the_co_processor_answers(field_box):
    field_box(bridge=False, firmware="2.3.4")
    result = _coprocessor(firmware(str(field_box.pair.device)))
    assert result.status is Status.OK
    assert "firmware 2.3.4 (slot A" in result.detail


def test_a_silent_or_incompatible_co_processor_fails_with_a_hint(field_box, tmp_path):
    field_box(bridge=False, protocol=99)
    wrong = _coprocessor(firmware(str(field_box.pair.device)))
    assert wrong.status is Status.FAIL and "protocol" in wrong.hint
    missing = _coprocessor(firmware(str(tmp_path / "ttyAMA9")), timeout_s=1)
    assert missing.status is Status.FAIL and "UART wiring" in missing.hint


def test_gpio_pins_from_the_configuration_are_claimed_and_released():
    config = SimpleNamespace(section=lambda name: {
        "signals": SimpleNamespace(status_light=17, buzzer=27, factory="mock"),
        "warehouse": SimpleNamespace(tamper_pin=6, power_pin=None, siren_pin=19,
                                     light_pin=None, doors=(("main", 5),), gpio_factory=""),
    }.get(name))
    assert gpio_pins(config) == ("mock", [5, 6, 17, 19, 27])
    ok = _gpio("mock", [5, 6, 17, 19, 27])
    assert ok.status is Status.OK and "pins 5, 6, 17, 19, 27 available" in ok.detail
    assert _gpio("mock", [5, 5]).status is Status.OK      # released after each claim


def test_gpio_on_a_machine_without_it_fails_with_a_hint():
    for backend in ("rpigpio", "lgpio"):             # this machine is no Raspberry Pi
        result = _gpio(backend, [17])
        assert result.status is Status.FAIL and result.hint


def test_a_box_load_cell_is_checked_through_the_bridge(field_box, tmp_path):
    """The doctor opens the scale as the station does: `coproc` is the box's load cell."""
    from agent.fleet.doctor_checks import check_scale
    from agent.station.config import parse_scale

    box, _ = field_box(bridge=False)
    scale = parse_scale(tmp_path / "a.toml", {"port": str(field_box.pair.device),
                                              "protocol": "coproc", "stable_count": 3,
                                              "stable_window_s": 0.5})
    box.set_weight(12_340, stable=True)
    ok = check_scale(scale, 5)
    assert ok.status is Status.OK and "stable 12340 g" in ok.detail, ok
    box.set_weight(None)
    silent = check_scale(scale, 1.5)
    assert silent.status is Status.FAIL and "load cell" in silent.hint, silent


def _reader_spec(port, protocol, **kw):
    from agent.warehouse.config import ReaderSpec

    return ReaderSpec("dock", str(port), protocol, **kw)


def test_a_tag_reader_is_checked_by_its_health_whatever_it_is(pty_pair):
    """A serial module watching an empty field, an LLRP reader on the network and a port with
    nothing behind it: the doctor opens each as the warehouse does and waits for it to report
    itself online."""
    from agent.fleet.doctor import _tag_reader
    from drivers.tags.sim_field import TagField
    from drivers.tags.simulator import BB7ESimulator
    from tests.support.llrp_sim import LLRPSimulator

    with BB7ESimulator(str(pty_pair.peer), TagField(4, seed=1)):
        module = _tag_reader(_reader_spec(pty_pair.device, "bb7e"))
    assert module.status is Status.OK and "online" in module.detail, module
    with LLRPSimulator(TagField(4, seed=2)) as sim:
        network = _tag_reader(_reader_spec(sim.url, "llrp", silence_s=3.0))
    assert network.status is Status.OK, network
    silent = _tag_reader(_reader_spec(pty_pair.device, "bb7e", silence_s=0.5), timeout_s=1.5)
    assert silent.status is Status.FAIL and "not online" in silent.detail, silent
    assert "[[warehouse.readers]]" in silent.hint
