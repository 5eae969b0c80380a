"""Strict reading of TOML settings files, shared by the device's and the bank's configuration.

`read_toml` reads a file and names it in every error; `Section` gives typed accessors over one
table whose errors name the file, the section, the key and what was expected.
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent.contract.errors import ConfigError

REQUIRED = object()


class Section:
    """Typed accessors over one TOML table that produce precise error messages."""

    def __init__(self, path: Path, name: str, table: Any, *, required: bool = True):
        self.file, self.name = path, name
        if table is None:
            if required:
                raise ConfigError(f"{path}: missing section [{name}]")
            table = {}
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        self.table = table

    def _fail(self, key: str, expected: str, value: Any = None) -> ConfigError:
        got = "" if value is None else f", got {value!r}"
        return ConfigError(f"{self.file}: [{self.name}] {key}: expected {expected}{got}")

    def _get(self, key: str, default: Any, expected: str) -> Any:
        if key not in self.table:
            if default is REQUIRED:
                raise ConfigError(f"{self.file}: [{self.name}] {key}: missing, expected {expected}")
            return default
        return self.table[key]

    def str(self, key: str, default: Any = None, *, pattern: re.Pattern | None = None) -> Any:
        expected = "a string" + (f" matching {pattern.pattern}" if pattern else "")
        if key not in self.table and default is not REQUIRED:
            return default
        value = self._get(key, default, expected)
        if not isinstance(value, str) or not value or (pattern and not pattern.match(value)):
            raise self._fail(key, expected, value)
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any) -> str:
        value = self._get(key, default, f"one of {', '.join(choices)}")
        if value not in choices:
            raise self._fail(key, f"one of {', '.join(choices)}", value)
        return value

    def int(self, key: str, default: Any, *, lo: int, hi: int) -> int:
        expected = f"an integer from {lo} to {hi}"
        value = self._get(key, default, expected)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self._fail(key, expected, value)
        return value

    def seconds(self, key: str, default: Any, *, lo: float, hi: float) -> float:
        expected = f"a number of seconds from {lo} to {hi}"
        value = self._get(key, default, expected)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self._fail(key, expected, value)
        return float(value)

    def decimal(self, key: str, default: Any, *, positive: bool = True) -> Any:
        """An exact decimal written as a string ("0.5"), never a TOML float."""
        expected = "a decimal number as a string, e.g. \"0.5\"" + (" above 0" if positive else "")
        if key not in self.table and default is not REQUIRED:
            return default
        value = self._get(key, default, expected)
        try:
            number = Decimal(value) if isinstance(value, str) else None
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or (positive and number <= 0):
            raise self._fail(key, expected, value)
        return number

    def bool(self, key: str, default: Any) -> bool:
        value = self._get(key, default, "true or false")
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def path(self, key: str, default: Any = None, *, must_exist: bool = False) -> Path | None:
        if key not in self.table and default is not REQUIRED:
            return default
        value = self._get(key, default, "a file path")
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a file path", value)
        resolved = (self.file.parent / value).resolve()
        if must_exist and not resolved.exists():
            raise ConfigError(f"{self.file}: [{self.name}] {key}: file {resolved} does not exist")
        return resolved


def read_toml(path: str | Path) -> tuple[dict, Path]:
    """Read a TOML file; errors name the file."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return raw, path
