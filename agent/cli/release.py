"""`cocoon-agent release ...`: build a signed bundle (vendor), install, check, roll back, show.

The device's commands read [update] from --config (the pinned vendor key, the root); without a
configuration they use the defaults (/opt/cocoon-agent) and cannot install, since no vendor key
is pinned.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from agent.contract.commandline import ConfigContext


def _update(obj: ConfigContext, *, need_key: bool):
    from agent.fleet.release.layout import default_update_config

    agent_config = obj.config if obj.path else None
    cfg = agent_config.section("update") if agent_config else None
    if cfg is None:
        if need_key:
            raise click.UsageError("installing needs --config FILE with an [update] section "
                                   "naming the pinned vendor_public_key_file")
        cfg = default_update_config()
    return cfg, agent_config


def _updater(obj: ConfigContext, need_key: bool = False):
    from agent.fleet.release.update import ReleaseUpdater

    cfg, agent_config = _update(obj, need_key=need_key)
    return ReleaseUpdater(cfg, agent_config)


@click.group()
def release() -> None:
    """Signed releases of the agent: installed beside the running one, switched atomically,
    rolled back when the new version is not healthy in time (docs/packaging.md)."""


@release.command()
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The vendor's Ed25519 private key (PEM).")
@click.option("--version", "version", default=None,
              help="The release's version; must equal agent/__init__.py's __version__.")
@click.option("--source", default=None, type=click.Path(exists=True, file_okay=False),
              help="The source tree (default: the one this command runs from).")
@click.option("--wheelhouse", default=None, type=click.Path(exists=True, file_okay=False),
              help="Wheels to carry for an offline install (for the devices' architecture).")
@click.argument("out", type=click.Path(dir_okay=False))
def build(key_file: str, version: str | None, source: str | None, wheelhouse: str | None,
          out: str) -> None:
    """Vendor side: sign the source tree into a release bundle OUT.

    Example: cocoon-agent release build --key vendor.pem --version 0.2.0 cocoon-agent-0.2.0.tar.gz
    """
    from agent.fleet.release.bundle import build_bundle

    src = Path(source) if source else Path(__file__).resolve().parents[2]
    manifest = build_bundle(src, Path(key_file), Path(out), version,
                            Path(wheelhouse) if wheelhouse else None)
    click.echo(f"{out}: cocoon-agent {manifest.version}, {len(manifest.files)} files, "
               f"manifest sha256 {manifest.digest}")


@release.command()
@click.option("--no-wait", is_flag=True,
              help="Switch and return; `release check` (the timer) decides the trial.")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def install(obj: ConfigContext, no_wait: bool, bundle: str) -> None:
    """Verify BUNDLE against the pinned vendor key, install it beside the running version,
    switch to it and wait until it is healthy (else roll back). Run as root.

    Example: cocoon-agent --config /etc/cocoon-agent/agent.toml release install
    cocoon-agent-0.2.0.tar.gz
    """
    updater = _updater(obj, need_key=True)
    outcome = updater.install(Path(bundle), wait=not no_wait)
    click.echo(f"release: {outcome}; running {updater.layout.current}")
    if outcome == "rolled back":
        sys.exit(1)


@release.command()
@click.pass_obj
def check(obj: ConfigContext) -> None:
    """Decide an open trial once: confirm when healthy, roll back after its deadline."""
    click.echo(f"release: {_updater(obj).check()}")


@release.command()
@click.option("--reason", default="asked by the technician", show_default=True)
@click.pass_obj
def rollback(obj: ConfigContext, reason: str) -> None:
    """Switch back to the previous release and restart the agent."""
    updater = _updater(obj)
    back = updater.rollback(reason, trial=updater.layout.read_json(updater.layout.trial_file))
    click.echo(f"release: rolled back to {back}")


@release.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def status(obj: ConfigContext, as_json: bool) -> None:
    """The running, previous and installed versions, an open trial and the history."""
    updater = _updater(obj)
    layout = updater.layout
    trial = layout.read_json(layout.trial_file)
    state = layout.state()
    data = {"root": str(layout.root), "current": layout.current, "previous": layout.previous,
            "installed": layout.installed(), "failed": state.get("failed", []),
            "trial": None if trial is None else {
                "version": trial["version"],
                "seconds_left": max(0, round(trial["deadline"] - time.time()))},
            "history": state.get("history", [])[-5:]}
    if as_json:
        click.echo(json.dumps(data))
        return
    for key in ("root", "current", "previous", "installed", "failed", "trial"):
        value = data[key]
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        elif isinstance(value, dict):
            value = f"{value['version']} ({value['seconds_left']} s left)"
        click.echo(f"{key:10} {'-' if value is None else value}")
    for entry in data["history"]:
        click.echo(f"history    {entry['version']} {entry['outcome']} "
                   f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(entry['at']))}Z")
