"""`cocoon-agent warehouse`: the monitor's terminal view, and taking in a received lot.

A thin layer over agent.warehouse: the view reads the running agent's warehouse.sqlite
read-only; `receive` leaves the lot in its inbox for the running agent to bind and record.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from agent.contract.commandline import ConfigContext


def _store_path(obj: ConfigContext) -> Path:
    from agent.warehouse.service import STORE_NAME

    if obj.config.section("warehouse") is None:
        raise click.UsageError(f"{obj.path} has no [warehouse] section")
    return obj.config.device.data_dir / STORE_NAME


#: `warehouse --once` exit statuses (see its --help).
ALERTS_OPEN = 3
AGENT_STOPPED = 4


@click.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Print the view once and exit (see the exit "
              "statuses below).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--width", type=click.IntRange(min=40), default=None,
              help="Columns to fit (default: the terminal's width, or $COLUMNS, or 80).")
@click.pass_context
def warehouse(ctx: click.Context, once: bool, interval: float, width: int | None) -> None:
    """The supervised warehouse: lots, pledged against present counts, open alerts, climate
    and reader health, refreshed until Ctrl-C. The view fits the terminal's width (ids are
    never cut) and says so when the agent has stopped reporting (its data may be stale).

    \b
    Exit statuses of --once:
      0  no alert is open
      3  at least one alert is open
      4  the agent has stopped reporting: what is shown may be out of date
      1  the view could not be read (e.g. the agent never ran here)
      2  a usage error

    Example: cocoon-agent --config /etc/cocoon-agent/agent.toml warehouse --once
    """
    if ctx.invoked_subcommand is not None:
        return
    from agent.warehouse.screen import load_view, render, stale_for

    obj: ConfigContext = ctx.obj
    path = _store_path(obj)
    if not path.exists():
        raise click.ClickException(f"{path} does not exist yet: start the agent first")
    while True:
        columns = width or shutil.get_terminal_size((80, 24)).columns
        now = datetime.now(timezone.utc)
        view = load_view(path, obj.config.device.id)
        text = render(view, now, columns)
        if once:
            click.echo(text, nl=False)
            if stale_for(view, now) is not None:
                ctx.exit(AGENT_STOPPED)
            ctx.exit(ALERTS_OPEN if view.alerts else 0)
        click.clear()
        click.echo(text, nl=False)
        time.sleep(interval)


@warehouse.command()
@click.option("--lot", required=True, help="The lot's id, e.g. LOT-2026-0601-01.")
@click.option("--purchase", "purchases", multiple=True, required=True,
              help="A purchase event the lot comes from, as DEVICE/SEQ (repeatable).")
@click.option("--tags", "tags", default=None,
              help="The lot's tag EPCs in hex, separated by commas.")
@click.option("--tags-file", type=click.File("r"), default=None,
              help="A file of EPCs, one per line (e.g. from `cocoon-agent tags watch`).")
@click.option("--kg", default=None, help="Net weight of the lot in kg, e.g. 1250.5.")
@click.option("--wait", type=click.FloatRange(min=0), default=10, show_default=True,
              help="Seconds to wait for the running agent to record it (0: do not wait).")
@click.pass_obj
def receive(obj: ConfigContext, lot, purchases, tags, tags_file, kg, wait) -> None:
    """Bind a received lot to its tags; the agent records it as a signed `lot.received`.

    Example: cocoon-agent --config agent.toml warehouse receive --lot L-17
    --purchase station-01/42 --tags e2000017221101441890a1b2,e2000017221101441890a1b3 --kg 310.5
    """
    from agent.warehouse.custody import Custody
    from agent.warehouse.store import WarehouseStore

    epcs = [t.strip() for t in (tags or "").split(",") if t.strip()]
    if tags_file is not None:
        epcs += [line.strip() for line in tags_file if line.strip()]
    Custody().receive(lot, purchases, epcs, kg)  # the same checks the agent makes, up front
    store = WarehouseStore(_store_path(obj))
    try:
        rid = store.add_receipt(lot, list(purchases), epcs, kg)
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline:
            done, error = store.receipt(rid)
            if done:
                if error:
                    raise click.ClickException(f"lot {lot} refused: {error}")
                click.echo(json.dumps({"lot": lot, "tags": len(set(epcs)), "recorded": True}))
                return
            time.sleep(0.1)
        click.echo(json.dumps({"lot": lot, "tags": len(set(epcs)), "recorded": False}))
        if wait:
            click.echo("the agent has not taken it in yet; it will when it runs", err=True)
    finally:
        store.close()
