"""`cocoon-agent tags ...`: the technician's view of a tag reader, a thin layer over
drivers.tags.

The drivers are imported inside the commands, so other commands do not pay for pyserial or
sllurp.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

import click

PORT_HELP = ("bb7e: pyserial URL of the module's port (/dev/ttyUSB0, socket://HOST:PORT, "
             "spy:///dev/ttyUSB0); llrp: llrp://HOST[:5084]")


@click.group()
def tags() -> None:
    """Tag readers: see what a reader reads, to check antennas, cabling and tags."""


@tags.command()
def protocols() -> None:
    """List the tag reader protocols."""
    from firmware_bridge.sources import TAG_PROTOCOLS as PROTOCOLS

    for name, text in PROTOCOLS.items():
        click.echo(f"{name:<6} {text}")


@tags.command()
@click.option("--port", "url", required=True, help=PORT_HELP)
@click.option("--protocol", required=True, type=click.Choice(["bb7e", "llrp"]),
              help="bb7e: serial UHF module (BB ... 7E frames); llrp: network reader.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: reads (epc, rssi, antenna), rejected frames "
                   "(error), reader health (health).")
@click.option("--antenna", "antennas", type=click.IntRange(min=1), multiple=True,
              help="bb7e: antenna reported when the module does not say (default 1); "
                   "llrp: antenna to use (repeatable; default all).")
@click.option("--silence", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Seconds without any answer before the reader is "
                                      "reported offline and reconnected.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after N reads.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after S seconds.")
def watch(url: str, protocol: str, as_json: bool, antennas: tuple[int, ...], silence: float,
          count: int | None, seconds: float | None) -> None:
    """Show each read as it arrives, with rejected frames and the reader's health.

    Runs until Ctrl-C, --count or --seconds. A vanished port or a silent reader is reported
    and reconnected.

    Examples:

      cocoon-agent tags watch --port /dev/ttyUSB0 --protocol bb7e

      cocoon-agent tags watch --port llrp://192.168.1.50:5084 --protocol llrp --json
    """
    from drivers.tags import open_tag_reader

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # Health and rejections are output lines; log lines would repeat them.
        logging.getLogger("drivers.tags").setLevel(logging.ERROR)
    events: queue.Queue = queue.Queue()
    try:
        reader = open_tag_reader(url, protocol, antennas=antennas, silence_s=silence,
                                 on_error=lambda e: events.put(("error", e)))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--port") from None
    stop = threading.Event()
    thread = threading.Thread(
        target=reader.run, daemon=True, name="tags-watch",
        args=(lambda r: events.put(("read", r)), lambda h: events.put(("health", h)), stop))
    out = _JsonOut() if as_json else _TextOut()
    deadline = None if seconds is None else time.monotonic() + seconds
    reads = 0
    thread.start()
    try:
        while count is None or reads < count:
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                kind, item = events.get(timeout=wait)
            except queue.Empty:
                continue
            if kind == "read":
                reads += 1
            getattr(out, kind)(item)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        thread.join(5)


@tags.command()
@click.option("--port", "url", required=True,
              help="Where to play the module: a pyserial URL, typically one end of a socat "
                   "pty pair (the watcher opens the other end).")
@click.option("--tags", "count", type=click.IntRange(min=0), default=40, show_default=True)
@click.option("--antennas", type=click.IntRange(1, 255), default=4, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="Inventory rounds per second.")
@click.option("--miss", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Share of missed reads.")
@click.option("--churn", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Chance per round that a tag leaves and another arrives.")
@click.option("--garbage", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Chance per notice of line noise before it.")
@click.option("--seed", type=int, default=0, show_default=True)
def simulate(url: str, count: int, antennas: int, rate: float, miss: float, churn: float,
             garbage: float, seed: int) -> None:
    """Play a simulated BB ... 7E module on a serial port, for demos and training.

    Example (two terminals):

      socat pty,raw,echo=0,link=/tmp/rfid-peer pty,raw,echo=0,link=/tmp/rfid

      cocoon-agent tags simulate --port /tmp/rfid-peer --tags 40

      cocoon-agent tags watch --port /tmp/rfid --protocol bb7e
    """
    from drivers.tags.sim_field import TagField
    from drivers.tags.simulator import BB7ESimulator

    field = TagField(antennas, seed=seed, miss_rate=miss, churn_rate=churn)
    field.populate(count)
    try:
        sim = BB7ESimulator(url, field, rounds_per_s=rate, garbage_rate=garbage).start()
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--port") from None
    click.echo(f"simulating a {antennas}-antenna module with {count} tags on {url}", err=True)
    try:
        while sim.error is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    if sim.error is not None:
        raise click.ClickException(f"port {url} failed: {sim.error}")


def _error_fields(item) -> dict:
    from drivers.tags import FrameError

    if isinstance(item, FrameError):
        return {"error": str(item), "error_type": type(item).__name__, "raw": item.raw.hex()}
    return {"error": f"module error: {item.meaning}", "error_type": "ModuleError",
            "code": f"{item.code:02x}", "raw": item.raw.hex()}


class _JsonOut:
    @staticmethod
    def read(r) -> None:
        click.echo(json.dumps({"epc": r.epc, "rssi": r.rssi, "antenna": r.antenna,
                               "mono_ms": r.mono_ms}))

    @staticmethod
    def error(item) -> None:
        click.echo(json.dumps(_error_fields(item)))

    @staticmethod
    def health(h) -> None:
        click.echo(json.dumps({"health": "online" if h.online else "offline",
                               "reader": h.reader, "detail": h.detail}))


class _TextOut:
    @staticmethod
    def read(r) -> None:
        click.echo(f"{r.epc}  {r.rssi:>4} dBm  antenna {r.antenna}")

    @staticmethod
    def error(item) -> None:
        fields = _error_fields(item)
        click.echo(f"rejected: {fields['error_type']}: {fields['error']}")

    @staticmethod
    def health(h) -> None:
        state = "online" if h.online else "offline"
        click.echo(f"reader {h.reader}: {state}" + (f" ({h.detail})" if h.detail else ""),
                   err=True)
