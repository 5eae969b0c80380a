"""`cocoon-agent firmware`: the field box co-processor's firmware, for technicians.

    cocoon-agent firmware status
    cocoon-agent firmware update box-1.5.0.ccfw

Both need the [firmware] section. An update's attempt, refusal, success, failure and rollback
are appended to the outbox as signed events, so the bank sees who changed what on the box.
"""

from __future__ import annotations

import json

import click

from agent.contract.commandline import ConfigContext
from agent.errors import ConfigError


def _settings(obj: ConfigContext):
    settings = obj.config.section("firmware")
    if settings is None:
        raise ConfigError(f"{obj.config.path}: no [firmware] section: this device has no field "
                          "box co-processor configured")
    return settings


def _bridge(settings):
    from firmware_bridge.bridge import Bridge

    return Bridge(settings.port, baudrate=settings.baudrate,
                  ack_timeout=settings.ack_timeout_s, backoff_max=1.0)


@click.group()
def firmware() -> None:
    """The field box co-processor's firmware: status and signed updates."""


@firmware.command()
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the box.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def status(obj: ConfigContext, timeout: float, as_json: bool) -> None:
    """Show the link, the running firmware, its slot and boot status, and any update in
    progress on the box.

    Example: cocoon-agent --config agent.toml firmware status
    """
    from firmware_bridge import messages as m

    settings = _settings(obj)
    with _bridge(settings) as bridge:
        hello = bridge.wait_online(timeout)
        update = bridge.request(m.UpdateQuery(), lambda x: isinstance(x, m.UpdateStatus),
                                timeout)
        link = bridge.link
        data = {
            "port": settings.port,
            "protocol": hello.protocol,
            "firmware": "{}.{}.{}".format(*hello.version),
            "slot": "AB"[hello.active_slot & 1],
            "boot_status": m.BootStatus(hello.boot_status).name.lower(),
            "hardware": f"0x{hello.hardware:04x}",
            "update": m.UpdateState(update.state).name.lower(),
            "update_bytes": update.next_offset,
            "retransmits": link.stats.retransmits if link else 0,
            "bad_frames": link.stats.bad_frames if link else 0,
        }
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key:14} {value}")


@firmware.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.pass_obj
def update(obj: ConfigContext, image: str) -> None:
    """Install a signed firmware IMAGE on the box (A/B: the old image stays until the new one
    has booted; a failed boot goes back to it). Refuses unsigned, wrongly signed, damaged,
    foreign-board and not-newer images before sending anything. Run it again after an
    interruption: the transfer resumes where the box got to.

    Example: cocoon-agent --config agent.toml firmware update box-1.5.0.ccfw
    """
    from agent.contract.events import Draft
    from agent.contract.signing import Verifier
    from agent.ops.service import open_outbox
    from firmware_bridge.errors import ImageError
    from firmware_bridge.image import load_image
    from firmware_bridge.update import FirmwareUpdater

    settings = _settings(obj)
    vendor = Verifier.from_file(settings.vendor_public_key_file)
    outbox, _ = open_outbox(obj.config)
    with outbox, _bridge(settings) as bridge:
        def record(outcome) -> None:
            outbox.append(Draft(outcome.type, "alert", outcome.body))

        updater = FirmwareUpdater(bridge, vendor, record=record, hardware=settings.hardware,
                                  boot_timeout_s=settings.boot_timeout_s)
        try:
            loaded = load_image(image)
        except ImageError as exc:
            updater.refuse_unreadable(exc, image)
            raise
        shown = [0]

        def progress(done: int, total: int) -> None:
            tenth = done * 10 // total
            if tenth > shown[0]:
                shown[0] = tenth
                click.echo(f"  {done}/{total} bytes", err=True)

        updater.progress = progress
        click.echo(f"installing firmware {loaded.version} ({loaded.length} bytes)", err=True)
        result = updater.run(loaded, image)
    click.echo(f"firmware {result.running} runs in slot {'AB'[result.slot & 1]} "
               f"(was {result.previous}; {result.resumes} resumes, {result.seconds:.1f} s)")


@firmware.command("build-image")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The vendor's Ed25519 private key (PEM).")
@click.option("--version", "version", required=True, help="MAJOR.MINOR.PATCH of the firmware.")
@click.option("--hardware", required=True, help="The board id, e.g. 0x0c01.")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
def build_image_command(key_file: str, version: str, hardware: str, payload: str,
                        output: str) -> None:
    """Wrap a firmware binary PAYLOAD into a signed image file OUTPUT (for vendors and tests).

    Example: cocoon-agent firmware build-image --key vendor.key --version 1.5.0
    --hardware 0x0c01 firmware.bin box-1.5.0.ccfw
    """
    from pathlib import Path

    from agent.contract.signing import load_signer
    from firmware_bridge.image import build_image

    try:
        board = int(hardware, 0)
    except ValueError:
        raise click.BadParameter(f"{hardware!r} is not a number",
                                 param_hint="--hardware") from None
    if not 0 <= board <= 0xFFFF:
        raise click.BadParameter("must be 0-0xffff", param_hint="--hardware")
    data = build_image(Path(payload).read_bytes(), version, board, load_signer(key_file))
    Path(output).write_bytes(data)
    click.echo(f"wrote {output} ({len(data)} bytes, firmware {version}, board 0x{board:04x})")
