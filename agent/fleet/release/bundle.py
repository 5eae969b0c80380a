"""Release bundles: the agent's source tree, a manifest and the vendor's signature.

A bundle is one tar file (gzip) with, in this order:

- `manifest.json`: format, name, version, creation time and, for every file, its path, size,
  SHA-256 and whether it is executable;
- `manifest.sig`: `{"alg": "Ed25519", "kid": ..., "sig": base64url}` over manifest.json's bytes;
- `files/<path>`: the files themselves, regular files only.

A device trusts a bundle only through the vendor key pinned in its configuration. Everything
is checked before a single file is written: the signature, the version (newer than the
running one), and every member against the manifest (no extra, missing, altered, linked or
escaping paths). Unpacking hashes each file again as it writes it, so a bundle swapped on disk
between the check and the unpacking is caught too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.contract.signing import ED25519, Verifier, b64url, b64url_decode, load_signer
from agent.errors import CocoonError, SignatureError

FORMAT = 1
NAME = "cocoon-agent"
VERSION_RE = re.compile(r"^\d{1,6}(\.\d{1,6}){1,3}$")
#: What a release carries from the source tree: the code, its packaging and its documents.
#: Tests and benchmarks stay with the vendor.
INCLUDE = ("agent", "drivers", "firmware_bridge", "ingest", "config", "systemd", "docs",
           "packaging", "setup.py", "README.md")
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
MAX_FILES = 5000
MAX_FILE_BYTES = 64 << 20


class BundleRefused(CocoonError):
    """A bundle that must not be installed; the message says why, for the technician."""


def parse_version(text: str) -> tuple[int, ...]:
    """Dotted integers (1.4.2): comparable, so a downgrade is recognised."""
    if not isinstance(text, str) or not VERSION_RE.match(text):
        raise BundleRefused(f"version {text!r} is not of the form MAJOR.MINOR[.PATCH]")
    return tuple(int(p) for p in text.split("."))


@dataclass(frozen=True)
class Manifest:
    version: str
    files: dict[str, dict]   # path -> {"sha256", "size", "exec"}
    raw: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _source_files(source: Path) -> list[Path]:
    found = []
    for top in INCLUDE:
        path = source / top
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                rel = p.relative_to(source)
                if SKIP_PARTS & set(rel.parts) or p.suffix == ".pyc" or p.is_symlink():
                    continue
                if p.is_file():
                    found.append(p)
    return sorted(found)


def tree_version(source: Path) -> str:
    """The `__version__` the tree's agent package declares (what agent.started reports)."""
    text = (source / "agent" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise BundleRefused(f"{source}/agent/__init__.py declares no __version__")
    return match.group(1)


def build_bundle(source: Path, key_file: Path, out: Path, version: str | None = None,
                 wheelhouse: Path | None = None) -> Manifest:
    """Vendor side: sign the source tree at `source` into the bundle `out`.

    The version is the tree's own `agent.__version__`; a different `version` is refused, so a
    device never runs code that reports another version than the one it installed.
    """
    source = Path(source)
    declared = tree_version(source)
    version = version or declared
    parse_version(version)
    if version != declared:
        raise BundleRefused(f"--version {version} differs from agent/__init__.py's "
                            f"__version__ {declared}: set it there first")
    signer = load_signer(key_file)
    if signer.alg != ED25519:
        raise BundleRefused(f"{key_file}: the vendor key must be Ed25519, not {signer.alg}")
    members = [(str(p.relative_to(source).as_posix()), p) for p in _source_files(source)]
    if wheelhouse:
        members += [(f"wheelhouse/{w.name}", w) for w in sorted(Path(wheelhouse).glob("*.whl"))]
    files = {}
    for rel, path in members:
        data = path.read_bytes()
        files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                      "exec": bool(path.stat().st_mode & 0o111)}
    raw = json.dumps({"format": FORMAT, "name": NAME, "version": version,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "files": files}, indent=1, sort_keys=True).encode()
    sig = json.dumps({"alg": signer.alg, "kid": signer.kid,
                      "sig": b64url(signer.sign(raw))}).encode()
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "manifest.json", raw, 0o644)
        _add_bytes(tar, "manifest.sig", sig, 0o644)
        for rel, path in members:
            _add_bytes(tar, f"files/{rel}", path.read_bytes(),
                       0o755 if files[rel]["exec"] else 0o644)
    os.replace(tmp, out)
    return Manifest(version, files, raw)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _open(bundle: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(bundle, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise BundleRefused(f"{bundle}: not a readable release bundle ({exc})") from None


def _read_member(tar: tarfile.TarFile, name: str, limit: int = 16 << 20) -> bytes:
    try:
        info = tar.getmember(name)
    except KeyError:
        raise BundleRefused(f"the bundle has no {name}: it is not a signed release") from None
    if not info.isfile() or info.size > limit:
        raise BundleRefused(f"the bundle's {name} is not a regular file of sane size")
    return tar.extractfile(info).read()


def read_manifest(bundle: Path, verifier: Verifier) -> Manifest:
    """Check the vendor's signature over the manifest and parse it; nothing is unpacked."""
    with _open(bundle) as tar:
        raw = _read_member(tar, "manifest.json")
        sig_doc = _read_member(tar, "manifest.sig", 4096)
    try:
        sig = json.loads(sig_doc)
        verifier.verify(sig["alg"], sig["kid"], raw, b64url_decode(sig["sig"]))
    except SignatureError as exc:
        raise BundleRefused(f"the bundle's signature is not the pinned vendor key's: {exc}") \
            from None
    except (ValueError, KeyError, TypeError):
        raise BundleRefused("the bundle's manifest.sig is malformed") from None
    try:
        doc = json.loads(raw)
        version, files = doc["version"], doc["files"]
        ok = doc["format"] == FORMAT and doc["name"] == NAME and isinstance(files, dict)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise BundleRefused("the bundle's manifest is signed but not a cocoon-agent manifest")
    parse_version(version)
    if len(files) > MAX_FILES:
        raise BundleRefused(f"the manifest lists {len(files)} files (more than {MAX_FILES})")
    for path, entry in files.items():
        _safe_path(path)
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("size"), int) and 0 <= entry["size"] <= MAX_FILE_BYTES):
            raise BundleRefused(f"the manifest's entry for {path} is malformed")
    return Manifest(version, files, raw)


def _safe_path(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or p.parts[0] in (".venv", "."):
        raise BundleRefused(f"the bundle names an unsafe path {path!r}")
    return p


def _file_members(tar: tarfile.TarFile, manifest: Manifest):
    """Each file member with its manifest entry, refusing anything the manifest does not
    describe exactly."""
    seen = set()
    for info in tar:
        if info.name in ("manifest.json", "manifest.sig"):
            continue
        if not info.name.startswith("files/"):
            raise BundleRefused(f"the bundle holds {info.name!r}, outside files/")
        rel = info.name[len("files/"):]
        entry = manifest.files.get(rel)
        if entry is None:
            raise BundleRefused(f"the bundle holds {rel}, which the signed manifest does not list")
        if not info.isfile():
            raise BundleRefused(f"{rel} in the bundle is not a regular file (link or device)")
        if rel in seen:
            raise BundleRefused(f"{rel} appears twice in the bundle")
        seen.add(rel)
        yield info, rel, entry
    missing = set(manifest.files) - seen
    if missing:
        raise BundleRefused(f"the bundle lacks {len(missing)} file(s) the manifest lists, "
                            f"e.g. {sorted(missing)[0]}")


def _checked_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo, rel: str, entry: dict) -> bytes:
    data = tar.extractfile(info).read(MAX_FILE_BYTES + 1)
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleRefused(f"{rel} in the bundle does not match its signed SHA-256: "
                            "the bundle was altered or damaged")
    return data


def check_files(bundle: Path, manifest: Manifest) -> None:
    """Hash every file in the bundle against the signed manifest, writing nothing."""
    with _open(bundle) as tar:
        for info, rel, entry in _file_members(tar, manifest):
            _checked_bytes(tar, info, rel, entry)


def unpack(bundle: Path, manifest: Manifest, dest: Path) -> None:
    """Write the bundle's files under `dest` (which must not exist), hashing each again."""
    dest.mkdir(parents=True)
    with _open(bundle) as tar:
        for info, rel, entry in _file_members(tar, manifest):
            data = _checked_bytes(tar, info, rel, entry)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         0o755 if entry.get("exec") else 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
    (dest / "manifest.json").write_bytes(manifest.raw)
