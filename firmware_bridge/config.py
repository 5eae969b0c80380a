"""The [firmware] configuration section: where the field box's co-processor is wired and which
vendor key its images must be signed with. Parsed by agent.config (PLUGGED_SECTIONS)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agent.contract.settings import PATH, Schema, decode, integer, seconds, text

from .link import DEFAULT_BAUDRATE


@dataclass(frozen=True)
class FirmwareConfig:
    port: str                       # a serial_for_url URL: /dev/ttyAMA0, socket://host:port
    baudrate: int
    vendor_public_key_file: Path    # Ed25519 PEM: the only key firmware images may be signed with
    hardware: int | None            # this box's board id; None: as the box's Hello says
    ack_timeout_s: float
    boot_timeout_s: float


class FirmwareSection(Schema, kw_only=True):
    port: text()
    baudrate: integer(300, 4_000_000) = DEFAULT_BAUDRATE
    vendor_public_key_file: PATH
    hardware: integer(0, 0xFFFF) | None = None
    ack_timeout_s: seconds(0.005, 5) = 0.05
    boot_timeout_s: seconds(0.5, 600) = 20.0


def parse_firmware(path: Path, table: Any) -> FirmwareConfig:
    """Parse [firmware]; listed in agent.config.PLUGGED_SECTIONS."""
    sec = decode(path, "firmware", table, FirmwareSection)
    return FirmwareConfig(**msgspec.structs.asdict(sec))
