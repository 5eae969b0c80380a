"""What the command lines of the agent and the ingest share: logging, a lazily loaded
configuration, and one place that turns expected errors into a line on stderr and an exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from agent.errors import CocoonError, OutboxFull


def setup_logging(level: str) -> None:
    """One structured line per record on stderr (the journal under systemd): agent.ops.logs."""
    from agent.ops.logs import setup

    setup(level)


class ConfigContext:
    """Loads the --config file the first time a command needs it."""

    def __init__(self, path: str | None, loader: Callable):
        self.path = path
        self._loader = loader
        self._config = None

    @property
    def config(self):
        if self._config is None:
            if not self.path:
                raise click.UsageError("this command needs --config FILE")
            self._config = self._loader(self.path)
        return self._config


def run_cli(group: click.Group, prog: str, argv: list[str] | None = None) -> None:
    """Run a click group; expected faults become one line on stderr, never a traceback.

    Exit codes: 1 for a refused operation the user can retry later (a full outbox), 2 for a
    problem to fix (configuration, keys, bad input), 130 when interrupted.
    """
    try:
        code = group.main(args=argv, prog_name=prog, standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            sys.exit(code)  # click returns a raised Exit's code when not standalone
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except OutboxFull as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except CocoonError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
