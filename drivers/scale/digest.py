"""The digest of the frames behind a stable weight, recorded with the sale.

It binds the sale to the indicator's own bytes: anyone holding a capture of the line can
recompute it, and a weight typed in by hand has no frames to match.

Definition (keep in step with the backend): SHA-256 over the frames in the order received,
each preceded by its length as 4 bytes big-endian; lower-case hex. The length prefix makes the
digest unambiguous even for protocols whose frames are not self-delimiting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

ALGORITHM = "sha256-len32be-frames"


def frames_digest(frames: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for frame in frames:
        h.update(len(frame).to_bytes(4, "big"))
        h.update(frame)
    return h.hexdigest()
