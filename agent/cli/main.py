"""`cocoon-agent`: the agent's command line, a thin layer over the library.

Every command explains itself with --help. Errors the user can fix are printed as one line on
stderr with exit status 2 (configuration, keys) or 1 (verification failures, a full outbox).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from agent import __version__
from agent.cli.card import card
from agent.cli.enrol import enrol, renew
from agent.cli.field import decommission, doctor, provision
from agent.cli.firmware import firmware
from agent.cli.release import release
from agent.cli.scale import scale
from agent.cli.screen import screen
from agent.cli.tags import tags
from agent.cli.warehouse import warehouse
from agent.contract.commandline import ConfigContext, run_cli, setup_logging, version_line
from agent.contract.events import Draft
from agent.contract.signing import Verifier, generate_key_file, load_device_signer
from agent.errors import EXPECTED
from agent.fleet.remote_config import load_effective_config


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    """`cocoon-agent X.Y.Z`, then `legal <sha256>`: the identification of the legally
    relevant software, computed now over the files that run (agent.contract.legal)."""
    if not value or ctx.resilient_parsing:
        return
    from agent.contract.legal import running_legal_id

    click.echo(version_line("cocoon-agent", __version__))
    click.echo(f"legal {running_legal_id()}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Print the version and the legal software identification, and exit.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="COCOON_AGENT_CONFIG",
              help="The device's TOML configuration file (before or after the command).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """cocoon-agent: records purchases and custody as signed events and forwards them to the
    bank.

    Example: cocoon-agent --config /etc/cocoon-agent/agent.toml run
    """
    setup_logging(log_level, EXPECTED)
    ctx.obj = ConfigContext(config_path, load_effective_config,
                            report_unknown=ctx.invoked_subcommand != "doctor")


@cli.command()
@click.pass_obj
def run(obj: ConfigContext) -> None:
    """Run the agent until SIGTERM or Ctrl-C: record events and forward them to the bank."""

    agent = _start_agent(obj)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.run(stop)
    if agent.exit_code:
        sys.exit(agent.exit_code)


def _start_agent(obj: ConfigContext):
    """The Agent, or exit RESTART_EXIT_CODE when a configuration on trial was rolled back
    (the service manager then starts the agent again with the previous one)."""
    from agent.fleet.remote_config import RESTART_EXIT_CODE, RestartRequested
    from agent.ops.service import Agent

    try:
        return Agent(obj.config)
    except RestartRequested as exc:
        click.echo(f"cocoon-agent: {exc}", err=True)
        sys.exit(RESTART_EXIT_CODE)


@cli.command()
@click.pass_obj
def station(obj: ConfigContext) -> None:
    """Run the agent with the clerk's station screen on this terminal.

    The screen shows the clerk, the farmer, the live weight and its stability, the grade and
    the amount, and today's sales with their sent / acknowledged / paid state. Keys, one per
    line: g shell_g=9.6 moisture_pct=15 (grade), c (confirm), x (cancel), v VOUCHER REASON
    (void, supervisor), r VOUCHER REASON (correct: the next sale replaces it, supervisor),
    o (sign out), q (quit). Needs the [station], [card] and [scale] sections.
    """
    from agent.station.console import Console
    from agent.station.part import StationPart

    agent = _start_agent(obj)
    part = next((x for x in agent.parts if isinstance(x, StationPart)), None)
    if part is None:
        raise click.UsageError("this device has no [station] section: it is not a station")
    # Two stops: the console's (SIGTERM, Ctrl-C, q) and the agent's. The agent stops after the
    # console has stopped drawing, so the screen never reads an outbox being closed.
    stop, agent_stop = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def run_agent() -> None:
        try:
            agent.run(agent_stop)
        finally:
            agent_stop.set()    # an agent that stopped by itself ends the console too

    runner = threading.Thread(target=run_agent, name="agent")
    runner.start()
    try:
        Console(part).run(stop, agent_stopped=agent_stop)
    finally:
        agent_stop.set()
        runner.join(timeout=30)
    if agent.exit_code:
        sys.exit(agent.exit_code)


@cli.command()
@click.option("--alg", type=click.Choice(["Ed25519", "ES256"]), default=None,
              help="Key algorithm (default: [device] signing_alg).")
@click.option("--on-token", is_flag=True,
              help="Create an ECDSA P-256 key on the PKCS#11 token named by [device] "
                   "signing_key (required when the key is on a token).")
@click.pass_obj
def keygen(obj: ConfigContext, alg: str | None, on_token: bool) -> None:
    """Create the device's signing key if it does not exist; never overwrite one.

    The key is a file ([device] signing_key_file) or, with --on-token, a key pair generated
    on the PKCS#11 token that [device] signing_key names, its private key unextractable.
    Prints the public key as PEM, for registration with the bank's ingest.
    """
    dev = obj.config.device
    if dev.signing_key and not on_token:
        raise click.UsageError(
            f"the signing key is on a PKCS#11 token ({dev.signing_key}): create it there "
            "with 'cocoon-agent keygen --on-token', or with the token's own tools")
    if on_token:
        if not dev.signing_key:
            raise click.UsageError("--on-token needs [device] signing_key, the PKCS#11 URI of "
                                   "the key, with pkcs11_module (docs/enrolment.md)")
        if alg not in (None, "ES256"):
            raise click.UsageError("a key on a token is ES256 (ECDSA P-256)")
        from agent.contract.pkcs11 import create_token_key

        signer = create_token_key(dev.signing_key, dev.pkcs11_module, dev.pkcs11_pin_file)
        click.echo(f"created {dev.signing_key} on the token (kid {signer.kid})", err=True)
    else:
        signer = generate_key_file(dev.signing_key_file, alg or dev.signing_alg)
        click.echo(f"created {dev.signing_key_file} (kid {signer.kid})", err=True)
    click.echo(signer.public_key_pem().decode(), nl=False)


@cli.command()
@click.option("--public-key", is_flag=True, required=True,
              help="Print the device's public signing key as PEM.")
@click.pass_obj
def identity(obj: ConfigContext, public_key: bool) -> None:
    """Show the device's identity: its public signing key as PEM (from the key file, or from
    the PKCS#11 token that [device] signing_key names)."""
    signer = load_device_signer(obj.config.device)
    click.echo(signer.public_key_pem().decode(), nl=False)


@cli.command()
@click.option("--type", "type_", required=True, help="Event type, e.g. test.manual.")
@click.option("--priority", required=True, type=click.Choice(["money", "alert", "telemetry"]))
@click.option("--body", required=True, help="The event body as a JSON object.")
@click.option("--idempotency-key", "key", metavar="KEY",
              help="Record the event once: a retry with the same KEY (after a crash, a "
                   "timeout) records nothing and prints the first sequence number. Keys are "
                   "kept 30 days.")
@click.pass_obj
def emit(obj: ConfigContext, type_: str, priority: str, body: str, key: str | None) -> None:
    """Sign and durably append one event to the outbox; print its sequence number.

    Safe while `run` is running: both get distinct, gap-free sequence numbers.

    Example: cocoon-agent --config agent.toml emit --type test.manual --priority alert
    --body '{"note": "door checked"}' --idempotency-key door-2026-12-07
    """
    from agent.contract.envelope import parse_json_object
    from agent.ops.service import open_outbox
    from agent.spine.idempotency import AlreadyRecorded, check_key, record_once

    draft = Draft(type_, priority, parse_json_object(body, "--body"))
    within = record_once(check_key(key)) if key is not None else None
    outbox, _ = open_outbox(obj.config)
    with outbox:
        try:
            seq = outbox.append(draft, within=within)
        except AlreadyRecorded as done:
            seq = done.seq
        click.echo(seq)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def queue(obj: ConfigContext, as_json: bool) -> None:
    """Show the outbox: event counts by state and the age of the oldest unacknowledged one."""
    from agent.spine.outbox import Outbox

    cfg = obj.config
    with Outbox(cfg.outbox_path, device=cfg.device.id,
                signer=load_device_signer(cfg.device),
                capacity_bytes=cfg.outbox.capacity_bytes) as outbox:
        stats = outbox.stats()
    data = {
        "pending": stats.counts["pending"],
        "sent": stats.counts["sent"],
        "acknowledged": stats.acked_seq,
        "oldest_pending_age_s": None if stats.oldest_pending_age_s is None
        else round(stats.oldest_pending_age_s, 1),
        "head_seq": stats.head_seq,
        "used_bytes": stats.used_bytes,
        "capacity_bytes": stats.capacity_bytes,
        "evicted_telemetry": stats.evicted_total,
    }
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key:22} {'-' if value is None else value}")


@cli.command()
@click.option("--public-key", "public_key", required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="PEM file of the device's public signing key.")
@click.argument("capture", type=click.File("rb"))
def verify(public_key: str, capture) -> None:
    """Verify a capture of event messages (one JSON message per line).

    Reports every bad signature, gap, duplicate, reordering and broken chain link, then a
    summary line; exits 1 if anything is wrong.
    """
    from agent.contract.chain import check_capture

    report = check_capture(capture, Verifier.from_file(public_key))
    for problem in report.problems:
        click.echo(problem)
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


cli.add_command(scale)
cli.add_command(screen)
cli.add_command(card)
cli.add_command(enrol)
cli.add_command(renew)
cli.add_command(warehouse)
cli.add_command(release)
cli.add_command(firmware)
cli.add_command(tags)
cli.add_command(provision)
cli.add_command(doctor)
cli.add_command(decommission)


def main(argv: list[str] | None = None) -> None:
    run_cli(cli, "cocoon-agent", argv, expected=EXPECTED)


if __name__ == "__main__":
    main()
