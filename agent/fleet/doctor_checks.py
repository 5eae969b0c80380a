"""The checks of `cocoon-agent doctor`, one small function each, returning a typed result.

Each check looks at one part the way the agent would use it (a real TLS connection to the
broker with the device's certificate, the reader list pcscd gives, frames read from the scale's
port) and says what is wrong in words for the technician, with a hint to fix it. None of them
writes anything or appends an event: a doctor must not change what it examines.
"""

from __future__ import annotations

import enum
import pwd
import queue
import re
import shlex
import shutil
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.contract.clock import wall_clock_synced

MIB = 1024 * 1024
UNIT_NAME = "cocoon-agent.service"
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/run/systemd/system"),
             Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def as_dict(self) -> dict:
        return {"check": self.name, "status": self.status.value, "detail": self.detail,
                "hint": self.hint}


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.OK, detail)


def _fail(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, hint)


def _warn(name: str, detail: str, hint: str) -> CheckResult:
    return CheckResult(name, Status.WARN, detail, hint)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- broker and certificate ----------------------------------------------------------------

class _Probe:
    """A LinkHandler that only notes that the connection was accepted."""

    def __init__(self):
        self.connected = threading.Event()

    def on_connected(self, link) -> None:
        self.connected.set()

    def on_disconnected(self, link, reason: str) -> None:
        pass

    def on_message(self, link, topic: str, payload: bytes, retain: bool) -> None:
        pass

    def on_puback(self, link, mid: int, reason_code: int) -> None:
        pass

    def on_tick(self, link) -> None:
        pass


def check_broker(config, timeout_s: float = 10.0) -> CheckResult:
    """Connect to the broker over TLS with the device's certificate, as the agent does."""
    from agent.link.mqtt import LinkSettings, MqttLink

    name, m = "broker", config.mqtt
    for label, path in (("ca_file", m.ca_file), ("cert_file", m.cert_file),
                        ("key_file", m.key_file)):
        if not Path(path).is_file():
            hint = ("enrol the device: cocoon-agent enrol --token ..." if label == "cert_file"
                    else "run cocoon-agent provision with the bundle")
            return _fail(name, f"[mqtt] {label} {path} does not exist", hint)
    settings = LinkSettings(
        client_id=f"{config.device.id}-doctor", host=m.host, port=m.port, ca_file=m.ca_file,
        cert_file=m.cert_file, key_file=m.key_file, keepalive_s=m.keepalive_s,
        connack_timeout_s=min(m.connack_timeout_s, timeout_s), clean_start=True,
        session_expiry_s=0, reconnect_min_s=timeout_s, reconnect_max_s=timeout_s)
    try:
        context = ssl.create_default_context(cafile=str(m.ca_file))
        context.load_cert_chain(str(m.cert_file), str(m.key_file))
    except (ssl.SSLError, OSError, ValueError) as exc:
        return _fail(name, f"cannot use [mqtt] ca_file, cert_file and key_file together: {exc}",
                     "the certificate must be the one enrolled for this TLS key: see the "
                     "certificate check")
    probe = _Probe()
    link = MqttLink(settings, probe)
    stop = threading.Event()
    thread = threading.Thread(target=link.run, args=(stop,), daemon=True, name="doctor-link")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not probe.connected.is_set() \
            and not link.status.last_error and thread.is_alive():
        time.sleep(0.02)
    connected = probe.connected.is_set()
    status = link.status
    stop.set()
    thread.join(timeout=10)
    where = f"{m.host}:{m.port}"
    if connected:
        return _ok(name, f"{where}: TLS connection accepted with the device certificate")
    error = status.last_error or f"no answer within {timeout_s:g} s"
    if "CERTIFICATE_VERIFY_FAILED" in error or "certificate verify failed" in error:
        return _fail(name, f"{where}: the broker's certificate does not verify: {error}",
                     "[mqtt] ca_file must be the CA of the bundle; check host name and clock")
    if status.auth_failed:
        return _refused(name, where, check_certificate(config))
    return _fail(name, f"{where} unreachable: {error}",
                 "check the network (ping, DNS), [mqtt] host and port, and the firewall")


def _refused(name: str, where: str, local: CheckResult) -> CheckResult:
    """The broker refused the device's certificate: why, as far as this machine can tell. A
    revocation cannot be seen here (the CRL is the broker's), so only a certificate that
    checks out locally (this device's name, over its key, issued by [mqtt] ca_file, within
    its dates) is called probably revoked; otherwise the local reason is the answer."""
    if local.status in (Status.OK, Status.WARN):
        return _fail(name, f"{where}: the broker refused this device's certificate, which "
                     "checks out here (this device's name and key, issued by [mqtt] ca_file, "
                     "within its dates): it is probably revoked",
                     "a revoked device must be provisioned and enrolled again (new token); "
                     "ask the bank whether it revoked this device")
    return _fail(name, f"{where}: the broker refused this device's certificate: "
                 f"{local.detail}", local.hint)


def check_certificate(config, warn_days: float = 30) -> CheckResult:
    """The client certificate: this device's, over its key, from the CA, and not expiring."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    name, m = "certificate", config.mqtt
    try:
        cert = x509.load_pem_x509_certificate(Path(m.cert_file).read_bytes())
    except FileNotFoundError:
        return _fail(name, f"{m.cert_file} does not exist: the device is not enrolled",
                     "cocoon-agent enrol --token TOKEN --claim-cert ... --claim-key ...")
    except (OSError, ValueError) as exc:
        return _fail(name, f"{m.cert_file}: not a PEM certificate ({exc})", "enrol again")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != config.device.id:
        return _fail(name, f"{m.cert_file} is for {cn[0].value if cn else 'no name'!r}, not "
                     f"{config.device.id!r}", "enrol this device with its own token")
    try:
        key = serialization.load_pem_private_key(Path(m.key_file).read_bytes(), None)
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            return _fail(name, f"{m.cert_file} does not belong to the key {m.key_file}",
                         "renew (cocoon-agent renew) or enrol again with --force")
    except (OSError, ValueError, TypeError) as exc:
        return _fail(name, f"cannot read the TLS key {m.key_file}: {exc}", "provision again")
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(
            Path(m.ca_file).read_bytes()))
    except (OSError, ValueError, TypeError, InvalidSignature):
        return _fail(name, f"{m.cert_file} was not issued by the CA in {m.ca_file}",
                     "install the right CA from the bundle (provision --bundle), or enrol "
                     "again")
    now = time.time()
    if cert.not_valid_before_utc.timestamp() > now:
        return _fail(name, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                     "the clock is probably wrong: see the clock check")
    days = (cert.not_valid_after_utc.timestamp() - now) / 86400
    until = f"{cert.not_valid_after_utc:%Y-%m-%d}"
    if days <= 0:
        return _fail(name, f"expired on {until}", "enrol again with a new token")
    if days < warn_days:
        return _warn(name, f"expires in {days:.1f} days ({until})",
                     "cocoon-agent renew (the agent renews by itself when connected)")
    return _ok(name, f"CN={config.device.id}, valid for {days:.0f} more days ({until})")


# -- this machine ----------------------------------------------------------------------------

def check_configuration(config) -> CheckResult:
    """Every key of the file is one this version reads. The agent runs without the others,
    so a misspelt key silently falls back to its default: the technician must hear of it."""
    unknown = config.unknown_keys
    if not unknown:
        return _ok("configuration", f"{config.path}: every key is known")
    return _fail("configuration", "; ".join(str(u) for u in unknown),
                 "correct or remove these keys: the agent ignores them and uses the defaults")


def check_clock(synced: Callable[[], bool] = wall_clock_synced) -> CheckResult:
    if synced():
        return _ok("clock", "synchronised (NTP)")
    return _fail("clock", "not synchronised: events are flagged and the certificate check "
                 "may fail", "enable time synchronisation: timedatectl set-ntp true, and let "
                 "the device reach an NTP server")


def _existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(config, min_free_bytes: int = 64 * MIB) -> CheckResult:
    """Free space where the outbox lives, against what a full outbox could still take."""
    data_dir = config.device.data_dir
    usage = shutil.disk_usage(_existing(data_dir))
    used = 0
    if config.outbox_path.exists():
        used = sum(p.stat().st_size for p in data_dir.glob("outbox.sqlite*") if p.is_file())
    room = max(0, config.outbox.capacity_bytes - used)
    detail = f"{usage.free // MIB} MiB free of {usage.total // MIB} MiB on {data_dir}"
    if usage.free < min_free_bytes:
        return _fail("disk", detail, "free space: remove old logs (journalctl --vacuum-size), "
                     "or use a larger card")
    if usage.free < room:
        return _warn("disk", f"{detail}; a full outbox could take {room // MIB} MiB more",
                     "lower [outbox] capacity_bytes or free space")
    return _ok("disk", detail)


def check_outbox(config, warn_age_s: float = 3600, fail_age_s: float = 86400) -> CheckResult:
    """Depth and oldest unacknowledged age, from the outbox's own statistics."""
    from agent.spine.outbox import Outbox

    if not config.outbox_path.exists():
        return _ok("outbox", "no events recorded yet")
    with Outbox(config.outbox_path, device=config.device.id, signer=None,
                capacity_bytes=config.outbox.capacity_bytes) as outbox:
        stats = outbox.stats()
    depth = stats.counts["pending"] + stats.counts["sent"]
    age = stats.oldest_pending_age_s
    detail = (f"{depth} unacknowledged" + (f", oldest {_age(age)} old" if age is not None else "")
              + f", {stats.used_bytes * 100 // max(1, stats.capacity_bytes)}% of capacity, "
              f"acknowledged up to {stats.acked_seq}")
    hint = "check the broker check above; the events go out once the link is up"
    if stats.used_bytes >= stats.capacity_bytes * 9 // 10:
        return _fail("outbox", detail, "nearly full: purchases stop when it is full; " + hint)
    if age is not None and age >= fail_age_s:
        return _fail("outbox", detail, hint)
    if age is not None and age >= warn_age_s:
        return _warn("outbox", detail, hint)
    return _ok("outbox", detail)


def check_token_signer(device) -> CheckResult:
    """The signing key on a PKCS#11 token: the module loads, the PIN opens the token, and the
    key signs (the signer checks one signature against the token's public key)."""
    from agent.contract.signing import load_device_signer
    from agent.errors import CocoonError

    name = "signing key"
    try:
        signer = load_device_signer(device)
    except (CocoonError, OSError) as exc:
        return _fail(name, f"{device.signing_key}: {exc}",
                     "check the token is plugged in, [device] pkcs11_module and the PIN in "
                     "[device] pkcs11_pin_file")
    return _ok(name, f"{signer.alg} key on the token, key id {signer.kid[:16]}...")


def check_key_files(paths: Iterable[Path], user: str | None = None) -> CheckResult:
    """Private keys: present, readable by their owner only, owned by the service user."""
    name = "key files"
    expected = None
    if user:
        try:
            expected = pwd.getpwnam(user)
        except KeyError:
            return _fail(name, f"the service user {user!r} does not exist",
                         "install the package (it creates the user), or useradd --system "
                         f"{user}")
    problems, fixes, ok = [], [], []
    for path in paths:
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            problems.append(f"{path} missing")
            fixes.append("cocoon-agent provision")
            continue
        mode = stat.S_IMODE(st.st_mode)
        good = True
        if mode & 0o077:
            problems.append(f"{path} has mode {mode:04o}")
            fixes.append(f"chmod 600 {path}")
            good = False
        if expected is not None and st.st_uid != expected.pw_uid:
            problems.append(f"{path} is owned by {_user_name(st.st_uid)}, not {user}")
            fixes.append(f"chown {user}: {path}")
            good = False
        if good:
            ok.append(path.name)
    if problems:
        return _fail(name, "; ".join(problems), "; ".join(dict.fromkeys(fixes)))
    owner = f", owner {user}" if user else ""
    return _ok(name, f"{', '.join(ok)}: mode 0600{owner}")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def read_unit(paths: Iterable[Path] = UNIT_DIRS) -> tuple[Path, dict[str, str]] | None:
    """The installed unit file and its [Service] directives (the last value of each)."""
    for directory in paths:
        unit = Path(directory) / UNIT_NAME
        if unit.is_file():
            section, service = None, {}
            for line in unit.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1]
                elif section == "Service" and "=" in line and not line.startswith(("#", ";")):
                    key, _, value = line.partition("=")
                    service[key.strip()] = value.strip()
            return unit, service
    return None


def _seconds(value: str) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|ms)?", value or "")
    if not match:
        return None
    scale = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    return float(match[1]) * scale[match[2]]


def check_unit(paths: Iterable[Path] = UNIT_DIRS) -> CheckResult:
    found = read_unit(paths)
    if found is None:
        return _fail("systemd unit", f"{UNIT_NAME} is not installed",
                     "install the cocoon-agent package (apt install ./cocoon-agent_*.deb)")
    unit, service = found
    watchdog = _seconds(service.get("WatchdogSec", ""))
    if service.get("Type") != "notify":
        return _fail("systemd unit", f"{unit}: Type={service.get('Type', 'simple')}, not notify",
                     "reinstall the package's unit; a local override may have changed it")
    if not watchdog:
        return _fail("systemd unit", f"{unit}: no WatchdogSec: a hung agent would never be "
                     "restarted", "reinstall the package's unit (WatchdogSec=60)")
    return _ok("systemd unit", f"{unit}: Type=notify, WatchdogSec={watchdog:g} s, "
               f"User={service.get('User', 'root')}")


# -- hardware ----------------------------------------------------------------------------------

def check_card_reader(card) -> CheckResult:
    """The configured reader is in the list pcscd gives now."""
    from drivers.pcsc import PcscError, list_readers, select_reader
    from drivers.pcsc.errors import ReaderServiceUnavailable

    name = "card reader"
    try:
        readers = list_readers()
    except ReaderServiceUnavailable as exc:
        return _fail(name, f"pcscd is not available: {exc}",
                     "systemctl start pcscd.socket (apt install pcscd if missing)")
    except PcscError as exc:
        return _fail(name, str(exc), "restart pcscd: systemctl restart pcscd")
    try:
        found = select_reader(card.reader, readers)
    except PcscError as exc:
        return _fail(name, str(exc), "plug the reader in (lsusb shows it), or fix [card] "
                     "reader to a unique part of its name")
    return _ok(name, f"{found!r} present ({len(readers)} reader(s) in all)")


def check_scale(scale, seconds: float = 3.0) -> CheckResult:
    """Read the scale, wherever it is (its port, or the field box's load cell: the source is
    opened as the station opens it), until a stable weight or `seconds` pass. Indicators that
    answer only when asked are asked by their reader."""
    from drivers.scale import FrameError, LinkEvent, LinkState, Reading, StabilityDetector
    from firmware_bridge.sources import COPROC, SCALE, open_source

    name, where = "scale", f"{scale.port} ({scale.protocol})"
    events: queue.Queue = queue.Queue()
    reader = open_source(SCALE, scale.port, scale.protocol, on_event=events.put,
                         baudrate=scale.baudrate, name="doctor-scale")
    detector = StabilityDetector(scale.stable_count, scale.stable_window_s)
    readings = rejected = 0
    last_error, link_detail, stable = "", "", None
    deadline = time.monotonic() + seconds
    reader.start()
    try:
        while stable is None and time.monotonic() < deadline:
            try:
                event = events.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(event, LinkEvent):
                if event.state in (LinkState.LOST, LinkState.CLOSED) and event.detail:
                    link_detail = event.detail
                    if event.state is LinkState.CLOSED:
                        break
            elif isinstance(event, FrameError):
                rejected += 1
                last_error = str(event)
            elif isinstance(event, Reading):
                readings += 1
                if detector.feed(event, time.monotonic()).stable:
                    stable = event
    finally:
        reader.stop()
    if stable is not None:
        return _ok(name, f"{where}: stable {stable.weight} {stable.unit.value} after "
                   f"{readings} reading(s), {rejected} frame(s) rejected")
    if readings:
        return _warn(name, f"{where}: {readings} reading(s) but no stable weight within "
                     f"{seconds:g} s", "keep the platform still and empty; if it never settles, "
                     "check the indicator's filter setting")
    if rejected:
        return _fail(name, f"{where}: {rejected} frame(s), none valid ({last_error})",
                     "wrong protocol or baud rate: compare with cocoon-agent scale watch "
                     f"--port {shlex.quote(scale.port)} --protocol "
                     f"{shlex.quote(scale.protocol)}")
    if link_detail:
        return _fail(name, f"{where}: {link_detail}", "check the USB adapter and cable, and "
                     "[scale] port (ls /dev/ttyUSB*); the service user needs group dialout")
    if scale.protocol == COPROC:
        return _fail(name, f"{where}: no weight from the field box's load cell in "
                     f"{seconds:g} s", "check the co-processor (see its check) and the load "
                     "cell's wiring")
    return _fail(name, f"{where}: the port opened but the scale sent nothing in {seconds:g} s"
                 + (f" ({last_error})" if last_error else ""),
                 "switch the indicator on and check its serial output setting and baud rate")


def check_screen(screen, timeout_s: float = 5.0) -> CheckResult:
    """The clerk's screen answers on its address with its page, in its language: the running
    agent serves it ([screen]), so a stopped agent fails this check too."""
    import http.client

    name = "clerk's screen"
    if screen.port == 0:
        return _warn(name, "[screen] port = 0: any free port, found at each start",
                     "set [screen] port (8480) so that the kiosk can find the screen")
    where = f"http://{screen.local_host}:{screen.port}/"
    conn = http.client.HTTPConnection(screen.local_host, screen.port, timeout=timeout_s)
    try:
        conn.request("GET", "/")
        reply = conn.getresponse()
        page = reply.read(65536).decode("utf-8", "replace")
    except OSError as exc:
        return _fail(name, f"{where} does not answer: {exc}",
                     "start the agent (systemctl start cocoon-agent): it serves the screen")
    finally:
        conn.close()
    lang = re.search(r'<html lang="([^"]*)"', page)
    if reply.status != 200 or 'name="cocoon-token"' not in page or lang is None:
        return _fail(name, f"{where} answers HTTP {reply.status}, but not with the clerk's "
                     "screen", f"another program holds port {screen.port}: stop it, or set "
                     "[screen] port (and the kiosk's COCOON_SCREEN_PORT) to a free one")
    if lang.group(1) != screen.language:
        return _warn(name, f"{where} speaks {lang.group(1)}, the file says {screen.language}",
                     "restart the agent to apply [screen] language")
    return _ok(name, f"{where} answers ({screen.language})")


def check_remote_screen(screen, data_dir: Path, timeout_s: float = 5.0) -> CheckResult:
    """The screen for other devices ([screen] listen on the network): its password and
    certificate are set up, the certificate names the station as configured and is not about
    to end, and the TLS port answers with the login page under the first name."""
    import http.client
    import socket
    from datetime import datetime, timezone

    from agent.screen.remote import cert_files, certificate_facts, host_header, password_file

    name = "remote screens"
    cert_path, key_path = cert_files(data_dir)
    if not password_file(data_dir).is_file():
        return _fail(name, "no password is set: remote screens are not served",
                     "cocoon-agent screen password, then restart the agent")
    if not (cert_path.is_file() and key_path.is_file()):
        return _fail(name, "no TLS certificate: remote screens are not served",
                     "cocoon-agent screen certificate, then restart the agent")
    try:
        fingerprint, names, until = certificate_facts(cert_path)
    except (OSError, ValueError) as exc:
        return _fail(name, f"{cert_path} cannot be read: {exc}",
                     "make it again: cocoon-agent screen certificate --force")
    where = f"https://{host_header(screen.names[0], screen.tls_port)}/"
    host = "127.0.0.1" if screen.listen in ("0.0.0.0", "") else \
        "::1" if screen.listen == "::" else screen.listen
    context = ssl.create_default_context(cafile=str(cert_path))
    try:
        with socket.create_connection((host, screen.tls_port), timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=screen.names[0]) as tls:
            conn = http.client.HTTPConnection(host, screen.tls_port, timeout=timeout_s)
            conn.sock = tls
            conn.request("GET", "/login",
                         headers={"Host": host_header(screen.names[0], screen.tls_port)})
            reply = conn.getresponse()
            page = reply.read(65536).decode("utf-8", "replace")
    except ssl.SSLCertVerificationError as exc:
        return _fail(name, f"{where}: the certificate served is not this device's {cert_path} "
                     f"for {screen.names[0]} ({exc.verify_message})",
                     "restart the agent after making the certificate; "
                     "cocoon-agent screen show says what it names")
    except (OSError, ssl.SSLError) as exc:
        return _fail(name, f"{where} does not answer over TLS: {exc}",
                     "start the agent; its log says why remote screens are not served")
    if reply.status != 200 or 'name="password"' not in page:
        return _fail(name, f"{where} answers HTTP {reply.status}, but not with the login",
                     f"another program holds port {screen.tls_port}: set [screen] tls_port")
    missing = sorted(set(screen.names) - set(names))
    left = (until - datetime.now(timezone.utc)).days
    if missing:
        return _warn(name, f"{where} answers; the certificate does not name "
                     f"{', '.join(missing)}", "cocoon-agent screen certificate --force")
    if left < 30:
        return _warn(name, f"{where} answers; its certificate ends in {left} days",
                     "cocoon-agent screen certificate --force, then check the new "
                     "fingerprint on each tablet")
    return _ok(name, f"{where} answers with its login; certificate {fingerprint[:23]}..., "
               f"{left} days left")
