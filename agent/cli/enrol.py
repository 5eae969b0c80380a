"""`cocoon-agent enrol` and `cocoon-agent renew`: the device's TLS certificate.

See agent/contract/enrolment.py for the protocol. Both use the [mqtt] section: host, port and the CA
that the broker's certificate must chain to; the certificate goes to [mqtt] cert_file and the
TLS key is [mqtt] key_file (created at the first enrolment if missing).
"""

from __future__ import annotations

from pathlib import Path

import click

from agent.contract.commandline import ConfigContext


def _claim(config, cert_file: Path, key_file: Path):
    from agent.fleet.enrolment import ClaimSettings

    m = config.mqtt
    return ClaimSettings(m.host, m.port, m.ca_file, Path(cert_file), Path(key_file))


@click.command()
@click.option("--token", required=True, help="The one-time enrolment token for this device.")
@click.option("--claim-cert", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The cooperative's shared claim certificate (PEM).")
@click.option("--claim-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The claim certificate's key (PEM).")
@click.option("--force", is_flag=True, help="Replace an identity this device already has.")
@click.option("--timeout", type=click.FloatRange(min=1), default=30, show_default=True,
              help="Seconds to wait for the enrolment service.")
@click.pass_obj
def enrol(obj: ConfigContext, token: str, claim_cert: str, claim_key: str, force: bool,
          timeout: float) -> None:
    """Get this device's TLS certificate from the enrolment service with a one-time token.

    Safe to run again after any failure; an already enrolled device is left as it is unless
    --force is given.
    """
    from agent.contract.signing import load_device_signer
    from agent.fleet.enrolment import enrol as do_enrol

    config = obj.config
    result = do_enrol(config.device.id, load_device_signer(config.device),
                      token=token, claim=_claim(config, claim_cert, claim_key),
                      tls_key_file=config.mqtt.key_file, cert_out=config.mqtt.cert_file,
                      force=force, timeout_s=timeout)
    click.echo(f"{result['status']}: {result['certificate']}")


@click.command()
@click.option("--if-within-days", type=click.FloatRange(min=0), default=None,
              help="Renew only when the certificate expires within this many days.")
@click.option("--timeout", type=click.FloatRange(min=1), default=30, show_default=True)
@click.pass_obj
def renew(obj: ConfigContext, if_within_days: float | None, timeout: float) -> None:
    """Renew this device's TLS certificate (a new key) over its current certificate."""
    from agent.contract.signing import load_device_signer
    from agent.fleet.enrolment import days_left
    from agent.fleet.enrolment import renew as do_renew

    config = obj.config
    left = days_left(config.mqtt.cert_file)
    if if_within_days is not None and left > if_within_days:
        click.echo(f"not due: the certificate is valid for {left:.1f} more days")
        return
    result = do_renew(config.device.id, load_device_signer(config.device),
                      current=_claim(config, config.mqtt.cert_file, config.mqtt.key_file),
                      new_key_file=config.mqtt.key_file, cert_out=config.mqtt.cert_file,
                      timeout_s=timeout)
    click.echo(f"{result['status']}: valid for {result['days_left']} days")
