"""Strict, typed reading of TOML settings files, shared by the device and the bank side.

Each section of a file is described once, as a msgspec `Schema` (a frozen struct that forbids
unknown fields), with the type, range and default of every key. `decode` turns one table into
such a struct; its errors name the file, the section, the key, what was expected and what was
found, so that a field technician can fix the file without reading code.

Unknown keys are the one kind of error that is not always fatal. A station upgraded from a
version that ignored a misspelt key must go on selling, so the file's loader can *collect* them
(`collecting_unknown_keys`) instead: each is then reported with its line and the nearest valid
key, `doctor` and `provision` fail on them and `run` records an alert. A section decoded outside
such a collection (a parser called on its own, a remote configuration) refuses them.
"""

from __future__ import annotations

import contextlib
import re
import threading
import tomllib
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from agent.contract.errors import ConfigError


class Schema(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The keys of one configuration section: subclass it (with `kw_only=True`, which
    msgspec does not inherit) with annotated fields and their defaults."""


class FilePath(type(Path())):
    """A path in the file, resolved against the configuration file's folder."""


class ExactDecimal(Decimal):
    """An exact decimal written as a string ("0.5"), never a TOML float."""


class PositiveDecimal(ExactDecimal):
    """An `ExactDecimal` above 0."""


class Hundredths(int):
    """A percentage from 0 to 100 with at most 2 decimals ("65.5" or 65), in hundredths of a
    percent (6550): exact, so never a TOML float."""


def _described(kind: Any, description: str, **bounds: Any) -> Any:
    return Annotated[kind, msgspec.Meta(description=description, **bounds)]


def integer(lo: int, hi: int) -> Any:
    return _described(int, f"an integer from {lo} to {hi}", ge=lo, le=hi)


def seconds(lo: float, hi: float) -> Any:
    return _described(float, f"a number of seconds from {lo} to {hi}", ge=lo, le=hi)


def text(pattern: re.Pattern | None = None) -> Any:
    if pattern is None:
        return _described(str, "a string", min_length=1)
    return _described(str, f"a string matching {pattern.pattern}", pattern=pattern.pattern)


def one_of(*choices: str) -> Any:
    return _described(Literal.__getitem__(choices), f"one of {', '.join(choices)}")


def strings(description: str) -> Any:
    return _described(tuple[str, ...], description)


FLAG = _described(bool, "true or false")
PATH = _described(FilePath, "a file path")
DECIMAL = _described(PositiveDecimal, 'a decimal number as a string, e.g. "0.5" above 0')
PERCENT = _described(Hundredths, "a percentage from 0 to 100 with at most 2 decimals, "
                                 'as a string like "65.5"')


class UnknownKey(msgspec.Struct, frozen=True):
    """A key the schema does not know: where it is and what was probably meant."""

    file: Path
    section: str         # "device", "warehouse.readers[0]", or "" for the top level
    key: str
    line: int | None
    suggestion: str | None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        if not self.section:
            hint = f"; did you mean [{self.suggestion}]?" if self.suggestion else ""
            return f"{where}: unknown section [{self.key}]{hint}"
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{where}: [{self.section}] {self.key}: unknown key{hint}"

    def as_dict(self) -> dict:
        return {"section": self.section, "key": self.key, "line": self.line,
                "suggestion": self.suggestion}


_collecting = threading.local()   # .found, .source: within collecting_unknown_keys()


@contextlib.contextmanager
def collecting_unknown_keys(source: str | None = None) -> Iterator[list[UnknownKey]]:
    """Within this block (in this thread), `decode` records unknown keys in the list it
    yields and goes on without them, instead of refusing the section. Their lines are looked
    up in `source`, the file's text, or else in the file itself."""
    found: list[UnknownKey] = []
    outer = getattr(_collecting, "state", None)
    _collecting.state = (found, source)
    try:
        yield found
    finally:
        _collecting.state = outer


def refuse_unknown_keys(found: list[UnknownKey]) -> None:
    if found:
        raise ConfigError("\n".join(str(u) for u in found))


def decode(path: Path, name: str, table: Any, schema: type[Schema], *,
           required: bool = True) -> Any:
    """The section `name` of the file `path` as a `schema`, or None when it is absent and
    not required."""
    if table is None:
        if required:
            raise ConfigError(f"{path}: missing section [{name}]")
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    found, source = getattr(_collecting, "state", None) or (None, None)
    for _ in range(1000):
        try:
            return msgspec.convert(table, schema, dec_hook=_hook(path))
        except msgspec.ValidationError as exc:
            unknown = _unknown_field(str(exc))
            if unknown is None:
                raise _explain(path, name, table, schema, str(exc)) from None
            at, key = unknown
            section, holder, holder_schema = _locate(name, table, schema, at)
            found_key = UnknownKey(path, section, key, None,
                                   _nearest(key, holder_schema))
            if found is None:
                raise ConfigError(str(_with_line(found_key))) from None
            found.append(_with_line(found_key, source))
            import copy

            table = copy.deepcopy(table)   # the caller's table stays as read
            _, holder, _ = _locate(name, table, schema, at)
            holder.pop(key)
    raise ConfigError(f"{path}: [{name}] has too many unknown keys")


def refuse_unknown_sections(path: Path, raw: dict, known: set[str],
                            source: str | None = None) -> None:
    """Sections were never ignored: one this version does not read is an error."""
    unknown = [_with_line(UnknownKey(path, "", name, None, _closest(name, known)), source)
               for name in sorted(set(raw) - known)]
    if unknown:
        raise ConfigError("\n".join(f"{u}; this version reads {', '.join(sorted(known))}"
                                     for u in unknown))


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


# -- decoding helpers ----------------------------------------------------------------------------

def _hook(path: Path):
    def dec_hook(kind: type, value: Any) -> Any:
        if kind is FilePath:
            if not isinstance(value, str) or not value:
                raise ValueError("a file path")
            return FilePath(path.parent / value).resolve()
        if issubclass(kind, ExactDecimal):
            try:
                number = Decimal(value) if isinstance(value, str) else None
            except InvalidOperation:
                number = None
            if number is None or not number.is_finite() or (
                    kind is PositiveDecimal and number <= 0):
                raise ValueError("not a decimal")
            return kind(number)
        if kind is Hundredths:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise ValueError("not a percentage")
            try:
                hundredths = Decimal(str(value)) * 100
            except InvalidOperation:
                raise ValueError("not a percentage") from None
            if hundredths != hundredths.to_integral_value() or not 0 <= hundredths <= 10000:
                raise ValueError("not a percentage")
            return Hundredths(hundredths)
        raise NotImplementedError(kind)
    return dec_hook


# Patterns of the error paths only, compiled (and cached by `re`) when first used: reading a
# valid file compiles none of them.
_UNKNOWN_RE = r"^Object contains unknown field `(.+?)`(?: - at `\$(.*)`)?$"
_AT_RE = r"(?s)^(.*?)(?: - at `\$(.*)`)?$"
_STEP_RE = r"\.([^.\[]+)|\[(\d+)\]"


def _unknown_field(message: str) -> tuple[str, str] | None:
    match = re.match(_UNKNOWN_RE, message)
    return (match.group(2) or "", match.group(1)) if match else None


def _steps(at: str) -> list[str | int]:
    return [int(index) if index else key for key, index in re.findall(_STEP_RE, at)]


def _field_type(schema: Any, key: str) -> Any:
    for field in msgspec.structs.fields(schema):
        if field.name == key:
            return field.type
    return None


def _inner(kind: Any) -> Any:
    """The struct inside `list[S]`, `tuple[S, ...]`, `S | None` or `Annotated[S, ...]`."""
    if isinstance(kind, type) and issubclass(kind, Schema):
        return kind
    for arg in getattr(kind, "__args__", ()):
        inner = _inner(arg)
        if inner is not None:
            return inner
    return None


def _locate(name: str, table: dict, schema: Any, at: str) -> tuple[str, dict, Any]:
    """The section name ("warehouse.readers[0]"), the table and the schema that `at`
    (msgspec's `.readers[0]`) points at within the section `name`."""
    section, holder, kind = name, table, schema
    for step in _steps(at):
        holder = holder[step]
        if isinstance(step, int):
            section += f"[{step}]"
        else:
            section += f".{step}"
            kind = _inner(_field_type(kind, step)) or kind
    return section, holder, kind


def _closest(key: str, valid: Any) -> str | None:
    import difflib

    matches = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _nearest(key: str, schema: Any) -> str | None:
    return _closest(key, [f.name for f in msgspec.structs.fields(schema)])


def _explain(path: Path, name: str, table: dict, schema: Any, message: str) -> ConfigError:
    """msgspec's `Expected int <= 53 - at $.buzzer` as the technician's
    `[signals] buzzer: expected an integer from 0 to 53, got 99`."""
    what, at = re.match(_AT_RE, message).groups()
    missing = re.match(r"Object missing required field `(.+?)`", what)
    steps = _steps(at or "")
    if missing:
        steps.append(missing.group(1))
    key = steps.pop() if steps and isinstance(steps[-1], str) else None
    section, holder, kind = _locate(name, table, schema, "".join(
        f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps))
    if key is None:
        return ConfigError(f"{path}: [{section}] {what}")
    expected = _description(_field_type(kind, key))
    if missing:
        return ConfigError(f"{path}: [{section}] {key}: missing"
                           + (f", expected {expected}" if expected else ""))
    value = holder.get(key) if isinstance(holder, dict) else None
    if expected is None:
        return ConfigError(f"{path}: [{section}] {key}: {what[:1].lower()}{what[1:]} "
                           f"({value!r})")
    return ConfigError(f"{path}: [{section}] {key}: expected {expected}, got {value!r}")


def _description(kind: Any) -> str | None:
    for meta in getattr(kind, "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.description:
            return meta.description
    for arg in getattr(kind, "__args__", ()):
        found = _description(arg)
        if found:
            return found
    return None


# -- where a key is written ----------------------------------------------------------------------

_HEADER_RE = r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$"
_KEY_RE = r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*(?:\.|=)"


def _with_line(key: UnknownKey, source: str | None = None) -> UnknownKey:
    try:
        source = key.file.read_text(encoding="utf-8") if source is None else source
    except (OSError, UnicodeDecodeError):
        return key
    line = line_of(source, key.section, key.key)
    return UnknownKey(key.file, key.section, key.key, line, key.suggestion)


def line_of(source: str, section: str, key: str) -> int | None:
    """The 1-based line where `key` of `section` ("a", "a.b[2]", "" for the top) is written
    in the TOML text `source`, or None when it cannot be told (an inline table, say)."""
    want = re.sub(r"\[\d+\]", "", section)
    index = int(section.rsplit("[", 1)[1].rstrip("]")) if section.endswith("]") else None
    current, seen = "", {}
    for number, line in enumerate(source.splitlines(), 1):
        header = re.match(_HEADER_RE, line)
        if header:
            current = ".".join(part.strip().strip("\"'") for part in header.group(2).split("."))
            if header.group(1) == "[[":
                seen[current] = seen.get(current, -1) + 1
            if not want and current.split(".")[0] == key:
                return number
            continue
        if current == want and (index is None or seen.get(current) == index):
            match = re.match(_KEY_RE, line)
            if match and match.group(1).strip("\"'") == key:
                return number
    return None
