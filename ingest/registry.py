"""Device public keys, one PEM file per device: `<devices_dir>/<device-id>.pem`.

Registering a device is copying the output of `cocoon-agent identity --public-key` there. The
folder is re-read when an unknown device shows up, so a new device needs no restart.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from agent.contract.errors import KeyFileError
from agent.contract.signing import Verifier
from agent.contract.topics import DEVICE_ID_RE

log = logging.getLogger(__name__)


class DeviceRegistry:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._keys: dict[str, Verifier] = {}
        self._loaded_at = 0.0
        self.reload()

    def reload(self) -> None:
        keys = {}
        for pem in sorted(self.directory.glob("*.pem")):
            if not DEVICE_ID_RE.match(pem.stem):
                log.warning("registry: %s is not named after a device id; ignored", pem.name)
                continue
            try:
                keys[pem.stem] = Verifier.from_file(pem)
            except KeyFileError as exc:
                log.error("registry: %s", exc)
        self._keys = keys
        self._loaded_at = time.monotonic()

    def get(self, device: str) -> Verifier | None:
        # Unknown ids come from untrusted messages: re-read the folder at most once a second.
        if device not in self._keys and time.monotonic() - self._loaded_at > 1.0:
            self.reload()
        return self._keys.get(device)

    def devices(self) -> list[str]:
        return sorted(self._keys)
