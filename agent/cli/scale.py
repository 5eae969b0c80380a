"""`cocoon-agent scale ...`: the technician's view of a scale, a thin layer over drivers.scale.

The drivers are imported inside the commands, so other commands do not pay for pyserial.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import time

import click

PORT_HELP = ("pyserial URL of the port: /dev/ttyUSB0, socket://HOST:PORT (ser2net), "
             "spy:///dev/ttyUSB0 (dump traffic to stderr), loop://")
PROTOCOL_HELP = ("Protocol name, with options as NAME?KEY=VALUE&...; "
                 "`cocoon-agent scale protocols` lists them.")


@click.group()
def scale() -> None:
    """Scales: see what an indicator sends, to check the cable, protocol and baud rate."""


@scale.command()
def protocols() -> None:
    """List the scale protocols and their options."""
    import inspect

    from drivers.scale.protocols import FACTORIES

    for name, factory in FACTORIES.items():
        params = list(inspect.signature(factory).parameters.values())[1:]
        options = "&".join(f"{p.name}={p.default}" for p in params)
        click.echo(f"{name}{'?' + options if options else ''}")


@scale.command()
@click.option("--port", "url", required=True, help=PORT_HELP)
@click.option("--protocol", "spec", required=True, help=PROTOCOL_HELP)
@click.option("--baud", type=click.IntRange(min=50), default=None,
              help="Baud rate (default: the protocol's usual, 9600).")
@click.option("--bits", default=None, metavar="8N1",
              help="Data bits, parity (N, E, O) and stop bits, e.g. 7E1 for some Toledo "
                   "indicators (default: the protocol's, usually 8N1).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: readings (weight, unit, stable, ...), "
                   "rejected frames (error), answers (reply), port changes (link).")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after N frames (readings, rejected frames and answers).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after S seconds.")
@click.option("--send", "commands", multiple=True, metavar="COMMAND",
              help="Send COMMAND whenever the port opens, e.g. SIR (MT-SICS) or gross "
                   "(XK3190-A9 command mode). Repeatable. Without it, an indicator that "
                   "speaks only when asked is asked for each weight, as the agent asks it.")
@click.option("--every", type=click.FloatRange(min=0.05), default=None,
              help="Repeat the --send commands every S seconds.")
@click.option("--stable-count", type=click.IntRange(min=1), default=5, show_default=True,
              help="Equal readings that make a stable weight when the indicator has no "
                   "stable flag.")
@click.option("--stable-window", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="...within this many seconds.")
@click.option("--division", default=None, metavar="GRAMS",
              help="Scale division e in grams (e.g. 10, 0.5): also show whether each reading "
                   "may be used for a sale.")
@click.option("--min-divisions", type=click.IntRange(min=0), default=20, show_default=True,
              help="Minimum load in divisions, for --division.")
def watch(url: str, spec: str, baud: int | None, bits: str | None, as_json: bool,
          count: int | None, seconds: float | None, commands: tuple[str, ...],
          every: float | None, stable_count: int, stable_window: float,
          division: str | None, min_divisions: int) -> None:
    """Show each reading as it arrives, with stability and rejected frames.

    Runs until Ctrl-C, --count or --seconds. A vanished port (USB adapter unplugged) is
    reported and reopened. An indicator that speaks only when asked (MT-SICS, XK3190-A9 in
    command mode) is polled as the agent polls it, unless --send says what to send instead.

    Examples:

      cocoon-agent scale watch --port /dev/ttyUSB0 --protocol xk3190-a9 --baud 1200

      cocoon-agent scale watch --port /dev/ttyUSB0 --protocol mt-sics --json
    """
    from decimal import Decimal, InvalidOperation

    from drivers.scale import (
        LinkEvent,
        LinkState,
        ProtocolNotFound,
        Reading,
        Reply,
        SalePolicy,
        ScaleError,
        ScaleReader,
        SerialSettings,
        StabilityDetector,
        check_sale,
        get_protocol,
        open_scale,
    )

    try:
        protocol = get_protocol(spec)
        built = [protocol.command(c) for c in commands]
    except ProtocolNotFound as exc:
        raise click.BadParameter(str(exc), param_hint="--protocol") from None
    except ScaleError as exc:
        raise click.BadParameter(str(exc), param_hint="--send") from None
    settings = protocol.serial
    if bits is not None:
        match = re.fullmatch(r"([5-8])([NEO])([12])", bits.upper())
        if not match:
            raise click.BadParameter(f"{bits!r} is not like 8N1 or 7E1", param_hint="--bits")
        settings = SerialSettings(**{**settings.as_kwargs(), "bytesize": int(match[1]),
                                     "parity": match[2], "stopbits": int(match[3])})
    policy = None
    if division is not None:
        try:
            policy = SalePolicy(Decimal(division), min_divisions)
        except (InvalidOperation, ValueError):
            raise click.BadParameter(f"{division!r} is not a positive number of grams",
                                     param_hint="--division") from None

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # Port changes are shown as output lines; log lines would repeat them.
        logging.getLogger("drivers.scale").setLevel(logging.ERROR)
    events: queue.Queue = queue.Queue()
    detector = StabilityDetector(stable_count, stable_window)
    if built or protocol.continuous:
        reader = ScaleReader(url, protocol, events.put, settings=settings, baudrate=baud)
    else:  # asked for each weight, as the station asks it (a PollingReader)
        reader = open_scale(url, protocol, events.put, settings=settings, baudrate=baud)
    deadline = None if seconds is None else time.monotonic() + seconds
    next_send = None
    frames = 0
    out = _JsonOut() if as_json else _TextOut()
    reader.start()
    try:
        while count is None or frames < count:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if next_send is not None and now >= next_send:
                _send(reader, built)
                next_send = now + every if every else None
            waits = [0.2] + [t - now for t in (deadline, next_send) if t is not None]
            try:
                event = events.get(timeout=max(0.0, min(waits)))
            except queue.Empty:
                continue
            if isinstance(event, LinkEvent):
                out.link(event)
                if event.state is LinkState.OPEN and event.detail != "data again" and built:
                    next_send = time.monotonic()
                if event.state is LinkState.CLOSED:  # only an unusable URL closes it early
                    raise click.BadParameter(event.detail or "port closed", param_hint="--port")
                continue
            frames += 1
            if isinstance(event, Reading):
                verdict = detector.feed(event, time.monotonic())
                ready = check_sale(event, policy, stable=verdict.stable) if policy else None
                out.reading(event, verdict, ready)
            elif isinstance(event, Reply):
                out.reply(event)
            else:
                if getattr(event, "reading", None) is not None:
                    detector.reset()  # unit changed: no stable window across it
                out.error(event)
    except KeyboardInterrupt:
        pass
    finally:
        reader.stop()


def _send(reader, commands) -> None:
    from drivers.scale import PortError

    for command in commands:
        try:
            reader.send(command.data)
        except PortError as exc:
            click.echo(f"cannot send {command.name}: {exc}", err=True)


def _number(value) -> str | None:
    return None if value is None else format(value, "f")


class _JsonOut:
    def reading(self, r, verdict, ready) -> None:
        data = {
            "weight": _number(r.weight), "unit": r.unit.value if r.unit else None,
            "stable": verdict.stable, "stable_source": verdict.source,
            "kind": r.kind.value if r.kind else None, "gross": _number(r.gross),
            "net": _number(r.net), "tare": _number(r.tare), "overload": r.overload,
            "underload": r.underload, "out_of_range": r.out_of_range,
            "digest": verdict.digest, "frames": len(verdict.frames), "raw": r.raw.hex(),
        }
        if ready is not None:
            data["sale_ready"] = ready.ok
            data["refusals"] = [code.value for code in ready.codes]
        click.echo(json.dumps(data))

    def reply(self, r) -> None:
        click.echo(json.dumps({"reply": r.command, "status": r.status,
                               "fields": list(r.fields), "raw": r.raw.hex()}))

    def error(self, exc) -> None:
        click.echo(json.dumps({"error": str(exc), "error_type": type(exc).__name__,
                               "raw": exc.raw.hex()}))

    def link(self, event) -> None:
        click.echo(json.dumps({"link": event.state.value, "port": event.port,
                               "detail": event.detail}))


class _TextOut:
    def reading(self, r, verdict, ready) -> None:
        if r.weight is None:
            value = f"{'-':>12}"
        else:
            value = f"{_number(r.weight):>12} {r.unit.value if r.unit else ''}"
        state = r.condition() or ("stable" if verdict.stable else "moving")
        line = f"{value:<16} {state:<12} {r.kind.value if r.kind else '':<6}"
        if ready is not None:
            line += f" {ready}"
        click.echo(line.rstrip())

    def reply(self, r) -> None:
        click.echo(f"reply {r.command} {r.status} {' '.join(r.fields)}".rstrip())

    def error(self, exc) -> None:
        click.echo(f"rejected: {type(exc).__name__}: {exc}")

    def link(self, event) -> None:
        detail = f" ({event.detail})" if event.detail else ""
        click.echo(f"port {event.port}: {event.state.value}{detail}", err=True)
