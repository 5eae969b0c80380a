"""Remote screens: with `[screen] listen` on the network, the clerk's screen is served to other
devices only over TLS (cheroot), only under the names in `[screen] names`, and only after a
login by the per-device password a technician set; the kiosk's loopback screen is unchanged.
The station is the real one on simulated hardware; the TLS client trusts the device's own
certificate (checked by name), as a tablet set up by the technician would."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import ssl
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from agent.cli.main import cli
from agent.errors import ConfigError
from agent.fleet.doctor_checks import Status, check_remote_screen
from agent.screen import remote
from agent.screen.config import ScreenConfig, parse_screen
from agent.screen.remote import (
    LoginGate,
    RemoteAccessError,
    RemoteServer,
    certificate_facts,
    check_password,
    make_certificate,
    set_password,
)
from tests.support.browser import chromium, need_chromium
from tests.support.screen_station import start_screen_station
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)
CONFIG = Path("/etc/cocoon-agent/agent.toml")
NAME = "station-01.test"
PASSWORD = "silk-road-7431"


# -- the section -----------------------------------------------------------------------------

def test_a_screen_on_the_network_says_how_it_is_reached():
    config = parse_screen(CONFIG, {"listen": "192.168.1.20"})
    assert config.remote and config.names == ("192.168.1.20",) and config.tls_port == 8443
    assert config.local_host == "127.0.0.1"          # the kiosk's screen stays on loopback
    config = parse_screen(CONFIG, {"listen": "0.0.0.0", "names": ["Station-07.local", "::1"]})
    assert config.names == ("station-07.local", "::1")
    local = parse_screen(CONFIG, {"listen": "::1"})
    assert not local.remote and local.local_host == "::1"


@pytest.mark.parametrize("table, words", [
    ({"listen": "0.0.0.0"}, "by which names or addresses"),
    ({"listen": "station.local"}, "an address of this device"),
    ({"listen": "0.0.0.0", "names": ["a b"]}, "host names or addresses"),
    ({"listen": "0.0.0.0", "names": ["x"], "tls_port": 8480}, "must be another one"),
])
def test_a_remote_screen_badly_said_is_refused(table, words):
    with pytest.raises(ConfigError, match=words):
        parse_screen(CONFIG, table)


# -- the technician's files ------------------------------------------------------------------

def test_the_password_is_kept_as_an_scrypt_hash_readable_by_the_agent_only(tmp_path):
    for weak, why in (("short", "at least 10"), ("aaaaaaaaaaaa", "different characters"),
                      ("station-01-pass", "device's id")):
        with pytest.raises(RemoteAccessError, match=why):
            set_password(tmp_path, weak, "station-01")
    path = set_password(tmp_path, PASSWORD, "station-01")
    stored = path.read_text().strip()
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert check_password(stored, PASSWORD)
    assert not check_password(stored, PASSWORD + "x")
    assert not check_password("plain text", PASSWORD)
    assert set_password(tmp_path, "another-one-9", "station-01").read_text() != stored + "\n"


def test_the_certificate_names_the_station_as_the_tablets_reach_it(tmp_path):
    cert_path = make_certificate(tmp_path, ("station-01.test", "192.168.1.20"), "station-01")
    fingerprint, names, until = certificate_facts(cert_path)
    assert names == ("station-01.test", "192.168.1.20")
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint)
    assert (until - datetime.now(timezone.utc)).days >= 5 * 365 - 1
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    key = remote.cert_files(tmp_path)[1]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(RemoteAccessError, match="names"):
        make_certificate(tmp_path, (), "station-01")


def test_without_the_technicians_files_no_remote_screen_is_served(tmp_path):
    config = ScreenConfig("0.0.0.0", 0, "en", (NAME,), 0)
    with pytest.raises(RemoteAccessError, match="no a password .* and no a certificate"):
        RemoteServer(lambda e, s: [], config, tmp_path, 2)
    set_password(tmp_path, PASSWORD)
    remote.password_file(tmp_path).write_text("hunter2\n")
    make_certificate(tmp_path, (NAME,), "station-01")
    with pytest.raises(RemoteAccessError, match="not a password hash"):
        RemoteServer(lambda e, s: [], config, tmp_path, 2)


# -- the login, on its own clock -------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def call(gate, method, path, body=b"", **headers):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path.split("?")[0],
               "QUERY_STRING": path.partition("?")[2], "wsgi.url_scheme": "https",
               "HTTP_HOST": f"{NAME}:8443", "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "192.168.1.50",
               **{f"HTTP_{k.upper()}": v for k, v in headers.items()}}
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    out = b"".join(gate(environ, start_response))
    return int(seen["status"][:3]), seen["headers"], out.decode()


def test_wrong_passwords_lock_the_login_for_a_minute_and_a_login_ends(tmp_path):
    clock = Clock()
    inner = []
    gate = LoginGate(lambda e, s: inner.append(e) or s("200 OK", []) or [b"app"],
                     ScreenConfig("0.0.0.0", 8480, "zh-CN", (NAME,), 8443),
                     remote.hash_password(PASSWORD), 8443, clock)
    origin = {"origin": f"https://{NAME}:8443"}
    status, headers, page = call(gate, "GET", "/login?next=/farmer")
    assert status == 200 and '<html lang="zh-CN">' in page and "密码" in page
    assert 'value="/farmer"' in page
    for _ in range(remote.MAX_FAILURES):
        status, _, page = call(gate, "POST", "/login", b"password=guess", **origin)
        assert status == 403 and "密码错误" in page
    status, headers, page = call(gate, "POST", "/login", f"password={PASSWORD}".encode(),
                                 **origin)
    assert status == 429 and headers["Retry-After"] == "61" and "一分钟" in page
    clock.now += remote.LOCKOUT_S + 1
    status, headers, _ = call(gate, "POST", "/login",
                              f"password={PASSWORD}&next=https://evil.example/".encode(),
                              **origin)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert call(gate, "GET", "/state", cookie=cookie)[0] == 200 and inner[-1]["cocoon.remote"]
    clock.now += remote.LOGIN_S + 1
    assert call(gate, "GET", "/state", cookie=cookie)[0] == 401
    assert call(gate, "GET", "/", cookie=cookie)[1]["Location"] == "/login?next=/"
    # A login form posted from another site, or a request naming another host, is refused.
    assert call(gate, "POST", "/login", f"password={PASSWORD}".encode(),
                origin="https://evil.example")[0] == 403
    assert call(gate, "GET", "/login", host="evil.example:8443")[0] == 421
    assert len(inner) == 1


# -- a real station, reached from "another device" --------------------------------------------

def technician(data_dir: Path) -> None:
    """What `cocoon-agent screen password` and `screen certificate` leave on the device."""
    set_password(data_dir, PASSWORD, "station-01")
    make_certificate(data_dir, (NAME,), "station-01")


def technician_by_command(data_dir: Path) -> None:
    """The same, by the technician's commands on the device's configuration."""
    config = str(data_dir.parent / "agent.toml")
    weak = CliRunner().invoke(cli, ["--config", config, "screen", "password", "--stdin"],
                              input="short\n")
    assert weak.exit_code == 1 and "at least 10 characters" in weak.output
    assert not remote.password_file(data_dir).exists()
    done = CliRunner().invoke(cli, ["--config", config, "screen", "password", "--stdin"],
                              input=PASSWORD + "\n")
    assert done.exit_code == 0, done.output
    made = CliRunner().invoke(cli, ["--config", config, "screen", "certificate"])
    assert made.exit_code == 0, made.output
    assert f"certificate for {NAME} until" in made.output and "SHA-256 fingerprint" in made.output
    again = CliRunner().invoke(cli, ["--config", config, "screen", "certificate"])
    assert "kept the certificate" in again.output


class Tablet:
    """An HTTPS client that trusts the station's certificate and reaches it by its name."""

    def __init__(self, port: int, cert: Path):
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cert))
        self.cookies: dict[str, str] = {}

    def request(self, method, path, body=None, host=None, **headers):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                           context=self.context)
        # Connected here to check the certificate against the station's name, as a browser
        # would (the name resolves to loopback only in this test).
        conn.sock = self.context.wrap_socket(
            socket.create_connection(("127.0.0.1", self.port), 10), server_hostname=NAME)
        try:
            hdrs = {"Host": host or f"{NAME}:{self.port}", **headers}
            if self.cookies:
                hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            conn.request(method, path, body=body, headers=hdrs)
            reply = conn.getresponse()
            for value in reply.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";")[0]
            return reply.status, reply.headers, reply.read().decode()
        finally:
            conn.close()


def test_a_tablet_logs_in_over_tls_and_the_kiosk_needs_no_login(site, services, pty_pair,
                                                                tmp_path, virtual_card, pcscd,
                                                                caplog):
    st = start_screen_station(site, services, pty_pair, tmp_path, virtual_card,
                              screen={"listen": "0.0.0.0", "names": [NAME], "tls_port": 0},
                              before_start=technician_by_command)
    wait_for(lambda: st.screen.remote_url, 10, what="the remote screens served")
    port = st.screen.remote.port
    data_dir = st.running.config.device.data_dir
    config = st.screen.config
    served = ScreenConfig(config.listen, config.port, config.language, config.names, port)
    result = check_remote_screen(served, data_dir)
    assert result.status is Status.OK and "answers with its login" in result.detail, result
    shown = CliRunner().invoke(cli, ["--config", str(data_dir.parent / "agent.toml"), "screen",
                                     "show"])
    assert "password: set" in shown.output and f"certificate: {NAME}" in shown.output
    assert st.screen.remote_url == f"https://{NAME}:{port}/"
    assert st.url.startswith("http://127.0.0.1:")
    cert = remote.cert_files(st.running.config.device.data_dir)[0]
    tablet = Tablet(port, cert)

    # Plain HTTP on the TLS port gets no page.
    with socket.create_connection(("127.0.0.1", port), 5) as raw:
        raw.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}:{port}\r\n\r\n".encode())
        raw.settimeout(5)
        try:
            answer = raw.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert b"cocoon-token" not in answer

    status, headers, _ = tablet.request("GET", "/")
    assert status == 303 and headers["Location"] == "/login?next=/"
    assert tablet.request("GET", "/events")[0] == 401
    assert tablet.request("POST", "/action", json.dumps({"action": "cancel"}),
                          **{"Content-Type": "application/json"})[0] == 401
    assert tablet.request("GET", "/", host=f"evil.example:{port}")[0] == 421
    origin = {"Origin": f"https://{NAME}:{port}",
              "Content-Type": "application/x-www-form-urlencoded"}
    status, _, page = tablet.request("POST", "/login", "password=nope", **origin)
    assert status == 403 and "Wrong password" in page
    assert "wrong password from 127.0.0.1" in caplog.text
    status, headers, _ = tablet.request("POST", "/login", f"password={PASSWORD}&next=/",
                                        **origin)
    assert status == 303 and headers["Location"] == "/"
    login = headers["Set-Cookie"]
    assert all(a in login for a in ("Secure", "HttpOnly", "SameSite=Strict"))

    status, headers, page = tablet.request("GET", "/")
    assert status == 200 and 'name="cocoon-token"' in page
    assert "Secure" in headers["Set-Cookie"] and headers["Strict-Transport-Security"]
    token = re.search(r'name="cocoon-token" content="([^"]+)"', page).group(1)
    status, _, body = tablet.request("GET", "/state")
    assert status == 200 and json.loads(body)["phase"] == "idle"
    act = {"Content-Type": "application/json", "X-Cocoon-Token": token,
           "Origin": f"https://{NAME}:{port}", "Sec-Fetch-Site": "same-origin"}
    # The action reaches the station's flow: the clerk signs in by staff card, as at the kiosk.
    status, _, body = tablet.request("POST", "/action", json.dumps({"action": "cancel"}), **act)
    assert status == 403 and "staff card" in json.loads(body)["error"]
    with st.staff:
        wait_for(lambda: json.loads(tablet.request("GET", "/state")[2])["phase"] == "ready",
                 10, what="the clerk signed in, seen by the tablet")
        status, _, body = tablet.request("POST", "/action", json.dumps({"action": "sign-out"}),
                                         **act)
        assert status == 202, body
    # Another site's page cannot act, even with the login and the token.
    assert tablet.request("POST", "/action", json.dumps({"action": "cancel"}),
                          **{**act, "Origin": "https://evil.example"})[0] == 403

    # The kiosk on loopback: no login, as before.
    conn = http.client.HTTPConnection("127.0.0.1", st.screen.server.effective_port, timeout=10)
    conn.request("GET", "/", headers={"Host": f"127.0.0.1:{st.screen.server.effective_port}"})
    reply = conn.getresponse()
    assert reply.status == 200 and b"cocoon-token" in reply.read()
    conn.close()

    status, headers, _ = tablet.request("POST", "/logout", "", **origin)
    assert status == 303 and tablet.request("GET", "/state")[0] == 401


def test_a_tablet_in_chromium_logs_in_by_touch_and_follows_the_sale_live(
        site, services, pty_pair, tmp_path, virtual_card, pcscd):
    need_chromium()
    st = start_screen_station(site, services, pty_pair, tmp_path, virtual_card,
                              language="zh-CN",
                              screen={"listen": "0.0.0.0", "names": [NAME], "tls_port": 0},
                              before_start=technician)
    wait_for(lambda: st.screen.remote_url, 10, what="the remote screens served")
    with chromium(f"--host-resolver-rules=MAP {NAME} 127.0.0.1") as browser:
        # The tablet was told to trust this certificate (its fingerprint checked by the
        # technician); Playwright stands in for that step.
        ctx = browser.new_context(viewport={"width": 800, "height": 480}, has_touch=True,
                                  ignore_https_errors=True, bypass_csp=True)
        page = ctx.new_page()
        page.goto(st.screen.remote_url)
        assert page.url.endswith("/login?next=/")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        page.tap("#password")
        page.keyboard.type("not the password")
        with page.expect_navigation():
            page.tap("button[type=submit]")
        assert "密码错误" in page.inner_text("#login-error")
        page.fill("#password", "")
        page.tap("#password")
        page.keyboard.type(PASSWORD)
        with page.expect_navigation():
            page.tap("button[type=submit]")
        page.wait_for_function("document.body.dataset.phase === 'idle'", timeout=15000)
        assert page.url == st.screen.remote_url
        assert page.evaluate("document.cookie") == ""          # the cookies are HttpOnly
        with st.staff:
            page.wait_for_function("document.body.dataset.phase === 'ready'", timeout=15000)
        st.farmer.insert()
        page.wait_for_function("document.body.dataset.phase === 'weighing'", timeout=15000)
        st.sim.set_target("31.20")
        page.wait_for_function("document.getElementById('gross').textContent.includes('31.2')",
                               timeout=15000)
        st.farmer.remove()
        ctx.close()
