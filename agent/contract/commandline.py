"""What the command lines of the agent and the ingest share with the people and scripts that
run them: logging, a lazily loaded configuration, and one place that turns expected errors into
a line on stderr and an exit code (a convention scripts rely on).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import click

from agent.contract.errors import CocoonError


def setup_logging(level: str, expected: tuple[type[BaseException], ...] = (CocoonError,)
                  ) -> None:
    """One structured line per record on stderr (the journal under systemd): agent.contract.logs.
    `expected` errors are logged as their message, without a traceback."""
    from agent.contract.logs import setup

    setup(level, expected=expected)


log = logging.getLogger("agent.config")


class ConfigContext:
    """Loads the --config file the first time a command needs it.

    `loader(path, strict=False)` leaves unknown keys out and lists them in the configuration's
    `unknown_keys`: they are logged here as errors, once, and the command goes on (a station
    upgraded from a version that ignored a misspelt key must go on selling). Commands that
    report them themselves (the doctor's table) pass `report_unknown=False`."""

    def __init__(self, path: str | None, loader: Callable, *, report_unknown: bool = True):
        self.path = path
        self._loader = loader
        self._config = None
        self.report_unknown = report_unknown

    @property
    def config(self):
        if self._config is None:
            if not self.path:
                raise click.UsageError("this command needs --config FILE")
            self._config = self._loader(self.path, strict=False)
            if self.report_unknown:
                for key in self._config.unknown_keys:
                    log.error("%s (ignored: the default is used)", key)
        return self._config


#: Options of the top-level group that a user may also write after the subcommand
#: (`cocoon-agent queue --config F`): the group reads them wherever they are.
GLOBAL_OPTIONS = ("--config", "--log-level")


def hoist_global_options(argv: list[str], names: tuple[str, ...] = GLOBAL_OPTIONS) -> list[str]:
    """`argv` with the group's own options (`--config F`, `--config=F`) moved before the
    subcommand, so that they are accepted before or after it. Nothing after `--` moves, and
    an option given twice keeps click's rule: the last one wins."""
    hoisted, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if name in names:
            if "=" in arg:
                hoisted.append(arg)
            else:
                hoisted.extend(argv[i:i + 2])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def version_line(prog: str, version: str) -> str:
    """`cocoon-agent X.Y.Z`: the first line of `--version`, the same form for both programs
    (the version is the distribution's: `agent.__version__`)."""
    return f"{prog} {version}"


def run_cli(group: click.Group, prog: str, argv: list[str] | None = None, *,
            expected: tuple[type[BaseException], ...] = (CocoonError,)) -> None:
    """Run a click group; `expected` faults become one line on stderr, never a traceback.

    Exit codes: an error's own `exit_code` when it has one (1 for a refused operation the user
    can retry later, such as a full outbox), 2 for a problem to fix (configuration, keys, bad
    input), 130 when interrupted.
    """
    argv = hoist_global_options(sys.argv[1:] if argv is None else list(argv))
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
    except expected as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
