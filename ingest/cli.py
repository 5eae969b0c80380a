"""`cocoon-ingest`: run the reference receiver, show its state, and send signed commands."""

from __future__ import annotations

import json
import signal
import threading
import time

import click

from agent import __version__
from agent.contract.commandline import ConfigContext, run_cli, setup_logging, version_line
from agent.contract.commands import SIGNER_OF, make_command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import generate_key_file, load_signer

from .cli_purchases import grant_reader, mark_paid, price_tables, purchases
from .config import load_ingest_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message=version_line("cocoon-ingest", __version__),
                      help="Print the version and exit.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="COCOON_INGEST_CONFIG",
              help="The ingest's TOML configuration file (before or after the command).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def cli(ctx, config_path, log_level) -> None:
    """cocoon-ingest: the reference bank-side receiver of cocoon-agent events."""
    setup_logging(log_level)
    ctx.obj = ConfigContext(config_path, load_ingest_config)


@cli.command()
@click.option("--echo", is_flag=True, help="Print one line per verified event on stdout.")
@click.pass_obj
def run(obj: ConfigContext, echo: bool) -> None:
    """Receive, verify, store and acknowledge events until SIGTERM or Ctrl-C."""
    from .service import Ingest

    ingest = Ingest(obj.config, echo=click.echo if echo else None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ingest.run(stop)


@cli.command()
@click.pass_obj
def keygen(obj: ConfigContext) -> None:
    """Create the ingest's ack-signing key if absent and print its public key (give it to the
    devices as [keys] ingest_public_key_file)."""
    settings = obj.config.require_ingest()
    signer = generate_key_file(settings.signing_key_file)
    click.echo(signer.public_key_pem().decode(), nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def status(obj: ConfigContext, as_json: bool) -> None:
    """Per device: last seen, acknowledged watermark, accepted/rejected counts, open alerts."""
    from .store import open_store

    store = open_store(obj.config.require_ingest())
    try:
        rows = store.devices()
        for row in rows:
            row["open_alerts"] = [a["kind"] for a in store.open_alerts(row["device"])]
            row["last_seen_s_ago"] = None if not row["last_seen"] else int(
                time.time() - row["last_seen"])
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'device':20} {'last seen':>10} {'acked':>8} {'accepted':>9} {'dup':>5} "
               f"{'rejected':>8}  alerts")
    for r in rows:
        seen = "-" if r["last_seen_s_ago"] is None else f"{r['last_seen_s_ago']}s ago"
        click.echo(f"{r['device']:20} {seen:>10} {r['watermark']:>8} {r['accepted']:>9} "
                   f"{r['duplicates']:>5} {r['rejected']:>8}  {','.join(r['open_alerts']) or '-'}")


@cli.command()
@click.option("--device", required=True, help="The device id to revoke.")
@click.option("--reason", default="", help="Why (kept with the record).")
@click.option("--cert", "cert_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A certificate of the device the enrolment service did not issue, to list on "
                   "the CRL too (repeatable).")
@click.pass_obj
def revoke(obj: ConfigContext, device: str, reason: str, cert_files) -> None:
    """Revoke DEVICE at the bank: its events above its watermark now are refused.

    The watermark is recorded in the store; every worker refuses (and counts) the device's
    events above it, whatever their time and whatever the broker's CRL says, and the enrolment
    service refuses to renew its certificate. With [broker] crl_file, the CRL is written again
    (signed by the [enrolment] CA) with the device's certificates, and [broker] reload_command
    is run. Prints the recorded watermark.
    """
    from agent.contract.topics import DEVICE_ID_RE

    from . import revocation
    from .store import open_store

    if not DEVICE_ID_RE.match(device):
        raise click.BadParameter(f"{device!r} is not a device id", param_hint="--device")
    settings = obj.config.require_ingest()
    store = open_store(settings)
    try:
        watermark, at, new = store.revoke(device, reason)
        everyone = set(store.revoked())
    finally:
        store.close()
    revocation.mark(settings.devices_dir, device, watermark, at)
    click.echo(f"revoked {device} at seq {watermark}"
               + ("" if new else " (already revoked then)"))
    broker = obj.config.broker
    if broker.crl_file is None:
        click.echo("no [broker] crl_file: the broker's CRL is left as it is", err=True)
        return
    enrolment = obj.config.enrolment
    if enrolment is None:
        raise click.ClickException("[broker] crl_file needs the [enrolment] section (the "
                                   "device CA that signs the CRL); the revocation is recorded")
    serials = revocation.issued_serials(enrolment.data_dir, everyone)
    serials |= {revocation.certificate_serial(f) for f in cert_files}
    count = revocation.write_crl(broker.crl_file, enrolment.ca_cert_file, enrolment.ca_key_file,
                                 serials)
    click.echo(f"CRL {broker.crl_file}: {count} certificate(s) listed")
    if broker.reload_command:
        revocation.reload_broker(broker.reload_command)
        click.echo("broker told to reload")


@cli.command("send-command")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="PEM private key of the bank or backend, whichever the type requires.")
@click.option("--device", required=True, help="Target device id.")
@click.option("--type", "type_", required=True, type=click.Choice(sorted(SIGNER_OF)))
@click.option("--body", required=True, help="Command body as a JSON object.")
@click.option("--expires", default=3600, show_default=True, type=click.IntRange(1, 30 * 86400),
              help="Seconds until the command expires.")
@click.option("--id", "command_id", default=None, help="Command id (default: a new UUID).")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0.1), default=None, metavar="S",
              help="Wait up to S seconds for the device's answer, read from the ingest's store "
                   "(--config then needs [ingest], and [store] if the ingest has one), and "
                   "print it on a second line: accepted (exit 0), refused (exit 3), failed "
                   "(exit 4) or no answer (exit 5).")
@click.pass_obj
def send_command(obj: ConfigContext, key_file, device, type_, body, expires, command_id,
                 wait_s) -> None:
    """Sign a command and publish it to the device's commands topic (QoS 1).

    Uses the [mqtt] section of --config (an operator's client certificate). Prints the command
    id. With --wait S, then waits for the device's verified answer in the ingest's store:
    `accepted` (command.accepted, and command.done once its handler ran; exit 0), `refused`
    (command.refused; exit 3), `failed` (accepted, then command.failed; exit 4) or `no answer`
    within S seconds (exit 5); the reason of a refusal or failure goes to stderr. Exit 1: the
    broker did not take the command; 2: a configuration problem.

    Example: cocoon-ingest --config operator.toml send-command --key bank.key --device st-01
    --type payment.confirmed
    --body '{"voucher": "st-01-20260601-0007", "payment_ref": "B-1", "amount": "2015.09"}'
    """
    from .commanding import publish_command

    watcher = None
    if wait_s is not None:
        from .answers import AnswerWatcher

        watcher = AnswerWatcher(obj.config.require_ingest(), device)

    command = make_command(device, type_, parse_json_object(body, "--body"),
                           load_signer(key_file), expires_in_s=expires, command_id=command_id)
    publish_command(obj.config.mqtt, command)
    click.echo(command["id"])
    if watcher is not None:
        answer = watcher.wait(command["id"], wait_s)
        click.echo(answer.outcome)
        if answer.reason:
            click.echo(f"{answer.outcome}: {answer.reason}", err=True)
        raise click.exceptions.Exit(answer.exit_code)


@cli.group()
def enrolment() -> None:
    """The enrolment service: one-time tokens, and signing the devices' certificates."""


@enrolment.command("run")
@click.pass_obj
def enrolment_run(obj: ConfigContext) -> None:
    """Answer enrolment and renewal requests until SIGTERM or Ctrl-C ([enrolment] section)."""
    from agent.link.mqtt import LinkSettings, MqttLink

    from .enrolment import EnrolmentService

    settings = obj.config.require_enrolment()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = EnrolmentService(settings)
    link = MqttLink(LinkSettings.from_config(settings.id, obj.config.mqtt), service)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    link.run(stop)


@enrolment.command("token")
@click.option("--device", required=True, help="The device id the token is for.")
@click.option("--ttl-hours", type=click.FloatRange(min=0.01), default=72, show_default=True,
              help="How long the token may be used.")
@click.option("--replace", is_flag=True,
              help="Allow replacing the signing key of a device already registered.")
@click.pass_obj
def enrolment_token(obj: ConfigContext, device: str, ttl_hours: float, replace: bool) -> None:
    """Print a one-time enrolment token for DEVICE (give it to the technician)."""
    from .enrolment import TokenStore

    settings = obj.config.require_enrolment()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TokenStore(settings.data_dir / "enrolment.sqlite")
    click.echo(store.issue(device, ttl_s=ttl_hours * 3600, replace=replace))


cli.add_command(price_tables)
cli.add_command(purchases)
cli.add_command(mark_paid)
cli.add_command(grant_reader)


def main(argv=None) -> None:
    run_cli(cli, "cocoon-ingest", argv)


if __name__ == "__main__":
    main()

