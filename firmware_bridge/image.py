"""Firmware images for the co-processor: the file format, building and signing one, and the
checks that refuse an image before a byte of it is sent.

    CCFW | format 1 | hardware u16 | major u16 | minor u16 | patch u16 | length u32 |
    SHA-256 of the payload (32) | Ed25519 signature of the 49 bytes before it (64) | payload

The signature covers the header and, through the SHA-256, the payload; 64 zero bytes mean
unsigned (a developer's build), which the agent never installs. docs/firmware-protocol.md
has the table.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from agent.contract.errors import SignatureError
from agent.contract.signing import ED25519, Verifier

from .errors import ImageError

MAGIC = b"CCFW"
FORMAT = 1
_SIGNED = struct.Struct(">4sBHHHHI32s")          # 49 bytes: everything the signature covers
SIGNATURE_LEN = 64
HEADER_LEN = _SIGNED.size + SIGNATURE_LEN         # 113
UNSIGNED = bytes(SIGNATURE_LEN)


class Version(NamedTuple):
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @classmethod
    def parse(cls, text: str) -> Version:
        """'1.4.2' -> Version(1, 4, 2). Raises ImageError."""
        parts = text.split(".")
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 0xFFFF for p in parts):
            raise ImageError(f"version {text!r} must be MAJOR.MINOR.PATCH, each 0-65535")
        return cls(*(int(p) for p in parts))


@dataclass(frozen=True)
class Image:
    hardware: int
    version: Version
    sha256: bytes
    signature: bytes
    payload: bytes

    @property
    def length(self) -> int:
        return len(self.payload)

    @property
    def signed_header(self) -> bytes:
        return signed_header(self.hardware, self.version, self.length, self.sha256)

    @property
    def signed(self) -> bool:
        return self.signature != UNSIGNED


def signed_header(hardware: int, version: Version, length: int, sha256: bytes) -> bytes:
    """The 49 bytes the vendor signs (the co-processor rebuilds them from UpdateBegin)."""
    return _SIGNED.pack(MAGIC, FORMAT, hardware, *version, length, sha256)


def build_image(payload: bytes, version: Version | str, hardware: int, signer=None) -> bytes:
    """An image file's bytes. `signer` is an Ed25519 signer (agent.contract.signing, e.g.
    `load_signer(vendor_key_file)`); None builds an unsigned image, which devices refuse."""
    if isinstance(version, str):
        version = Version.parse(version)
    if signer is not None and signer.alg != ED25519:
        raise ImageError(f"firmware images are signed with Ed25519, not {signer.alg}")
    header = signed_header(hardware, version, len(payload), hashlib.sha256(payload).digest())
    signature = signer.sign(header) if signer is not None else UNSIGNED
    return header + signature + payload


def parse_image(data: bytes) -> Image:
    """The image in a file's bytes. Raises ImageError when it is not one or is damaged."""
    if len(data) < HEADER_LEN or data[:4] != MAGIC:
        raise ImageError("not a co-processor firmware image (no CCFW header)")
    magic, fmt, hardware, major, minor, patch, length, digest = _SIGNED.unpack_from(data)
    if fmt != FORMAT:
        raise ImageError(f"image format {fmt} is not supported (this agent reads format "
                         f"{FORMAT})")
    payload = data[HEADER_LEN:]
    if len(payload) != length:
        raise ImageError(f"image is damaged: header says {length} bytes of firmware, the file "
                         f"has {len(payload)}")
    if hashlib.sha256(payload).digest() != digest:
        raise ImageError("image is damaged: the firmware's SHA-256 does not match its header")
    return Image(hardware, Version(major, minor, patch), digest,
                 data[_SIGNED.size:HEADER_LEN], payload)


def load_image(path: str | Path) -> Image:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the image: {exc.strerror}") from None
    try:
        return parse_image(data)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def verify_signature(image: Image, vendor: Verifier) -> None:
    """Raise ImageError unless the image is signed by the pinned vendor key."""
    if vendor.alg != ED25519:
        raise ImageError("the pinned firmware vendor key must be an Ed25519 key")
    if not image.signed:
        raise ImageError(f"image {image.version} is unsigned; only images signed by the "
                         "vendor are installed")
    try:
        vendor.verify(ED25519, vendor.kid, image.signed_header, image.signature)
    except SignatureError:
        raise ImageError(f"image {image.version} is not signed by the pinned vendor key "
                         "(forged, damaged, or signed with another key)") from None


def check_installable(image: Image, vendor: Verifier, running: Version,
                      hardware: int | None) -> None:
    """Every check before an update: signature, board, and newer than what runs."""
    verify_signature(image, vendor)
    if hardware is not None and image.hardware != hardware:
        raise ImageError(f"image is for board 0x{image.hardware:04x}, this box is "
                         f"0x{hardware:04x}")
    if image.version < running:
        raise ImageError(f"image {image.version} is older than the running firmware "
                         f"{running}: downgrades are refused")
    if image.version == running:
        raise ImageError(f"firmware {running} is already running")
