"""`cocoon-agent card ...`: issue and read farmer cards (and staff cards) at a PC/SC reader.

For the cooperative's office and for field technicians. `--reader NAME` is any unique part of
the reader's PC/SC name (`cocoon-agent card readers` lists them). pyscard talks to the pcscd
named by the standard PCSCLITE_CSOCK_NAME variable, or the system's one.

The drivers are imported inside the commands, so other commands do not load pyscard.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from agent.contract.commandline import ConfigContext

READER_HELP = "Any unique part of the PC/SC reader's name (see `cocoon-agent card readers`)."


def _json_arg(value: str, what: str) -> dict:
    """A JSON object given inline or as @FILE."""
    try:
        text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
        doc = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"{what}: not a JSON object ({exc})") from None
    if not isinstance(doc, dict):
        raise click.BadParameter(f"{what}: must be a JSON object")
    return doc


def _config_card(obj: ConfigContext):
    """The [card] section when a --config was given and has one."""
    if not obj.path:
        return None
    return obj.config.section("card")


def _master_key(obj: ConfigContext, path: str | None) -> bytes | None:
    from agent.station.part import load_m1_master_key

    if path:
        return load_m1_master_key(Path(path))
    card = _config_card(obj)
    return load_m1_master_key(card.m1_master_key_file) if card else None


def _open(reader: str):
    from drivers.pcsc import ApduTransport

    return ApduTransport.open(reader, removal_grace_s=2.0)


@click.group()
def card() -> None:
    """Farmer and staff cards: issue them, read them, list the readers."""


@card.command()
def readers() -> None:
    """List the PC/SC readers and whether a card is in each."""
    from drivers.pcsc import list_readers

    for name in list_readers():
        click.echo(name)


@card.command()
@click.option("--reader", required=True, help=READER_HELP)
@click.option("--kind", type=click.Choice(["cpu", "m1"]), required=True,
              help="cpu: ISO 7816-4 CPU card; m1: MIFARE Classic 1K in an ACS-style reader.")
@click.option("--issuer-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The cooperative's issuer signing key (PEM).")
@click.option("--holder", required=True,
              help="The holder record as JSON (or @FILE): farmer_id, name, address, labour, "
                   "mulberry_area_mu, silkworm_room_area_m2, account_ref.")
@click.option("--m1-master-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File with the 16-byte M1 master key in hex (default: [card] "
                   "m1_master_key_file of --config).")
@click.pass_obj
def issue(obj: ConfigContext, reader: str, kind: str, issuer_key: str, holder: str,
          m1_master_key: str | None) -> None:
    """Personalise a blank farmer card for the cooperative.

    Writes the holder record and the issuer's signature over the card's serial and the record;
    an M1 card then gets per-card keys derived from its UID and the master key (a blank M1 card
    carries the transport keys FF FF FF FF FF FF). An already issued card is refused.

    Example: cocoon-agent card issue --reader ACR122 --kind cpu --issuer-key issuer.key
    --holder @farmer-0042.json
    """
    from agent.contract.signing import load_signer
    from drivers.pcsc import farmer_card as fc

    values = _json_arg(holder, "--holder")
    try:
        fc.build_holder(values)          # refuse a bad record before touching the card
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--holder") from None
    signer = load_signer(issuer_key)
    with _open(reader) as transport:
        if kind == "m1":
            from drivers.pcsc.m1_card import issue_m1_card

            key = _master_key(obj, m1_master_key)
            if key is None:
                raise click.UsageError("an M1 card needs --m1-master-key or [card] "
                                       "m1_master_key_file in --config")
            data = issue_m1_card(transport, values, signer, key)
        else:
            data = fc.issue_cpu_card(transport, values, signer)
    click.echo(f"issued {kind} card {data.uid} to {data.holder.name} ({data.holder.farmer_id})")


@card.command("issue-staff")
@click.option("--reader", required=True, help=READER_HELP)
@click.option("--issuer-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The cooperative's issuer signing key (PEM).")
@click.option("--staff", required=True,
              help='The staff record as JSON (or @FILE): {"staff_id": "S-07", "name": "...", '
                   '"role": "clerk" or "supervisor"}.')
def issue_staff(reader: str, issuer_key: str, staff: str) -> None:
    """Personalise a blank CPU card as a clerk's or supervisor's staff card."""
    from agent.contract.signing import load_signer
    from drivers.pcsc.staff_card import build_staff, issue_staff_card

    values = _json_arg(staff, "--staff")
    try:
        build_staff(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--staff") from None
    with _open(reader) as transport:
        data = issue_staff_card(transport, values, load_signer(issuer_key))
    click.echo(f"issued staff card {data.uid} to {data.name} ({data.staff_id}, {data.role})")


@card.command()
@click.option("--reader", required=True, help=READER_HELP)
@click.option("--issuer-public-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The issuer's public key (PEM) to check the signature with (default: "
                   "[card] issuer_public_key_file of --config).")
@click.option("--m1-master-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File with the M1 master key in hex, to read an M1 card (default: [card] "
                   "m1_master_key_file of --config).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def read(obj: ConfigContext, reader: str, issuer_public_key: str | None,
         m1_master_key: str | None, as_json: bool) -> None:
    """Print the card's holder record, the sales on it, and whether the issuer signature is
    valid (`signature_valid` in the JSON). Exit status 1 when the signature is not valid."""
    from agent.contract.signing import Verifier
    from agent.station.card_desk import is_m1
    from drivers.pcsc import farmer_card as fc

    key_file = issuer_public_key
    if key_file is None:
        card_cfg = _config_card(obj)
        if card_cfg is None:
            raise click.UsageError("give --issuer-public-key, or --config with a [card] "
                                   "issuer_public_key_file")
        key_file = card_cfg.issuer_public_key_file
    verifier = Verifier.from_file(key_file)
    with _open(reader) as transport:
        kind = "cpu"
        if is_m1(transport.atr):
            from drivers.pcsc.m1_card import read_m1_card

            key = _master_key(obj, m1_master_key)
            if key is None:
                raise click.UsageError("this is an M1 card: give --m1-master-key, or --config "
                                       "with [card] m1_master_key_file")
            data, kind = read_m1_card(transport, verifier, key), "m1"
        else:
            data = fc.read_farmer_card(transport, verifier)
    report = {"uid": data.uid, "kind": kind, "holder": dataclasses.asdict(data.holder),
              "counter": data.counter, "sales": [dataclasses.asdict(s) for s in data.sales],
              "signature_valid": data.signature_valid, "refusal": data.refusal}
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, sort_keys=True))
    else:
        _print_card(report)
    if not data.signature_valid:
        raise click.exceptions.Exit(1)


def _print_card(report: dict) -> None:
    h = report["holder"]
    click.echo(f"card {report['uid']} ({report['kind']}), transaction counter "
               f"{report['counter']}")
    click.echo(f"  farmer   {h['farmer_id']}  {h['name']}")
    click.echo(f"  address  {h['address']}")
    click.echo(f"  labour {h['labour']}, mulberry {h['mulberry_area_mu']} mu, silkworm room "
               f"{h['silkworm_room_area_m2']} m2, account {h['account_ref']}")
    valid = "valid" if report["signature_valid"] else f"NOT VALID: {report['refusal']}"
    click.echo(f"  issuer signature: {valid}")
    click.echo(f"  sales on the card ({len(report['sales'])}, newest first):")
    for s in report["sales"]:
        click.echo(f"    #{s['counter']:<5} {s['date']}  {s['voucher']:<28} grade {s['grade']:<4}"
                   f" {_kg(s['net_g']):>9} kg  {s['unit_price']:>7} yuan/kg  "
                   f"{s['amount']:>10} yuan")


def _kg(grams: int) -> str:
    return f"{grams // 1000}.{grams % 1000:03d}"
