"""`cocoon-agent screen password | certificate | show`: what a technician sets up on the device
before the clerk's screen is served to other devices of the station's network
(`[screen] listen`, docs/kiosk.md). A thin layer over agent/screen/remote.py."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from agent.contract.commandline import ConfigContext


@click.group()
def screen() -> None:
    """The screen for other devices of the network: its password and TLS certificate."""


def _device(obj: ConfigContext):
    config = obj.config
    return config, config.device.data_dir, config.device.id


@screen.command()
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts).")
@click.pass_obj
def password(obj: ConfigContext, from_stdin: bool) -> None:
    """Set this device's screen password (asked twice, never shown; there is no default).

    Anyone with it can open the clerk's screen from the network (an action still needs a
    clerk signed in by staff card at the station). Restart the agent to apply it."""
    from agent.screen.remote import RemoteAccessError, set_password

    _, data_dir, device_id = _device(obj)
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = click.prompt("New screen password", hide_input=True,
                              confirmation_prompt="Again, to be sure")
    try:
        path = set_password(data_dir, secret, device_id)
    except RemoteAccessError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"screen password set ({path}); restart the agent to apply it: "
               "systemctl restart cocoon-agent")


@screen.command()
@click.option("--name", "names", multiple=True,
              help="A host name or address the other devices use (repeatable; default: "
                   "[screen] names).")
@click.option("--days", type=click.IntRange(30, 3650), default=5 * 365, show_default=True,
              help="How long the certificate is valid.")
@click.option("--force", is_flag=True, help="Replace an existing certificate and key.")
@click.pass_obj
def certificate(obj: ConfigContext, names: tuple[str, ...], days: int, force: bool) -> None:
    """Make the TLS key and self-signed certificate of the remote screens, and print the
    fingerprint to check on each tablet the first time it connects."""
    from agent.screen.remote import (
        RemoteAccessError,
        cert_files,
        certificate_facts,
        make_certificate,
    )

    config, data_dir, device_id = _device(obj)
    cert_path, _ = cert_files(data_dir)
    if cert_path.is_file() and not force:
        fingerprint, kept, until = certificate_facts(cert_path)
        click.echo(f"kept the certificate for {', '.join(kept)} (until {until:%Y-%m-%d}; "
                   "--force to replace it)")
        click.echo(f"SHA-256 fingerprint: {fingerprint}")
        return
    section = config.section("screen")
    names = tuple(n.strip().lower() for n in names) or (section.names if section else ())
    try:
        cert_path = make_certificate(data_dir, names, device_id, days)
    except RemoteAccessError as exc:
        raise click.ClickException(str(exc)) from None
    fingerprint, made, until = certificate_facts(cert_path)
    click.echo(f"certificate for {', '.join(made)} until {until:%Y-%m-%d} ({cert_path})")
    click.echo(f"SHA-256 fingerprint: {fingerprint}")
    click.echo("restart the agent to apply it: systemctl restart cocoon-agent")


@screen.command()
@click.pass_obj
def show(obj: ConfigContext) -> None:
    """Say whether remote screens are configured and set up, and where they are served."""
    from agent.screen.remote import cert_files, certificate_facts, host_header, password_file

    config, data_dir, _ = _device(obj)
    section = config.section("screen")
    if section is None:
        raise click.ClickException("no [screen] section: the screen is not served")
    click.echo(f"kiosk  : http://{host_header(section.local_host, section.port)}/")
    if not section.remote:
        click.echo("remote : not served ([screen] listen is loopback)")
        return
    click.echo(f"remote : https://{host_header(section.names[0], section.tls_port)}/ "
               f"(listening on {section.listen}, names {', '.join(section.names)})")
    click.echo(f"password: {'set' if password_file(data_dir).is_file() else 'NOT SET'}")
    cert_path, _ = cert_files(data_dir)
    if not cert_path.is_file():
        click.echo("certificate: NONE (cocoon-agent screen certificate)")
        return
    fingerprint, names, until = certificate_facts(cert_path)
    left = (until - datetime.now(timezone.utc)).days
    click.echo(f"certificate: {', '.join(names)}; {left} days left; SHA-256 {fingerprint}")
    missing = sorted(set(section.names) - set(names))
    if missing:
        click.echo(f"  not in the certificate: {', '.join(missing)} (make it again: "
                   "cocoon-agent screen certificate --force)")
