"""Readers named by any unique part of their name.

pcscd names a reader after its driver's model string plus two numbers ("ACS ACR1252 1S CL
Reader [ACR1252 Dual Reader PICC] 00 00") and lists readers in the order they appeared, which
changes with the USB port and the boot. So the configuration names a reader by a part that is
stable and unique ("PICC", "ACR122"); order is never used.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import backend
from .errors import AmbiguousReader, ReaderNotFound


def _listing(names: tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in names) if names else "none"


def select_reader(wanted: str, available: Iterable[str]) -> str:
    """The one name in `available` that contains `wanted` (ignoring case).

    A name equal to `wanted` wins even if other names contain it too. An empty `wanted` picks
    the only reader there is. Raises ReaderNotFound or AmbiguousReader, listing the readers.
    """
    names = tuple(available)
    if wanted in names:
        return wanted
    needle = wanted.casefold()
    matches = tuple(n for n in names if needle in n.casefold())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ReaderNotFound(
            f"no card reader's name contains {wanted!r} (readers: {_listing(names)}); check "
            "that the reader is plugged in and the configured name", wanted, names)
    raise AmbiguousReader(
        f"several card readers' names contain {wanted!r}: {_listing(matches)}; configure a "
        "longer part of the name", wanted, names, matches)


def find_reader(wanted: str) -> str:
    """`select_reader` over the readers pcscd knows now."""
    return select_reader(wanted, backend.list_readers())


def list_readers() -> list[str]:
    """The readers pcscd knows now, in its order (which is not stable: select by name)."""
    return backend.list_readers()
