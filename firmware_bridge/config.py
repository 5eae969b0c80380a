"""The [firmware] configuration section: where the field box's co-processor is wired and which
vendor key its images must be signed with. Parsed by agent.config (PLUGGED_SECTIONS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contract.settings import REQUIRED, Section

from .link import DEFAULT_BAUDRATE


@dataclass(frozen=True)
class FirmwareConfig:
    port: str                       # a serial_for_url URL: /dev/ttyAMA0, socket://host:port
    baudrate: int
    vendor_public_key_file: Path    # Ed25519 PEM: the only key firmware images may be signed with
    hardware: int | None            # this box's board id; None: as the box's Hello says
    ack_timeout_s: float
    boot_timeout_s: float


def parse_firmware(path: Path, table: Any) -> FirmwareConfig:
    """Parse [firmware]; listed in agent.config.PLUGGED_SECTIONS."""
    sec = Section(path, "firmware", table)
    hardware = sec.int("hardware", None, lo=0, hi=0xFFFF) if "hardware" in sec.table else None
    return FirmwareConfig(
        port=sec.str("port", REQUIRED),
        baudrate=sec.int("baudrate", DEFAULT_BAUDRATE, lo=300, hi=4_000_000),
        vendor_public_key_file=sec.path("vendor_public_key_file", REQUIRED),
        hardware=hardware,
        ack_timeout_s=sec.seconds("ack_timeout_s", 0.05, lo=0.005, hi=5),
        boot_timeout_s=sec.seconds("boot_timeout_s", 20, lo=0.5, hi=600),
    )
