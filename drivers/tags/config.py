"""The `[tags]` configuration section: the tag readers of this device, parsed once into frozen
objects (see AgentConfig.section("tags")).

    [tags]
    [[tags.readers]]
    name = "dock"                     # a-z, 0-9, - and _; unique
    port = "/dev/ttyUSB0"             # bb7e: a pyserial URL; llrp: llrp://HOST[:5084]
    protocol = "bb7e"                 # bb7e or llrp
    antennas = [1]                    # bb7e: the first is reported for notices without an
                                      # antenna byte; llrp: antennas to use ([] = all)
    silence_s = 10                    # no answer this long: offline, reconnect
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Section
from agent.errors import ConfigError

from .factory import PROTOCOLS, open_reader

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class ReaderConfig:
    name: str
    port: str
    protocol: str
    antennas: tuple[int, ...]
    silence_s: float

    def open(self):
        """The TagReader this entry describes."""
        return open_reader(self.port, self.protocol, name=self.name, antennas=self.antennas,
                           silence_s=self.silence_s)


@dataclass(frozen=True)
class TagsConfig:
    readers: tuple[ReaderConfig, ...]

    def reader(self, name: str) -> ReaderConfig:
        for r in self.readers:
            if r.name == name:
                return r
        raise KeyError(name)


def parse_tags(path: Path, table: Any) -> TagsConfig:
    """Parse [tags]; raises ConfigError naming the file, the reader and the key."""
    section = Section(path, "tags", table)
    unknown = sorted(set(section.table) - {"readers"})
    if unknown:
        raise ConfigError(f"{path}: [tags] unknown key(s) {', '.join(unknown)}; readers are "
                          "[[tags.readers]] tables")
    raw_readers = section.table.get("readers", [])
    if not isinstance(raw_readers, list):
        raise ConfigError(f"{path}: [tags] readers: use [[tags.readers]] tables")
    readers = []
    for i, raw in enumerate(raw_readers):
        r = Section(path, f"tags.readers[{i}]", raw)
        where = f"{path}: [[tags.readers]] #{i + 1}"
        unknown = sorted(set(r.table) - {"name", "port", "protocol", "antennas", "silence_s"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        name = r.str("name", f"reader-{i + 1}", pattern=NAME_RE)
        port = r.str("port", None)
        if not port:
            raise ConfigError(f"{where} ({name}): port is missing (a pyserial URL such as "
                              "/dev/ttyUSB0, or llrp://HOST:5084)")
        protocol = r.choice("protocol", tuple(PROTOCOLS), "bb7e")
        antennas = r.table.get("antennas", [1] if protocol == "bb7e" else [])
        if (not isinstance(antennas, list) or len(set(antennas)) != len(antennas)
                or not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= 255
                           for a in antennas)):
            raise ConfigError(f"{where} ({name}): antennas must be a list of distinct antenna "
                              f"numbers 1..255, e.g. [1, 2], got {antennas!r}")
        if protocol == "bb7e" and not antennas:
            raise ConfigError(f"{where} ({name}): a bb7e reader needs at least one antenna")
        spec = ReaderConfig(name, port, protocol, tuple(antennas),
                            r.seconds("silence_s", 10, lo=0.1, hi=86400))
        try:
            spec.open()  # checks the port's form (llrp:// URLs) without opening anything
        except ValueError as exc:
            raise ConfigError(f"{where} ({name}): {exc}") from None
        readers.append(spec)
    names = [r.name for r in readers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: [[tags.readers]] names must be unique, got {names}")
    return TagsConfig(tuple(readers))
