"""Remote screens: the clerk's screen (or the warehouse's dashboard) for other devices of the
station's network, only over TLS and only after a login by the device's own password.

The station's kiosk reads the screen on loopback, where the staff card is the login: whoever
touches that screen stands at the bench. A tablet elsewhere is another matter, so a `[screen]
listen` that is not loopback adds a second listener (`tls_port`) that

- speaks TLS only (cheroot's built-in adapter over the standard library's ssl, TLS 1.2 or
  newer), with the certificate a technician made on the device (`cocoon-agent screen
  certificate`, self-signed for the names in `[screen] names`; its SHA-256 fingerprint is
  printed to be checked on the tablet the first time);
- answers only to those names (a request naming another host is refused: DNS rebinding);
- asks for the per-device password a technician set (`cocoon-agent screen password`; kept as
  an scrypt hash, never a default: without one, no remote screen is served) and gives a
  login cookie (Secure, HttpOnly, SameSite=Strict) for LOGIN_S;
- slows guessing down: after MAX_FAILURES wrong passwords in FAILURE_WINDOW_S, no password is
  even checked for LOCKOUT_S, and each failure is logged with the address it came from.

Behind the login, the same application serves the same pages: an action still needs the page's
session token, a request from the page's own origin and a clerk signed in by staff card on the
station's reader. This is the one module that imports cheroot (waitress has no TLS).
"""

from __future__ import annotations

import base64
import html
import logging
import os
import secrets
import ssl
import sys
import threading
import time
from collections import OrderedDict, deque
from datetime import datetime, timedelta, timezone
from http.cookies import CookieError, SimpleCookie
from ipaddress import ip_address
from pathlib import Path
from string import Template
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import CocoonError
from agent.screen.config import ScreenConfig
from agent.screen.i18n import Language

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
LOGIN_COOKIE = "cocoon_login"
LOGIN_S = 12 * 3600          # a login lasts a working day (and ends when the agent restarts)
MAX_LOGINS = 32
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
LOCKOUT_S = 60.0
MIN_PASSWORD = 10
CERT_DAYS = 5 * 365
# scrypt as RFC 7914 recommends for interactive logins; 16 MiB, about 0.1 s on a Raspberry Pi 4.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
HSTS = ("Strict-Transport-Security", "max-age=31536000")
PAGES_BEHIND_LOGIN = ("/", "/farmer", "/dashboard")


class RemoteAccessError(CocoonError):
    """The remote screens cannot be served or set up: what is missing, and what to run."""


# -- the files a technician makes on the device -----------------------------------------------

def access_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "screen"


def password_file(data_dir: Path) -> Path:
    return access_dir(data_dir) / "password"


def cert_files(data_dir: Path) -> tuple[Path, Path]:
    return access_dir(data_dir) / "tls.pem", access_dir(data_dir) / "tls.key"


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$key`, salt and key in base64."""
    salt = os.urandom(16)
    key = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(
        password.encode("utf-8"))
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(key).decode()])


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.strip().split("$")
        if scheme != "scrypt":
            return False
        Scrypt(salt=base64.b64decode(salt), length=32, n=int(n), r=int(r), p=int(p)).verify(
            password.encode("utf-8"), base64.b64decode(key))
    except (ValueError, InvalidKey):
        return False
    return True


def weak_password(password: str, device_id: str) -> str | None:
    """Why `password` will not do, or None."""
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters"
    if len(set(password)) < 4:
        return "more than a few different characters"
    if device_id and device_id.lower() in password.lower():
        return "not the device's id"
    return None


def _write_private(path: Path, data: bytes, owner_of: Path) -> None:
    """Write `data` readable only by the owner of `owner_of` (the agent's state directory, so
    that a root technician's file is the service user's), replacing any earlier file whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        st = owner_of.stat()
        for item in (path.parent, tmp):
            os.chown(item, st.st_uid, st.st_gid)
    os.replace(tmp, path)


def set_password(data_dir: Path, password: str, device_id: str = "") -> Path:
    reason = weak_password(password, device_id)
    if reason is not None:
        raise RemoteAccessError(f"the screen's password needs {reason}")
    path = password_file(data_dir)
    _write_private(path, (hash_password(password) + "\n").encode(), Path(data_dir))
    return path


def make_certificate(data_dir: Path, names: tuple[str, ...], device_id: str,
                     days: int = CERT_DAYS) -> Path:
    """A new P-256 key and a self-signed certificate for `names` (host names and addresses)."""
    if not names:
        raise RemoteAccessError("the certificate needs the names the other devices use: "
                                "[screen] names, or --name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                            f"cocoon-agent {device_id}".strip())])
    alt = [x509.IPAddress(ip_address(n)) if _is_address(n) else x509.DNSName(n) for n in names]
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = cert_files(data_dir)
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), Path(data_dir))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), Path(data_dir))
    return cert_path


def certificate_facts(cert_path: Path) -> tuple[str, tuple[str, ...], datetime]:
    """The certificate's SHA-256 fingerprint (as browsers show it), its names, its end."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        names = ()
    return (":".join(digest[i:i + 2] for i in range(0, len(digest), 2)), names,
            cert.not_valid_after_utc)


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def host_header(name: str, port: int) -> str:
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


# -- the login in front of the application ------------------------------------------------------

class Throttle:
    """Wrong passwords: after MAX_FAILURES in FAILURE_WINDOW_S, none is checked for LOCKOUT_S."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._failures: deque[float] = deque()
        self._locked_until = 0.0
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        with self._lock:
            return max(0.0, self._locked_until - self.clock())

    def failed(self) -> bool:
        """Count a failure; True when it locks the login."""
        with self._lock:
            now = self.clock()
            self._failures.append(now)
            while self._failures and self._failures[0] < now - FAILURE_WINDOW_S:
                self._failures.popleft()
            if len(self._failures) >= MAX_FAILURES:
                self._failures.clear()
                self._locked_until = now + LOCKOUT_S
                return True
            return False

    def succeeded(self) -> None:
        with self._lock:
            self._failures.clear()


class LoginGate:
    """WSGI middleware: the remote listener's host check and login, then the application."""

    def __init__(self, app, config: ScreenConfig, password_hash: str, port: int,
                 clock=time.monotonic):
        self.app, self.config, self.password_hash = app, config, password_hash
        self.port, self.clock = port, clock
        self.lang = Language(config.language)
        self.throttle = Throttle(clock)
        self._logins: OrderedDict[str, float] = OrderedDict()   # cookie -> valid until
        self._lock = threading.Lock()
        self._page = Template((STATIC / "login.html").read_text(encoding="utf-8"))

    def hosts(self) -> set[str]:
        return {host_header(name, self.port) for name in self.config.names}

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
        if environ.get("HTTP_HOST", "") not in self.hosts():
            return _reply(start_response, "421 Misdirected Request", "text/plain; charset=utf-8",
                          f"this screen answers as {', '.join(sorted(self.hosts()))} only"
                          .encode())
        if path == "/login":
            if method == "POST":
                return self._login(environ, start_response)
            return self._login_page(start_response, "200 OK", "", _next(environ))
        if path == "/static/screen.css":          # the login page's own style
            return self.app(environ, start_response)
        if not self._logged_in(environ):
            if method == "GET" and path in PAGES_BEHIND_LOGIN:
                return _reply(start_response, "303 See Other", "text/plain; charset=utf-8",
                              b"", [("Location", f"/login?next={path}")])
            return _reply(start_response, "401 Unauthorized", "application/json",
                          b'{"ok": false, "error": "log in first"}')
        if path == "/logout" and method == "POST":
            return self._logout(environ, start_response)
        environ["cocoon.remote"] = True      # the host was checked here, against `names`

        def with_hsts(status, headers, exc_info=None):
            return start_response(status, [*headers, HSTS], exc_info)

        return self.app(environ, with_hsts)

    # -- login and logout -------------------------------------------------------------

    def _login(self, environ, start_response):
        _ = self.lang._
        origin = environ.get("HTTP_ORIGIN")
        if (origin is not None and origin != f"https://{environ['HTTP_HOST']}") or \
                environ.get("HTTP_SEC_FETCH_SITE", "same-origin") not in ("same-origin", "none"):
            return _reply(start_response, "403 Forbidden", "text/plain; charset=utf-8",
                          b"cross-site request refused")
        form = _form(environ)
        target = form.get("next", "/")
        target = target if target in PAGES_BEHIND_LOGIN else "/"
        peer = environ.get("REMOTE_ADDR", "?")
        wait = self.throttle.wait_s()
        if wait > 0:
            return self._login_page(start_response, "429 Too Many Requests",
                                    _("Too many wrong passwords: try again in a minute"), target,
                                    [("Retry-After", str(int(wait) + 1))])
        if not check_password(self.password_hash, form.get("password", "")):
            locked = self.throttle.failed()
            log.warning("screen: wrong password from %s%s", peer,
                        f"; logins refused for {int(LOCKOUT_S)} s" if locked else "")
            return self._login_page(start_response, "403 Forbidden",
                                    _("Wrong password"), target)
        self.throttle.succeeded()
        cookie = secrets.token_urlsafe(32)
        with self._lock:
            self._logins[cookie] = self.clock() + LOGIN_S
            while len(self._logins) > MAX_LOGINS:
                self._logins.popitem(last=False)
        log.info("screen: logged in from %s", peer)
        return _reply(start_response, "303 See Other", "text/plain; charset=utf-8", b"",
                      [("Location", target),
                       ("Set-Cookie", f"{LOGIN_COOKIE}={cookie}; Path=/; Secure; HttpOnly; "
                                      f"SameSite=Strict; Max-Age={LOGIN_S}")])

    def _logout(self, environ, start_response):
        with self._lock:
            self._logins.pop(_cookie(environ, LOGIN_COOKIE) or "", None)
        return _reply(start_response, "303 See Other", "text/plain; charset=utf-8", b"",
                      [("Location", "/login"),
                       ("Set-Cookie", f"{LOGIN_COOKIE}=; Path=/; Secure; HttpOnly; "
                                      "SameSite=Strict; Max-Age=0")])

    def _logged_in(self, environ) -> bool:
        cookie = _cookie(environ, LOGIN_COOKIE)
        if cookie is None:
            return False
        with self._lock:
            until = self._logins.get(cookie)
            if until is not None and until < self.clock():
                del self._logins[cookie]
                until = None
        return until is not None

    def _login_page(self, start_response, status: str, error: str, target: str, headers=()):
        _ = self.lang._
        body = self._page.substitute(
            lang=self.lang.tag, title=html.escape(_("Log in to this station's screen")),
            password=html.escape(_("Password")), submit=html.escape(_("Log in")),
            hint=html.escape(_("The password was set by the technician who installed the "
                               "station")),
            error=html.escape(error), error_hidden="" if error else "hidden",
            next=html.escape(target))
        return _reply(start_response, status, "text/html; charset=utf-8", body.encode("utf-8"),
                      headers)


def _next(environ) -> str:
    target = parse_qs(environ.get("QUERY_STRING", "")).get("next", ["/"])[0]
    return target if target in PAGES_BEHIND_LOGIN else "/"


def _form(environ) -> dict[str, str]:
    """The login form's fields (at most 4 KiB read)."""
    try:
        size = min(int(environ.get("CONTENT_LENGTH") or 0), 4096)
        raw = environ["wsgi.input"].read(size).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return {}
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _cookie(environ, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def _reply(start_response, status: str, kind: str, body: bytes, headers=()):
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body))),
                            ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                            ("Content-Security-Policy", "default-src 'self'; style-src 'self'; "
                                                        "script-src 'self'; connect-src 'self'"),
                            HSTS,
                            ("Cache-Control", "no-store"), *headers])
    return [body]


# -- the TLS listener -----------------------------------------------------------------------------

def _cheroot_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    """cheroot's own messages (a client speaking plain HTTP to the TLS port, a failed
    handshake) into the agent's log rather than onto standard error."""
    error = sys.exc_info()[1] if traceback else None
    if isinstance(error, OSError):      # a tablet that went away (mid-stream, mid-handshake)
        log.debug("screen (TLS): %s: %s", msg.strip(), error)
        return
    log.log(level, "screen (TLS): %s", msg.strip(), exc_info=traceback)


class RemoteServer:
    """The second listener: cheroot with TLS, serving `app` behind the login."""

    def __init__(self, app, config: ScreenConfig, data_dir: Path, threads: int):
        cert, key = cert_files(data_dir)
        secret = password_file(data_dir)
        missing = [what for what, path in (
            ("a password (cocoon-agent screen password)", secret),
            ("a certificate (cocoon-agent screen certificate)", cert),
            ("the certificate's key (cocoon-agent screen certificate)", key))
            if not path.is_file()]
        if missing:
            raise RemoteAccessError("remote screens are not served: this device has no "
                                    + " and no ".join(missing))
        try:
            password_hash = secret.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise RemoteAccessError(f"remote screens are not served: cannot read {secret}: "
                                    f"{exc}") from None
        if not password_hash.startswith("scrypt$"):
            raise RemoteAccessError(f"remote screens are not served: {secret} is not a "
                                    "password hash; set it again (cocoon-agent screen password)")
        from cheroot import wsgi
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        try:
            adapter = BuiltinSSLAdapter(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise RemoteAccessError(f"remote screens are not served: the certificate {cert} "
                                    f"or its key cannot be used: {exc}") from None
        adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.gate = LoginGate(app, config, password_hash, config.tls_port)
        self.server = wsgi.Server((config.listen, config.tls_port), self.gate,
                                  numthreads=threads, server_name="cocoon-agent", timeout=60,
                                  shutdown_timeout=3)
        self.server.ssl_adapter = adapter
        self.server.error_log = _cheroot_log
        try:
            self.server.prepare()          # binds now, so that a busy port is said at start
        except OSError as exc:
            raise RemoteAccessError(f"remote screens are not served: cannot listen on "
                                    f"{config.listen}:{config.tls_port} ({exc}): another "
                                    "program holds the port? Set [screen] tls_port") from None
        self.port = self.server.bind_addr[1]
        self.gate.port = self.port

    def serve(self) -> None:
        self.server.serve()

    def close(self) -> None:
        self.server.stop()

