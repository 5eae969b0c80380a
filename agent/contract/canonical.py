"""RFC 8785 canonical JSON: the bytes every signature and every digest covers.

Pure and without keys: the envelope signs these bytes, and the pricing digests price tables
with them, so the pricing needs nothing of signing to recompute an amount.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from agent.contract.errors import EventFormatError

MAX_SAFE_INT = 2**53 - 1


# The standard library's C encoder, set up to write RFC 8785's form: members sorted, no spaces,
# strings escaped exactly as ECMAScript's JSON.stringify does (the two-character escapes for
# \b \f \n \r \t, `\u00xx` in lowercase hex for the other control characters, `"` and `\`),
# everything else written as is.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True,
                            separators=(",", ":"))


def canonical(obj: Any) -> bytes:
    """RFC 8785 canonical JSON; refuses floats outside exact integers, Decimal and big ints.

    Every event is canonicalised at least twice on its way (signed bytes, stored bytes), and
    the `rfc8785` package does it in pure Python, one value at a time. For values that
    `check_values` admits (strings, safe integers, booleans, null, lists and string-keyed
    objects: no floats) the C encoder above writes the same bytes whenever its output is
    ASCII: the only difference left between the two would be the order of non-ASCII keys
    (RFC 8785 sorts by UTF-16 code units, Python by code points) and the refusal of lone
    surrogates, so any non-ASCII output is done again by `rfc8785`, the reference. The tests
    compare both on generated values.
    """
    check_values(obj)
    return _canonical_checked(obj)


def _canonical_checked(obj: Any) -> bytes:
    """`canonical` for values `check_values` has already admitted."""
    try:
        text = _ENCODER.encode(obj)
    except (TypeError, ValueError):
        text = None
    if text is not None and text.isascii():
        return text.encode("ascii")
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise EventFormatError(f"cannot canonicalise: {exc}") from None


def check_values(obj: Any, where: str = "$") -> None:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int):
        if abs(obj) > MAX_SAFE_INT:
            raise EventFormatError(
                f"{where}: integer {obj} is outside +-2**53; send it as a string")
        return
    if isinstance(obj, float):
        raise EventFormatError(f"{where}: floats are not allowed; send exact values as strings")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise EventFormatError(f"{where}: object keys must be strings")
            check_values(value, f"{where}.{key}")
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            check_values(value, f"{where}[{i}]")
        return
    raise EventFormatError(f"{where}: {type(obj).__name__} is not a JSON value; use a string")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
