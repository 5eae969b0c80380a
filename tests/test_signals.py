"""Status light and buzzer on gpiozero's mock pins (which record timestamped states)."""

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.signals import SignalError, SignalPins, Signals, Status, make_factory
from tests.support.waiting import wait_for

PINS = SignalPins(status_light=17, buzzer=27, factory="mock")


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def rising_edges(pin):
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:], strict=False) if not a and b)


def test_status_light_patterns(factory):
    sig = Signals(PINS, pin_factory=factory)
    light = factory.pin(17)
    sig.show(Status.ONLINE)
    assert light.state is True
    sig.show(Status.FAULT)
    wait_for(lambda: rising_edges(light) >= 3, 3, what="fast blinking")
    sig.show(Status.OFFLINE)
    before = rising_edges(light)
    sig.show(Status.OFFLINE)  # same status again does not restart the pattern
    assert rising_edges(light) == before
    sig.close()


def test_buzzer_accept_once_refuse_three_times(factory):
    sig = Signals(PINS, pin_factory=factory)
    buzzer = factory.pin(27)
    sig.beep("accept")
    wait_for(lambda: rising_edges(buzzer) == 1 and buzzer.state is False, 2, what="one beep")
    buzzer.clear_states()
    sig.beep("refuse")
    wait_for(lambda: rising_edges(buzzer) == 3 and buzzer.state is False, 3,
             what="three beeps")
    sig.close()


def test_pins_claimed_twice_and_bad_backends_are_clear(factory):
    sig = Signals(PINS, pin_factory=factory)
    with pytest.raises(SignalError, match="cannot claim"):
        Signals(PINS, pin_factory=factory)
    sig.close()
    with pytest.raises(SignalError, match="unknown GPIO backend"):
        make_factory("wiringpi")
    with pytest.raises(SignalError, match="not usable here"):
        make_factory("rpigpio")  # RPi.GPIO refuses to load off a Pi
