"""The bridge against the simulated box on a pty: readings through the station's and the
warehouse's own driver interfaces, outputs, restarts, a wrong protocol version, a lossy line."""

from __future__ import annotations

import queue
import threading
from decimal import Decimal

import pytest

from drivers.climate import ClimateError, ClimateReading
from drivers.scale import LinkEvent, LinkState, Reading, StabilityDetector
from drivers.tags.reads import ReaderHealth, TagRead
from firmware_bridge import messages as m
from firmware_bridge.bridge import BridgeState
from firmware_bridge.errors import LinkError, ProtocolVersionError
from firmware_bridge.faults import Faults
from firmware_bridge.readers import (
    BridgeClimate,
    BridgeInputs,
    BridgeScaleReader,
    BridgeTagReader,
    InputChange,
)
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty", "tests.support.coprocessor")

EPC = "30751feb705c5904e3d50d70"


def test_hello_tells_the_running_firmware(field_box):
    box, bridge = field_box(firmware="1.4.2", period_s=0.05)
    hello = bridge.wait_online()
    assert hello.version == (1, 4, 2) and hello.boot_status == m.BootStatus.NORMAL
    assert bridge.status.state is BridgeState.ONLINE and "1.4.2" in bridge.status.detail


def test_weights_reach_the_scale_layer_as_exact_readings(field_box):
    box, bridge = field_box(period_s=0.05, bridge=True, start_bridge=False)
    box.set_weight(152340, stable=True)
    events: queue.Queue = queue.Queue()
    with BridgeScaleReader(bridge, events.put):
        got = []
        wait_for(lambda: any(isinstance(e, Reading) for e in _drain(events, got)), 5,
                 what="a weight")
        reading = next(e for e in got if isinstance(e, Reading))
        assert reading.weight == Decimal(152340) and reading.grams() == 152340
        assert reading.stable is True and reading.protocol == "firmware-bridge"
        assert any(isinstance(e, LinkEvent) and e.state is LinkState.OPEN for e in got)
        detector = StabilityDetector(count=3, window_s=5.0)
        assert detector.feed(reading, 0.0) is not None   # the detector takes it like any other
        box.set_weight(None)
        box.set_weight(0, overload=True)
        wait_for(lambda: any(isinstance(e, Reading) and e.overload
                             for e in _drain(events, got)), 5, what="an overload")
        over = next(e for e in got if isinstance(e, Reading) and e.overload)
        assert over.weight is None and over.condition() == "overload"
    assert bridge.status.state is BridgeState.CLOSED   # the last adapter stopped it


def test_tags_through_the_tag_reader_interface(field_box):
    box, bridge = field_box(bridge=True, start_bridge=False)
    reads, health = [], []
    stop = threading.Event()
    reader = BridgeTagReader(bridge, "box-antennas")
    runner = threading.Thread(target=reader.run, args=(reads.append, health.append, stop))
    runner.start()
    try:
        wait_for(lambda: health and health[-1].online, 5, what="reader online")
        box.tag_seen(EPC, rssi=-55, antenna=2)
        wait_for(lambda: reads, 5, what="a tag read")
        assert reads[0].epc == EPC and reads[0].rssi == -55 and reads[0].antenna == 2
        assert isinstance(reads[0], TagRead) and isinstance(health[-1], ReaderHealth)
        assert health[-1].reader == "box-antennas"
        answers = reader.answers                  # heartbeats: the box answers, tags or not
        wait_for(lambda: reader.answers >= answers + 2, 5, what="heartbeats counted")
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive()


def test_climate_and_inputs_are_typed_readings(field_box):
    box, bridge = field_box(period_s=0.05)
    climate = BridgeClimate(bridge)
    edges: list[InputChange] = []
    inputs = BridgeInputs(bridge, edges.append)
    try:
        box.set_climate(-1250, 6550)
        wait_for(lambda: _climate_or_none(climate) == ClimateReading(-1250, 6550), 5,
                 what="the climate sample")
        assert climate.read().temp_c == Decimal("-12.50")
        box.set_climate(None)
        wait_for(lambda: _climate_fails(climate), 5, what="a sensor fault")
        with pytest.raises(ClimateError, match="failed"):
            climate.read()
        box.input_edge(2, True)
        box.input_edge(2, False)
        wait_for(lambda: len(edges) == 2, 5, what="two edges")
        assert [(e.input, e.level) for e in edges] == [(2, True), (2, False)]
        assert edges[0].box_ms <= edges[1].box_ms
    finally:
        climate.close()
        inputs.close()


def test_outputs_answer_and_pulse(field_box):
    box, bridge = field_box()
    bridge.wait_online()
    states = []
    bridge.subscribe(lambda x: states.append(x) if isinstance(x, m.OutputState) else None)
    bridge.set_output(1, True, pulse_ms=100)
    assert box.outputs[1] is True
    wait_for(lambda: m.OutputState(1, False) in states, 5, what="the pulse's end")
    assert box.outputs[1] is False
    answer = bridge.request(m.SetOutput(9, True, 0),
                            lambda x: isinstance(x, m.Error | m.OutputState))
    assert isinstance(answer, m.Error) and answer.code == m.ErrorCode.BAD_OUTPUT
    assert "does not exist" in answer.detail


def test_box_restart_is_survived(field_box):
    box, bridge = field_box(firmware="1.0.0")
    first = bridge.wait_online()
    boots = box.boots
    statuses = []
    bridge.subscribe(lambda x: statuses.append(x.state) if hasattr(x, "state") else None)
    box.reset()
    wait_for(lambda: box.boots > boots and bridge.status.state is BridgeState.ONLINE
             and BridgeState.CONNECTING in statuses, 5, what="back online after the reset")
    assert bridge.link.stats.peer_resets == 1 and bridge.hello == first
    bridge.set_output(0, True)          # the link works after the restart


def test_wrong_protocol_version(field_box):
    box, bridge = field_box(protocol=2)
    with pytest.raises(ProtocolVersionError, match="version 2"):
        bridge.wait_online(timeout=3)
    assert bridge.status.state is BridgeState.INCOMPATIBLE
    with pytest.raises(LinkError):
        bridge.send(m.HelloRequest(1))


def test_lossy_line_still_delivers_every_tag_once_in_order(field_box):
    box, bridge = field_box(faults=Faults(drop=0.05, corrupt=0.05, seed=3), period_s=5)
    bridge.wait_online()
    tags = []
    bridge.subscribe(lambda x: tags.append(x.epc.hex()) if isinstance(x, m.TagSeen) else None)
    sent = [f"{i:024x}" for i in range(60)]
    for epc in sent:
        box.tag_seen(epc)
    wait_for(lambda: len(tags) >= 60, 20, what="60 tags")
    assert tags == sent
    assert box.port.dropped + box.port.corrupted > 0


def _drain(q, into):
    while True:
        try:
            into.append(q.get_nowait())
        except queue.Empty:
            return into


def _climate_or_none(climate):
    try:
        return climate.read()
    except ClimateError:
        return None


def _climate_fails(climate):
    try:
        climate.read()
    except ClimateError:
        return True
    return False
