"""Firmware updates against the simulated box: success, a box reset mid-transfer, an agent
interrupted mid-transfer, refused images (nothing sent), a failed boot rolled back, a lossy
line; and the `cocoon-agent firmware` commands writing their events to the outbox."""

from __future__ import annotations

import json
import os

import pytest

from agent.contract.signing import Ed25519Signer, Verifier
from firmware_bridge import messages as m
from firmware_bridge.errors import ImageError, UpdateError
from firmware_bridge.faults import Faults
from firmware_bridge.image import build_image, load_image, parse_image
from firmware_bridge.simulator import HARDWARE
from firmware_bridge.update import FirmwareUpdater

pytest_plugins = ("tests.support.pty", "tests.support.coprocessor")

PAYLOAD = os.urandom(5000)          # 27 chunks of 192 bytes
CHUNKS = -(-len(PAYLOAD) // 192)


@pytest.fixture(scope="module")
def vendor_key():
    return Ed25519Signer.generate()


@pytest.fixture
def vendor(vendor_key):
    return Verifier.from_pem(vendor_key.public_key_pem())


def image(vendor_key, version="1.1.0", payload=PAYLOAD, hardware=HARDWARE, signer="vendor"):
    key = vendor_key if signer == "vendor" else signer
    return parse_image(build_image(payload, version, hardware, key))


def updater(bridge, vendor, events, **kw):
    kw.setdefault("boot_timeout_s", 5)
    return FirmwareUpdater(bridge, vendor, record=lambda d: events.append((d.type, d.body)), **kw)


def update_traffic(box):
    return [x for x in box.received if isinstance(x, m.UpdateBegin | m.UpdateChunk
                                                  | m.UpdateCommit)]


def test_update_succeeds_on_the_other_slot(field_box, vendor_key, vendor):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor)
    events = []
    result = updater(bridge, vendor, events).run(image(vendor_key))
    assert (str(result.previous), str(result.running), result.slot) == ("1.0.0", "1.1.0", 1)
    assert box.running_version == (1, 1, 0) and box.flash.active == 1
    assert box.flash.boot_status == m.BootStatus.NORMAL and not box.flash.unconfirmed
    assert bytes(box.flash.slots[1].data) == PAYLOAD
    assert box.flash.slots[0].version == (1, 0, 0)          # the old image is kept (A/B)
    assert [t for t, _ in events] == ["firmware.update_started", "firmware.updated"]
    assert events[1][1]["previous_version"] == "1.0.0" and events[1][1]["slot"] == "B"
    assert box.chunks_written == CHUNKS and result.resumes == 0


def test_box_reset_mid_update_resumes_and_completes(field_box, vendor_key, vendor):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor)
    box.reset_after_chunks = 10
    events = []
    result = updater(bridge, vendor, events).run(image(vendor_key))
    assert str(result.running) == "1.1.0" and result.resumes >= 1
    assert box.boots >= 3                  # first boot, the reset, the new image's trial boot
    assert box.chunks_written == CHUNKS    # resumed at chunk 11, not from the start
    assert bytes(box.flash.slots[1].data) == PAYLOAD
    assert events[-1][0] == "firmware.updated" and events[-1][1]["resumes"] >= 1


def test_agent_interrupted_mid_update_resumes_on_the_next_run(field_box, vendor_key, vendor):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor)
    events = []
    first = updater(bridge, vendor, events)

    def die(done, total):
        if done > 2000:
            raise KeyboardInterrupt
    first.progress = die
    with pytest.raises(KeyboardInterrupt):
        first.run(image(vendor_key))
    written = box.chunks_written
    assert [t for t, _ in events] == ["firmware.update_started", "firmware.update_failed"]
    assert events[1][1]["reason"] == "KeyboardInterrupt"
    assert events[1][1]["offset"] == written * 192
    assert 10 <= written < CHUNKS
    result = updater(bridge, vendor, events).run(image(vendor_key))
    assert str(result.running) == "1.1.0"
    assert box.chunks_written == CHUNKS     # nothing written twice
    begins = [x for x in box.received if isinstance(x, m.UpdateBegin)]
    chunks = [x for x in box.received if isinstance(x, m.UpdateChunk)]
    assert len(begins) == 2 and chunks[written].offset == written * 192


@pytest.mark.parametrize("case, words", [
    ("unsigned", "unsigned"),
    ("other key", "not signed by the pinned vendor key"),
    ("downgrade", "older than the running firmware 1.0.0: downgrades are refused"),
    ("same", "already running"),
    ("other board", "for board 0x0999"),
])
def test_bad_images_are_refused_before_sending_a_byte(field_box, vendor_key, vendor, case,
                                                      words):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor)
    bad = {
        "unsigned": lambda: image(vendor_key, signer=None),
        "other key": lambda: image(vendor_key, signer=Ed25519Signer.generate()),
        "downgrade": lambda: image(vendor_key, version="0.9.9"),
        "same": lambda: image(vendor_key, version="1.0.0"),
        "other board": lambda: image(vendor_key, hardware=0x0999),
    }[case]()
    events = []
    with pytest.raises(ImageError, match=words):
        updater(bridge, vendor, events).run(bad)
    assert update_traffic(box) == []
    assert [t for t, _ in events] == ["firmware.update_refused"]
    assert words.split(":")[0] in events[0][1]["reason"]


def test_damaged_image_file_is_refused(tmp_path, vendor_key):
    data = bytearray(build_image(PAYLOAD, "1.1.0", HARDWARE, vendor_key))
    data[-1] ^= 1
    path = tmp_path / "box.ccfw"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="SHA-256 does not match"):
        load_image(path)
    path.write_bytes(bytes(data[:200]))
    with pytest.raises(ImageError, match="header says 5000 bytes"):
        load_image(path)
    path.write_bytes(b"MZ\x90\x00" * 40)
    with pytest.raises(ImageError, match="not a co-processor firmware image"):
        load_image(path)


def test_failed_boot_rolls_back(field_box, vendor_key, vendor):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor)
    box.fail_next_boot = True
    events = []
    with pytest.raises(UpdateError, match="did not boot; the box went back to 1.0.0"):
        updater(bridge, vendor, events).run(image(vendor_key))
    assert box.running_version == (1, 0, 0) and box.flash.active == 0
    assert box.flash.boot_status == m.BootStatus.ROLLED_BACK
    assert [t for t, _ in events] == ["firmware.update_started", "firmware.rolled_back",
                                      "firmware.update_failed"]
    assert events[1][1]["running_version"] == "1.0.0"


def test_unconfirmed_trial_image_falls_back_at_the_next_reset(field_box, vendor_key, vendor):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor)
    # the confirmation never takes effect (as if the agent died after the commit): the box
    # must not keep the trial image across its next reset
    box_confirm = box._on_UpdateConfirm
    box._on_UpdateConfirm = lambda msg: None
    with pytest.raises(UpdateError, match="could not be confirmed"):
        updater(bridge, vendor, [], answer_timeout_s=0.3).run(image(vendor_key))
    assert box.flash.unconfirmed and box.running_version == (1, 1, 0)
    box._on_UpdateConfirm = box_confirm
    boots = box.boots
    box.reset()
    assert box.wait_booted(5) and box.boots > boots
    assert box.running_version == (1, 0, 0)
    assert box.flash.boot_status == m.BootStatus.ROLLED_BACK


def test_an_offline_box_is_recorded_as_a_failed_update(field_box, vendor_key, vendor):
    """No box answers on the UART (unpowered, unplugged): the image checks out, then the
    wait for the box times out; the attempt is on record, and nothing was sent."""
    from firmware_bridge.errors import LinkTimeout

    bridge = field_box.bridge()
    bridge.start()
    events = []
    with pytest.raises(LinkTimeout, match="not online"):
        updater(bridge, vendor, events, boot_timeout_s=0.5).run(image(vendor_key))
    assert [t for t, _ in events] == ["firmware.update_failed"]
    failed = events[0][1]
    assert failed["reason"].startswith("LinkTimeout: field box on ") and \
        "not online after 0.5 s" in failed["reason"]
    assert failed["image_version"] == "1.1.0" and failed["offset"] == 0
    assert failed["sha256"] == image(vendor_key).sha256.hex()


def test_any_other_stop_during_the_transfer_is_recorded(field_box, vendor_key, vendor):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor)
    events = []
    broken = updater(bridge, vendor, events)

    def fault(done, total):
        if done > 1000:
            raise OSError(5, "Input/output error")     # e.g. the USB serial adapter vanished
    broken.progress = fault
    with pytest.raises(OSError):
        broken.run(image(vendor_key))
    assert [t for t, _ in events] == ["firmware.update_started", "firmware.update_failed"]
    assert events[1][1]["reason"] == "OSError: [Errno 5] Input/output error"
    assert events[1][1]["offset"] == 1152                # six chunks of 192 bytes were written
    assert box.chunks_written == 6


def test_update_from_a_slow_box(field_box, vendor_key, vendor):
    """A box whose every frame (ACKs, answers, heartbeats) goes out 30 ms late: the update
    takes longer, but completes with every chunk written once and nothing resumed."""
    box, bridge = field_box(firmware="1.0.0", vendor=vendor, faults=Faults(delay_s=0.03))
    payload = PAYLOAD[:1000]                           # 6 chunks
    events = []
    result = updater(bridge, vendor, events).run(image(vendor_key, payload=payload))
    assert str(result.running) == "1.1.0" and result.resumes == 0
    assert bytes(box.flash.slots[1].data) == payload
    assert box.chunks_written == 6
    chunks = [x for x in box.received if isinstance(x, m.UpdateChunk)]
    assert [c.offset for c in chunks] == [i * 192 for i in range(6)]   # each delivered once
    assert result.seconds > 6 * 2 * 0.03     # per chunk, its ACK and its answer came late
    assert [t for t, _ in events] == ["firmware.update_started", "firmware.updated"]


def test_update_over_a_lossy_line(field_box, vendor_key, vendor):
    box, bridge = field_box(firmware="1.0.0", vendor=vendor,
                            faults=Faults(drop=0.05, corrupt=0.05, seed=11))
    result = updater(bridge, vendor, []).run(image(vendor_key, payload=PAYLOAD[:2000]))
    assert str(result.running) == "1.1.0"
    assert bytes(box.flash.slots[1].data) == PAYLOAD[:2000]
    assert box.port.dropped + box.port.corrupted > 0


# -- the commands --------------------------------------------------------------------------

@pytest.fixture
def device(tmp_path, field_box, vendor_key):
    from agent.contract.signing import generate_key_file

    data = tmp_path / "data"
    generate_key_file(data / "device-signing.key")
    (tmp_path / "vendor.pem").write_bytes(vendor_key.public_key_pem())
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[device]
id = "box-01"
data_dir = "{data}"

[mqtt]
host = "127.0.0.1"
ca_file = "ca.pem"
cert_file = "device.pem"
key_file = "device.key"

[keys]
ingest_public_key_file = "ingest.pem"

[firmware]
port = "{field_box.pair.device}"
vendor_public_key_file = "vendor.pem"
boot_timeout_s = 5
""")
    return config


def run_cli(*args):
    from agent.cli.main import main

    try:
        main(list(args))
    except SystemExit as exit_:
        return exit_.code or 0
    return 0


def outbox_types(config):
    from agent.config import load_config
    from agent.ops.service import open_outbox

    outbox, _ = open_outbox(load_config(config))
    with outbox:
        return [json.loads(s.payload)["type"] for s in outbox.pending(100)]


def test_firmware_commands(field_box, device, vendor_key, vendor, tmp_path, capsys):
    box, _ = field_box(firmware="1.0.0", vendor=vendor, bridge=False)
    assert run_cli("--config", str(device), "firmware", "status", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["firmware"] == "1.0.0" and shown["slot"] == "A" and shown["update"] == "idle"

    (tmp_path / "vendor.key").write_bytes(vendor_key.private_key_pem())
    (tmp_path / "fw.bin").write_bytes(PAYLOAD)
    good = tmp_path / "box-1.1.0.ccfw"
    assert run_cli("firmware", "build-image", "--key", str(tmp_path / "vendor.key"),
                   "--version", "1.1.0", "--hardware", hex(HARDWARE),
                   str(tmp_path / "fw.bin"), str(good)) == 0
    assert load_image(good).signed and load_image(good).payload == PAYLOAD
    assert run_cli("--config", str(device), "firmware", "update", str(good)) == 0
    assert "firmware 1.1.0 runs in slot B" in capsys.readouterr().out

    unsigned = tmp_path / "box-1.2.0.ccfw"
    unsigned.write_bytes(build_image(PAYLOAD, "1.2.0", HARDWARE, None))
    assert run_cli("--config", str(device), "firmware", "update", str(unsigned)) == 2
    assert "unsigned" in capsys.readouterr().err
    assert box.running_version == (1, 1, 0)
    assert outbox_types(device) == ["firmware.update_started", "firmware.updated",
                                    "firmware.update_refused"]


def test_firmware_section_is_checked(tmp_path):
    from agent.errors import ConfigError
    from firmware_bridge.config import parse_firmware

    parsed = parse_firmware(tmp_path / "agent.toml", {"port": "socket://127.0.0.1:4001",
                                                      "vendor_public_key_file": "v.pem",
                                                      "hardware": 3073})
    assert parsed.hardware == 0x0C01 and parsed.baudrate == 115200
    assert parsed.vendor_public_key_file == tmp_path / "v.pem"
    with pytest.raises(ConfigError, match="port"):
        parse_firmware(tmp_path / "agent.toml", {"vendor_public_key_file": "v.pem"})
    with pytest.raises(ConfigError, match="baudrate"):
        parse_firmware(tmp_path / "agent.toml", {"port": "/dev/ttyAMA0", "baudrate": 7,
                                                 "vendor_public_key_file": "v.pem"})
