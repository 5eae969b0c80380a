"""The software identification of the legally relevant part (WELMEC 7.2 / OIML D 31, OIML R76
5.5.1): one SHA-256 over exactly the files `legal_manifest.txt` names, computed at run time
from the files that run, so that any change to them shows and a change elsewhere does not.

The digest is the one `sha256sum` gives for the list `sha256sum FILE...` prints, the files in
the manifest's order, with the installation's top (the folder holding `agent/` and
`drivers/`) as the working directory: a verifier can recompute it with the shell alone.
`cocoon-agent --version` prints it on its second line (`legal <sha256>`), the station records
it in every `purchase.recorded`, and a change of it since the last recorded identification
stops sales until a supervisor acknowledges it (agent.station.legal).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from agent.contract.errors import CocoonError

MANIFEST = Path(__file__).with_name("legal_manifest.txt")
TOP = Path(__file__).resolve().parents[2]     # holds agent/, drivers/


class LegalFileMissing(CocoonError):
    """A file of the manifest is not in the installation: the software cannot be identified,
    and a station must not sell with it."""


def manifest_paths(manifest: Path = MANIFEST) -> list[str]:
    """The manifest's paths, in order (comments and blank lines left out)."""
    lines = manifest.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def legal_listing(top: Path = TOP, manifest: Path = MANIFEST) -> str:
    """What `sha256sum FILE...` prints for the manifest's files, run in `top`."""
    out = []
    for path in manifest_paths(manifest):
        try:
            data = (top / path).read_bytes()
        except FileNotFoundError:
            raise LegalFileMissing(f"legally relevant file {path} is missing from {top}") \
                from None
        out.append(f"{hashlib.sha256(data).hexdigest()}  {path}\n")
    return "".join(out)


def legal_id(top: Path = TOP, manifest: Path = MANIFEST) -> str:
    """The identification: SHA-256 (hex) of `legal_listing`."""
    return hashlib.sha256(legal_listing(top, manifest).encode("utf-8")).hexdigest()


@cache
def running_legal_id() -> str:
    """The identification of the software this process runs (computed once per process:
    the files are read at start, as they were loaded)."""
    return legal_id()
