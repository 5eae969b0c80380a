"""`cocoon-agent provision`, `doctor` and `decommission`: the field technician's commands.

Thin layers over agent/fleet/provision.py, agent/fleet/doctor.py and
agent/fleet/decommission.py; docs/field.md walks through them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.contract.commandline import ConfigContext

DEFAULT_CONFIG = Path("/etc/cocoon-agent/agent.toml")
DEFAULT_DATA_DIR = Path("/var/lib/cocoon-agent")


def _ask(value, label: str, interactive: bool, flag: str, **prompt):
    if value not in (None, ""):
        return value
    if interactive:
        return click.prompt(label, **prompt)
    raise click.UsageError(f"{flag} is required (or run on a terminal to be asked)")


@click.command()
@click.option("--device-id", help="The device id, e.g. station-07 (the certificate's CN).")
@click.option("--broker-host", help="The broker's host name, as in its certificate.")
@click.option("--broker-port", type=click.IntRange(1, 65535), default=None,
              help="The broker's TLS port (default 8883).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help=f"The state directory (default {DEFAULT_DATA_DIR}).")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False), default=None,
              help="Directory the technician brings: ca.pem, ingest.pem and, if used, "
                   "backend.pem, bank.pem, issuer.pem (public material only).")
@click.option("--signing-alg", type=click.Choice(["Ed25519", "ES256"]), default=None,
              help="Signing key algorithm (default Ed25519; ES256 for secure elements).")
@click.option("--user", default=None,
              help="Service user that must own the keys and the state directory (default: "
                   "cocoon, when that user exists).")
@click.option("--force", is_flag=True,
              help="Replace an existing identity (never one whose events are not wiped).")
@click.option("--interactive/--no-interactive", default=None,
              help="Ask for missing values (default: when standard input is a terminal).")
@click.pass_obj
def provision(obj: ConfigContext, device_id, broker_host, broker_port, data_dir, bundle,
              signing_alg, user, force, interactive) -> None:
    """Create this device's keys, CSR and configuration, and install the trust anchors.

    The configuration goes to --config (default /etc/cocoon-agent/agent.toml). Safe to run
    again after any failure: what is already right is kept. Then enrol the device
    (`cocoon-agent enrol`) and check it (`cocoon-agent doctor`).

    Example: cocoon-agent --config /etc/cocoon-agent/agent.toml provision
    --device-id station-07 --broker-host broker.bank.example --bundle /media/usb/bundle
    --user cocoon
    """
    from agent.fleet.provision import Plan, default_service_user, existing_settings
    from agent.fleet.provision import provision as run_provision

    config_file = Path(obj.path or DEFAULT_CONFIG).absolute()
    if interactive is None:
        interactive = sys.stdin.isatty()
    earlier = existing_settings(config_file)
    device_id = _ask(device_id or earlier.get("device_id"), "Device id (e.g. station-07)",
                     interactive, "--device-id")
    broker_host = _ask(broker_host or earlier.get("broker_host"), "Broker host",
                       interactive, "--broker-host")
    port = broker_port or earlier.get("broker_port")
    if port is None:
        port = click.prompt("Broker port", default=8883, type=click.IntRange(1, 65535)) \
            if interactive else 8883
    if data_dir:
        data = Path(data_dir).resolve()
    else:
        data = earlier.get("data_dir") or (
            click.prompt("State directory", default=str(DEFAULT_DATA_DIR)) if interactive
            else DEFAULT_DATA_DIR)
    if bundle is None and interactive:
        answer = click.prompt("Bundle directory (empty if already installed)", default="",
                              show_default=False)
        bundle = answer or None
    plan = Plan(device_id=device_id, config_file=config_file,
                data_dir=(config_file.parent / data).resolve(), broker_host=broker_host,
                broker_port=int(port), bundle=Path(bundle).resolve() if bundle else None,
                signing_alg=signing_alg or earlier.get("signing_alg") or "Ed25519",
                user=user if user is not None else default_service_user(), force=force)
    for result in run_provision(plan):
        click.echo(f"{result.step:12} {result.outcome:9} {result.detail}")
    click.echo(f"\nprovisioned {plan.device_id}. Next: cocoon-agent --config {config_file} "
               "enrol --token TOKEN --claim-cert claim.pem --claim-key claim.key")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON, for tools.")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=10, show_default=True,
              help="Seconds to wait for the broker.")
@click.option("--scale-seconds", type=click.FloatRange(min=0.2), default=3, show_default=True,
              help="Seconds to wait for a stable weight from the scale.")
@click.option("--user", default=None,
              help="The service user that must own the keys (default: the unit's User=).")
@click.option("--skip", multiple=True, metavar="CHECK",
              help="Leave out a check by name (e.g. --skip broker when offline). Repeatable.")
@click.option("--unit-dir", "unit_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Where to look for cocoon-agent.service (default: systemd's directories).")
@click.pass_obj
def doctor(obj: ConfigContext, as_json: bool, timeout: float, scale_seconds: float,
           user: str | None, skip: tuple[str, ...], unit_dirs: tuple[str, ...]) -> None:
    """Check every configured part: broker (TLS, certificate accepted), certificate expiry,
    clock, disk, outbox, key files, the systemd unit and its watchdog, card reader, scale.

    Prints a table with a fix hint for each failure; exits 1 if any check failed.

    Example: cocoon-agent --config /etc/cocoon-agent/agent.toml doctor
    """
    import logging

    from agent.errors import CocoonError
    from agent.fleet.doctor import DoctorOptions, config_failure, failed, run, to_json, to_table
    from agent.fleet.doctor_checks import UNIT_DIRS

    # The parts' own log lines would repeat, out of order, what the table says.
    quiet = [logging.getLogger(name) for name in ("agent.link.mqtt", "drivers.scale.reader")]
    levels = [logger.level for logger in quiet]
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for logger in quiet:
            logger.setLevel(logging.CRITICAL)
    try:
        config = obj.config
    except CocoonError as exc:
        results = config_failure(exc)
    else:
        options = DoctorOptions(broker_timeout_s=timeout, scale_seconds=scale_seconds,
                                user=user, skip=frozenset(skip),
                                unit_dirs=tuple(Path(d) for d in unit_dirs) or UNIT_DIRS)
        try:
            results = run(config, options)
        finally:
            for logger, level in zip(quiet, levels, strict=True):
                logger.setLevel(level)
    click.echo(to_json(results) if as_json else to_table(results))
    if failed(results):
        sys.exit(1)


@click.command()
@click.option("--discard", is_flag=True,
              help="Wipe even though events are not acknowledged, after recording what is "
                   "discarded (a signed event and the summary file).")
@click.option("--summary-dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where to write the summary file (e.g. a USB stick).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def decommission(obj: ConfigContext, discard: bool, summary_dir: str, yes: bool) -> None:
    """Wipe this device's keys and data, once the bank has acknowledged every event.

    Stop the service first (systemctl stop cocoon-agent). Writes a summary file of what was
    wiped (and, with --discard, of every discarded event) and prints it. The configuration
    and the public trust anchors are left in place.
    """
    from agent.fleet.decommission import decommission as run_decommission

    config = obj.config
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("confirm with --yes (nothing was wiped)")
        typed = click.prompt(f"This wipes the keys and data of {config.device.id}. Type the "
                             "device id to confirm")
        if typed != config.device.id:
            raise click.UsageError("the device id does not match; nothing was wiped")
    report = run_decommission(config, discard=discard, summary_dir=Path(summary_dir))
    if report.discarded:
        by = ", ".join(f"{n} {p}" for p, n in sorted(
            {u.priority: sum(x.priority == u.priority for x in report.discarded)
             for u in report.discarded}.items()))
        click.echo(f"DISCARDED {len(report.discarded)} unacknowledged event(s) ({by}), seq "
                   f"{report.discarded[0].seq}..{report.discarded[-1].seq}; recorded as event "
                   f"{report.event_seq} ({report.summary_file.name})")
    click.echo(f"acknowledged up to seq {report.acked_seq}; wiped {len(report.wiped)} item(s):")
    for path in report.wiped:
        click.echo(f"  {path}")
    click.echo(f"summary: {report.summary_file} (hand it to the bank)")
    click.echo(report.summary_file.read_text(encoding="utf-8"), nl=False)
