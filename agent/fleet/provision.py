"""Provisioning: turn a fresh machine into a device with an identity, trust anchors and a
configuration, ready for enrolment (agent/fleet/enrolment.py).

A technician runs `cocoon-agent provision` once per device. It is a fixed sequence of steps,
each of which first looks at what is already there and keeps it when it is right, so that the
command can simply be run again after a failure at any step (a power cut, a wrong bundle, a
typo in the broker's name) and completes the rest without making a second identity:

    data_dir      the state directory (0700, owned by the service user)
    identity      records which device this machine is becoming (provision.json); refuses to
                  replace another identity unless forced, and never one that recorded events
    signing_key   the device's event signing key (Ed25519 or ES256), mode 0600
    tls_key       the TLS key (ECDSA P-256), mode 0600, in data_dir/tls so renewal can rewrite it
    csr           a certificate signing request with CN = device id (data_dir/tls/device.csr)
    trust         the CA certificate and the public keys (ingest, backend, bank, issuer) from
                  the technician's bundle directory, each checked to be a PEM of the right kind
    config        the agent configuration, validated by agent.config before it is written
                  atomically; sections the technician added by hand are kept, with comments

Secrets are created on the device and never leave it: the bundle brings public material only,
and a bundle file that holds a private key is refused.
"""

from __future__ import annotations

import json
import os
import pwd
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from cryptography import x509

from agent.config import SIGNING_ALGS, parse_config
from agent.contract.durable import write_atomic
from agent.contract.enrolment import RESERVED_IDS
from agent.contract.signing import Verifier, generate_key_file, load_signer
from agent.contract.topics import DEVICE_ID_RE
from agent.errors import CocoonError, ConfigError, KeyFileError
from agent.fleet.enrolment import csr_matches, ensure_tls_key, make_csr

STATE_FILE = "provision.json"

#: The user the package creates and the unit runs as; it must be able to read the keys.
SERVICE_USER = "cocoon"

#: Files a technician's bundle may hold: name -> (what it is, required, [keys] entry or None).
BUNDLE: dict[str, tuple[str, bool, str | None]] = {
    "ca.pem": ("CA certificate the broker's certificate chains to", True, None),
    "ingest.pem": ("ingest public key (verifies acks)", True, "ingest_public_key_file"),
    "backend.pem": ("backend public key (price tables, configuration, time)", False,
                    "backend_public_key_file"),
    "bank.pem": ("bank public key (payments, pledges)", False, "bank_public_key_file"),
    "issuer.pem": ("card issuer public key (farmer cards)", False, None),
}


class ProvisionError(CocoonError):
    """Provisioning cannot go on; the message says what to fix. Running it again resumes."""


@dataclass(frozen=True)
class Plan:
    """What the technician asked for. Paths are absolute."""

    device_id: str
    config_file: Path
    data_dir: Path
    broker_host: str
    broker_port: int = 8883
    bundle: Path | None = None
    signing_alg: str = "Ed25519"
    user: str | None = None
    force: bool = False

    @property
    def conf_dir(self) -> Path:
        return self.config_file.parent

    @property
    def keys_dir(self) -> Path:
        return self.conf_dir / "keys"

    @property
    def ca_file(self) -> Path:
        return self.conf_dir / "ca.pem"

    @property
    def signing_key(self) -> Path:
        return self.data_dir / "device-signing.key"

    @property
    def tls_dir(self) -> Path:
        # In the state directory, not /etc: the hardened unit may write only there, and
        # certificate renewal rewrites the key and the certificate.
        return self.data_dir / "tls"

    @property
    def tls_key(self) -> Path:
        return self.tls_dir / "device.key"

    @property
    def cert_file(self) -> Path:
        return self.tls_dir / "device.pem"

    @property
    def csr_file(self) -> Path:
        return self.tls_dir / "device.csr"

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    def anchor(self, name: str) -> Path:
        return self.ca_file if name == "ca.pem" else self.keys_dir / name


@dataclass(frozen=True)
class StepResult:
    step: str
    outcome: str        # "created", "kept", "updated", "replaced", "warning"
    detail: str


# -- checks ----------------------------------------------------------------------------------

def check_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.match(device_id or "") or device_id in RESERVED_IDS:
        raise ProvisionError(f"device id {device_id!r}: use lowercase letters, digits and "
                             "dashes (e.g. station-07), not one of "
                             f"{', '.join(sorted(RESERVED_IDS))}")
    return device_id


def check_anchor(name: str, data: bytes) -> str:
    """Raise ProvisionError unless `data` is the right kind of PEM for bundle file `name`;
    return a short description (subject or key id)."""
    what = BUNDLE[name][0]
    if b"PRIVATE KEY" in data:
        raise ProvisionError(f"{name} holds a private key: the bundle must bring only public "
                             f"material ({what}); remove it from the bundle and destroy the copy")
    if name == "ca.pem":
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise ProvisionError(f"{name}: not a PEM certificate; expected the {what}") from None
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ProvisionError(f"{name}: this certificate is not a CA certificate "
                                 f"(basicConstraints CA:TRUE); expected the {what}")
        if cert.not_valid_after_utc.timestamp() < time.time():
            raise ProvisionError(f"{name}: the CA certificate has expired "
                                 f"({cert.not_valid_after_utc:%Y-%m-%d})")
        return cert.subject.rfc4514_string()
    try:
        return "kid " + Verifier.from_pem(data).kid[:16]
    except KeyFileError as exc:
        raise ProvisionError(f"{name}: expected the {what} as a PEM Ed25519 or ECDSA P-256 "
                             f"public key: {exc}") from None


def default_service_user(lookup: Callable[[str], pwd.struct_passwd] | None = None,
                         euid: int | None = None) -> str | None:
    """The user to own the keys and the state directory when none is named: the service user
    (`cocoon`) when it exists and this process can give files to it (root, or that user),
    else None (files stay with the current user). Left root-owned with mode 0600, the keys
    could not be read by the service."""
    try:
        entry = (lookup or pwd.getpwnam)(SERVICE_USER)
    except KeyError:
        return None
    euid = os.geteuid() if euid is None else euid
    return SERVICE_USER if euid in (0, entry.pw_uid) else None


# -- the steps ---------------------------------------------------------------------------------

class Provisioner:
    """Runs a Plan step by step; `steps()` lists them in order (each safe to run again)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._owner = self._resolve_user(plan.user)
        self.results: list[StepResult] = []

    def steps(self) -> list[tuple[str, Callable[[], StepResult]]]:
        return [("data_dir", self.data_dir), ("identity", self.identity),
                ("signing_key", self.signing_key), ("tls_key", self.tls_key),
                ("csr", self.csr), ("trust", self.trust), ("config", self.config)]

    def run(self) -> list[StepResult]:
        for _name, step in self.steps():
            self.results.append(step())
        self._write_state(completed=True)
        return self.results

    # -- ownership -----------------------------------------------------------------------

    def _resolve_user(self, user: str | None) -> tuple[int, int] | None:
        if not user:
            return None
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid

    def _own(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, *self._owner)

    # -- steps -----------------------------------------------------------------------------

    def data_dir(self) -> StepResult:
        d = self.plan.data_dir
        existed = d.is_dir()
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        self._own(d)
        self.plan.tls_dir.mkdir(exist_ok=True)
        self.plan.tls_dir.chmod(0o700)
        self._own(self.plan.tls_dir)
        owner = self.plan.user if self._owner else None
        if self.plan.user and self._owner is None:
            return StepResult("data_dir", "warning", f"{d}: user {self.plan.user!r} does not "
                              "exist; files stay owned by the current user (create the user, "
                              "then run provision again)")
        return StepResult("data_dir", "kept" if existed else "created",
                          f"{d} (0700{', owner ' + owner if owner else ''})")

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.plan.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"{self.plan.state_file}: unreadable ({exc}); move it away "
                                 "and run provision again with --force") from None

    def _write_state(self, *, completed: bool) -> None:
        state = {"device": self.plan.device_id, "signing_alg": self.plan.signing_alg,
                 "completed": completed, "updated": int(time.time())}
        write_atomic(self.plan.state_file, json.dumps(state, indent=2).encode() + b"\n",
                     mode=0o600)
        self._own(self.plan.state_file)

    def _identity_files(self) -> list[Path]:
        p = self.plan
        return [f for f in (p.signing_key, p.tls_key, p.cert_file, p.csr_file) if f.exists()]

    def identity(self) -> StepResult:
        """Decide whether this run makes a new identity, resumes one, or must stop."""
        p = self.plan
        state = self._read_state()
        present = self._identity_files()
        if state is not None and state.get("device") == p.device_id:
            if state.get("signing_alg", p.signing_alg) != p.signing_alg and \
                    p.signing_key.exists() and not p.force:
                raise ProvisionError(
                    f"{p.device_id} was provisioned with signing_alg "
                    f"{state.get('signing_alg')}; run with the same --signing-alg, or with "
                    "--force to replace the identity")
            if not p.force:
                self._write_state(completed=False)
                return StepResult("identity", "kept", f"resuming {p.device_id}")
        elif (state is not None or present) and not p.force:
            who = state.get("device") if state else "an identity not made by provision"
            raise ProvisionError(
                f"this machine already has an identity ({who}: "
                f"{', '.join(str(f) for f in present) or p.state_file}); refusing to replace "
                "it. Run with --force to replace it (after `cocoon-agent decommission` if it "
                "ever recorded events)")
        replaced = bool(present)
        if replaced:
            outbox = p.data_dir / "outbox.sqlite"
            if outbox.exists():
                raise ProvisionError(
                    f"{outbox} holds the events of the identity being replaced; run "
                    "`cocoon-agent decommission` first (it wipes only once everything is "
                    "acknowledged), then provision again")
            for f in present:
                f.unlink()
        self._write_state(completed=False)
        return StepResult("identity", "replaced" if replaced else "created",
                          f"{p.device_id}" + (" (old keys removed)" if replaced else ""))

    def signing_key(self) -> StepResult:
        p = self.plan
        if p.signing_key.exists():
            signer = load_signer(p.signing_key)
            if signer.alg != p.signing_alg:
                raise ProvisionError(f"{p.signing_key} is an {signer.alg} key, not "
                                     f"{p.signing_alg}; run with --force to replace it")
            outcome = "kept"
        else:
            signer = generate_key_file(p.signing_key, p.signing_alg)
            outcome = "created"
        p.signing_key.chmod(0o600)
        self._own(p.signing_key)
        return StepResult("signing_key", outcome,
                          f"{p.signing_key} ({signer.alg}, kid {signer.kid[:16]}, 0600)")

    def tls_key(self) -> StepResult:
        p = self.plan
        existed = p.tls_key.exists()
        try:
            ensure_tls_key(p.tls_key)
        except ValueError as exc:
            raise ProvisionError(f"{p.tls_key}: not a PEM private key ({exc}); run with "
                                 "--force to replace it") from None
        except CocoonError as exc:
            raise ProvisionError(f"{exc}; run with --force to replace it") from None
        p.tls_key.chmod(0o600)
        self._own(p.tls_key)
        return StepResult("tls_key", "kept" if existed else "created",
                          f"{p.tls_key} (ECDSA P-256, 0600)")

    def csr(self) -> StepResult:
        p = self.plan
        key = ensure_tls_key(p.tls_key)
        if p.csr_file.exists() and csr_matches(p.csr_file.read_bytes(), key, p.device_id):
            return StepResult("csr", "kept", f"{p.csr_file} (CN={p.device_id})")
        existed = p.csr_file.exists()
        write_atomic(p.csr_file, make_csr(p.device_id, key))
        self._own(p.csr_file)
        return StepResult("csr", "updated" if existed else "created",
                          f"{p.csr_file} (CN={p.device_id})")

    def trust(self) -> StepResult:
        """Check every file of the bundle before installing any of them."""
        p = self.plan
        if p.bundle is None:
            missing = [n for n, (_, required, _) in BUNDLE.items()
                       if required and not p.anchor(n).exists()]
            if missing:
                raise ProvisionError(f"no --bundle given and {', '.join(missing)} not "
                                     f"installed in {p.conf_dir}; bring the bundle directory")
            for name in BUNDLE:
                if p.anchor(name).exists():
                    check_anchor(name, p.anchor(name).read_bytes())
            return StepResult("trust", "kept", f"anchors already in {p.conf_dir}")
        if not p.bundle.is_dir():
            raise ProvisionError(f"--bundle {p.bundle}: not a directory")
        found: dict[str, bytes] = {}
        for name, (what, required, _) in BUNDLE.items():
            src = p.bundle / name
            if not src.exists():
                if required:
                    raise ProvisionError(f"{src}: missing; the bundle must hold the {what}")
                continue
            found[name] = src.read_bytes()
            check_anchor(name, found[name])
        installed, kept = [], []
        for name, data in found.items():
            dest = p.anchor(name)
            if dest.exists() and dest.read_bytes() == data:
                kept.append(name)
                continue
            write_atomic(dest, data, mode=0o644)
            installed.append(name)
        absent = [n for n in BUNDLE if n not in found]
        detail = ", ".join(filter(None, [
            f"installed {' '.join(installed)}" if installed else "",
            f"kept {' '.join(kept)}" if kept else "",
            f"not in bundle: {' '.join(absent)}" if absent else ""]))
        return StepResult("trust", "updated" if installed else "kept", detail)

    def config(self) -> StepResult:
        p = self.plan
        existed = p.config_file.exists()
        text = render_config(p, p.config_file.read_text(encoding="utf-8") if existed else None)
        try:
            parse_config(tomllib.loads(text), p.config_file, source=text)
        except (ConfigError, tomllib.TOMLDecodeError) as exc:
            raise ProvisionError(f"the configuration would not be valid, nothing written: "
                                 f"{exc}") from None
        if existed and p.config_file.read_text(encoding="utf-8") == text:
            return StepResult("config", "kept", str(p.config_file))
        write_atomic(p.config_file, text.encode("utf-8"), mode=0o644)
        return StepResult("config", "updated" if existed else "created", str(p.config_file))


def render_config(plan: Plan, existing: str | None) -> str:
    """The configuration text: the existing file (comments and other sections kept) with the
    keys provisioning owns set from the plan, or a new file."""
    try:
        doc = tomlkit.parse(existing) if existing else tomlkit.document()
    except tomlkit.exceptions.ParseError as exc:
        raise ProvisionError(f"{plan.config_file}: not valid TOML ({exc}); fix or remove "
                             "it, then run provision again") from None
    if not existing:
        doc.add(tomlkit.comment("cocoon-agent device configuration, written by "
                                "`cocoon-agent provision`."))
        doc.add(tomlkit.comment("Sections added by hand are kept when provision runs again."))

    def table(name: str):
        if name not in doc:
            doc.add(name, tomlkit.table())
        return doc[name]

    device = table("device")
    device["id"] = plan.device_id
    device["data_dir"] = str(plan.data_dir)
    device["signing_key_file"] = str(plan.signing_key)
    device["signing_alg"] = plan.signing_alg
    mqtt = table("mqtt")
    mqtt["host"] = plan.broker_host
    mqtt["port"] = plan.broker_port
    mqtt["ca_file"] = str(plan.ca_file)
    mqtt["cert_file"] = str(plan.cert_file)
    mqtt["key_file"] = str(plan.tls_key)
    keys = table("keys")
    for name, (_, _, entry) in BUNDLE.items():
        if entry and plan.anchor(name).exists():
            keys[entry] = str(plan.anchor(name))
    if "card" in doc and plan.anchor("issuer.pem").exists():
        doc["card"]["issuer_public_key_file"] = str(plan.anchor("issuer.pem"))
    return tomlkit.dumps(doc)


def existing_settings(config_file: Path) -> dict:
    """What an earlier run wrote (device id, broker, data_dir...), to resume with fewer flags."""
    try:
        raw = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    device, mqtt = raw.get("device", {}), raw.get("mqtt", {})
    found = {"device_id": device.get("id"), "data_dir": device.get("data_dir"),
             "signing_alg": device.get("signing_alg"), "broker_host": mqtt.get("host"),
             "broker_port": mqtt.get("port")}
    return {k: v for k, v in found.items() if v is not None}


def provision(plan: Plan) -> list[StepResult]:
    """Run every step of `plan`; see the module docstring."""
    check_device_id(plan.device_id)
    if plan.signing_alg not in SIGNING_ALGS:
        raise ProvisionError(f"signing algorithm {plan.signing_alg!r}: expected one of "
                             f"{', '.join(SIGNING_ALGS)}")
    return Provisioner(plan).run()
