"""Revocation at the bank: `cocoon-ingest revoke --device ID`.

The bank's word is the store's: the device's watermark at the moment of revocation is recorded
(`revoked` table), and every worker refuses (and counts) the device's events above it, whatever
their timestamp and whatever the broker's CRL says; what it had sent up to there stays good.
A mark beside its registered key (`<devices_dir>/<id>.revoked`) tells the enrolment service,
which may run with its own configuration, to refuse its renewal.

As defence in depth the broker's CRL (`[broker] crl_file`) is written again, signed by the device
CA of the `[enrolment]` section, listing what it listed before and every certificate the
enrolment service issued to a revoked device (and those given with `--cert`); then
`[broker] reload_command` is run (for Mosquitto, a SIGHUP: it reads its CRL again for new
connections). Connections already open stay until they end; the store's refusal holds meanwhile.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from agent.contract.durable import write_atomic
from agent.contract.errors import ConfigError

CRL_DAYS = 30               # next_update of a CRL written here: write it again before then
RELOAD_TIMEOUT_S = 30


def mark_file(devices_dir: Path, device: str) -> Path:
    return Path(devices_dir) / f"{device}.revoked"


def is_revoked(devices_dir: Path, device: str) -> bool:
    return mark_file(devices_dir, device).exists()


def mark(devices_dir: Path, device: str, watermark: int, at: float) -> Path:
    path = mark_file(devices_dir, device)
    write_atomic(path, json.dumps({"device": device, "watermark": watermark,
                                   "revoked_at": at}).encode() + b"\n")
    return path


def issued_serials(enrolment_data_dir: Path, devices: set[str]) -> set[int]:
    """Serial numbers of the certificates the enrolment service issued to `devices`."""
    path = Path(enrolment_data_dir) / "enrolment.sqlite"
    if not path.exists() or not devices:
        return set()
    with closing(sqlite3.connect(path)) as conn:
        try:
            rows = conn.execute("SELECT device, serial FROM issued").fetchall()
        except sqlite3.OperationalError:        # a service that never issued one
            return set()
    return {int(serial) for device, serial in rows if device in devices}


def write_crl(crl_file: Path, ca_cert_file: Path, ca_key_file: Path, serials: set[int]) -> int:
    """Write `crl_file` listing `serials` and whatever it listed before; return the count."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_cert = x509.load_pem_x509_certificate(Path(ca_cert_file).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca_key_file).read_bytes(), password=None)
    listed = set(serials)
    crl_file = Path(crl_file)
    if crl_file.exists():
        try:
            old = x509.load_pem_x509_crl(crl_file.read_bytes())
        except ValueError as exc:
            raise ConfigError(f"[broker] crl_file {crl_file} is not a PEM CRL: {exc}") from None
        if not old.is_signature_valid(ca_cert.public_key()):
            raise ConfigError(f"[broker] crl_file {crl_file} is not signed by the device CA "
                              f"{ca_cert_file}")
        listed |= {r.serial_number for r in old}
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=CRL_DAYS)))
    for number in sorted(listed):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(number).revocation_date(now).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    write_atomic(crl_file, crl.public_bytes(serialization.Encoding.PEM))
    return len(listed)


def reload_broker(command: str) -> None:
    """Run `[broker] reload_command` (no shell); raise ConfigError if it fails."""
    try:
        proc = subprocess.run(shlex.split(command), capture_output=True, text=True,
                              timeout=RELOAD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"[broker] reload_command {command!r} failed: {exc}") from None
    if proc.returncode != 0:
        raise ConfigError(f"[broker] reload_command {command!r} exited {proc.returncode}: "
                          f"{' '.join(proc.stderr.split())[:300]}")


def certificate_serial(cert_file: Path) -> int:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(Path(cert_file).read_bytes()).serial_number
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{cert_file}: not a PEM certificate: {exc}") from None
