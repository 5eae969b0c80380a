"""`cocoon-ingest price-tables add`, `purchases` and `mark-paid`: what the bank recomputes,
what it may pay, and recording the payment (ingest/purchases.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.contract.commandline import ConfigContext
from agent.contract.envelope import parse_json_object


def _store(obj: ConfigContext):
    from .store import open_store

    return open_store(obj.config.require_ingest())


@click.group("price-tables")
def price_tables() -> None:
    """The backend's price tables, which the bank recomputes every purchase with."""


@price_tables.command("add")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def price_tables_add(obj: ConfigContext, files: tuple[Path, ...]) -> None:
    """Keep the tables of signed price_table.set commands (JSON files, as sent to a station),
    each verified with [ingest] backend_public_key_file.

    Example: cocoon-ingest --config ingest.toml price-tables add price_table_set-2026-3.json
    """
    from agent.contract.signing import Verifier

    from .purchases import add_price_table

    settings = obj.config.require_ingest()
    key = settings.backend_public_key_file
    verifier = Verifier.from_file(key) if key else None
    store = _store(obj)
    try:
        for path in files:
            signed = parse_json_object(path.read_bytes(), str(path))
            with store.db.transaction(()):
                summary = add_price_table(store.db, signed, verifier)
            state = "added" if summary["added"] else "already held"
            click.echo(f"{summary['table']} v{summary['version']} {summary['digest']}: {state}")
    finally:
        store.close()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--device", default=None, help="Only this device's purchases.")
@click.pass_obj
def purchases(obj: ConfigContext, as_json: bool, device: str | None) -> None:
    """Verified purchases: the station's amount, the bank's recomputed amount, whether they
    match, and the payment state (unpaid, held, paid, voided)."""
    from .purchases import list_purchases

    store = _store(obj)
    try:
        rows = list_purchases(store, device)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'device':16} {'seq':>6} {'voucher':28} {'amount':>10} {'recomputed':>10} "
               f"{'result':13} payment")
    for r in rows:
        click.echo(f"{r['device']:16} {r['seq']:>6} {r['voucher'] or '-':28} "
                   f"{r['amount'] or '-':>10} {r['recomputed'] or '-':>10} {r['result']:13} "
                   f"{r['payment']}" + (f" {r['payment_ref']}" if r["payment_ref"] else "")
                   + (f"  ({r['reason']})" if r["reason"] else ""))


@click.command("mark-paid")
@click.argument("purchase", metavar="DEVICE/SEQ")
@click.option("--ref", required=True, help="The bank's payment reference.")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The bank's private key (payment.confirmed is the bank's command).")
@click.option("--operator", "operator_file", required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="An operator's TOML file whose [mqtt] section may send commands.")
@click.pass_obj
def mark_paid(obj: ConfigContext, purchase: str, ref: str, key_file: str,
              operator_file: str) -> None:
    """Record the bank's payment of a purchase the bank recomputed to the same amount, and send
    the station its payment.confirmed. A held, voided or already paid purchase is refused.

    Example: cocoon-ingest --config ingest.toml mark-paid station-01/42 --ref B-2026-0001
    --key bank.key --operator operator.toml
    """
    from agent.contract.commands import make_command
    from agent.contract.signing import load_signer

    from .commanding import publish_command
    from .config import load_ingest_config
    from .purchases import mark_paid as record_payment

    device, _, seq = purchase.partition("/")
    if not device or not seq.isdigit():
        raise click.BadParameter(f"{purchase!r} is not DEVICE/SEQ", param_hint="PURCHASE")
    signer = load_signer(key_file)
    operator = load_ingest_config(operator_file)
    store = _store(obj)
    try:
        with store.db.transaction((device,)):
            paid = record_payment(store, device, int(seq), ref)
    finally:
        store.close()
    command = make_command(device, "payment.confirmed",
                           {"voucher": paid["voucher"], "payment_ref": ref,
                            "amount": paid["amount"]}, signer)
    publish_command(operator.mqtt, command)
    click.echo(f"{device}/{seq} voucher {paid['voucher']} {paid['amount']} paid ({ref}); "
               f"payment.confirmed sent as command {command['id']}")


@click.command("grant-reader")
@click.argument("role")
@click.pass_obj
def grant_reader(obj: ConfigContext, role: str) -> None:
    """Let an existing PostgreSQL ROLE read the integrators' views, and nothing else
    (docs/ingest.md). Create the role first, e.g. CREATE ROLE bank_reports LOGIN PASSWORD ..."""
    from .integrators import grant_reader as grant

    store = _store(obj)
    try:
        views = grant(store, role)
    finally:
        store.close()
    click.echo(f"{role} may read: {', '.join(views)}")
