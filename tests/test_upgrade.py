"""A station made by the previous release comes up selling after an upgrade.

tests/fixtures/upgrade-0.1.0/ holds what release 0.1.0 left behind after three sales (its
README says how it was made): the station's agent.toml as that version wrote it, its data
directory (the outbox with its chain, sales, vouchers, blacklist and seen commands, the signing
key, the price tables), the bank's ingest store and keys, the bench's cards, and that release's
source tree. Only the broker's port and the folder the files were made in are filled in; the
certificates are issued afresh, since a test must not expire.

Both paths a fielded station takes are run through the production code: this version started
on those files as they are, and the previous release's own updater installing this version
from a signed bundle. Each time the clerk then sells, and the bank verifies the sale as the
next link of the device's chain.
"""

import json
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

from agent.config import load_config
from agent.contract.signing import generate_key_file
from agent.fleet.release.bundle import build_bundle
from tests.test_release import make_tree

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "upgrade-0.1.0"
DEVICE = "station-01"
OLD_HEAD = 6                     # the last seq the previous release recorded (3 sales)
OLD_VOUCHERS = {f"station-01-20261207-000{n}" for n in (1, 2, 3)}


def bring_up_and_sell(site: Path, *args: str) -> dict:
    """tests/support/upgrade_station.py in a process of its own (its own pcscd)."""
    done = subprocess.run([sys.executable, "-m", "tests.support.upgrade_station", str(site),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def assert_sold_on_the_old_chain(site: Path, voucher: str) -> None:
    """The bank verified the new sale as a later link of the same chain (nothing rejected)
    and the station kept every sale and voucher of the previous release."""
    assert voucher not in OLD_VOUCHERS
    store = site / "ingest" / "ingest.sqlite"
    sales = rows(store, f"SELECT seq, payload FROM events WHERE device = '{DEVICE}' AND "
                        "type = 'purchase.recorded' ORDER BY seq")
    assert len(sales) == 4
    seq, payload = sales[-1]
    assert seq > OLD_HEAD and json.loads(payload)["body"]["voucher"] == voucher
    ((watermark, rejected),) = rows(store, "SELECT watermark, rejected FROM devices "
                                           f"WHERE device = '{DEVICE}'")
    assert watermark >= seq and rejected == 0
    config = load_config(site / "devices" / DEVICE / "agent.toml")
    assert config.unknown_keys == ()        # the previous release's file: every key known
    vouchers = {v for (v,) in rows(config.outbox_path, "SELECT voucher FROM sales")}
    assert vouchers == OLD_VOUCHERS | {voucher}


def test_this_version_sells_on_the_previous_releases_files(tmp_path):
    site = tmp_path / "site"
    result = bring_up_and_sell(site, "direct")
    assert_sold_on_the_old_chain(site, result["voucher"])


def new_release_bundle(tmp_path: Path, vendor_key: Path, version: str) -> Path:
    """This tree, declaring `version`, signed by the vendor: what a new release ships."""
    tree = make_tree(tmp_path / f"src-{version}", version)
    bundle = tmp_path / f"cocoon-agent-{version}.tar.gz"
    build_bundle(tree, vendor_key, bundle)
    return bundle


def test_the_previous_releases_updater_installs_this_version_which_sells(tmp_path):
    with tarfile.open(FIXTURE / "release-0.1.0.tar.xz") as archive:
        archive.extractall(tmp_path / "previous")   # our own fixture (Debian 12: no `filter`)
    old_tree = tmp_path / "previous" / "cocoon-agent-0.1.0"
    vendor_key = tmp_path / "vendor.key"
    vendor_key.with_suffix(".pem").write_bytes(generate_key_file(vendor_key).public_key_pem())
    bundle = new_release_bundle(tmp_path, vendor_key, "0.2.0")
    site = tmp_path / "site"
    result = bring_up_and_sell(site, "release", str(old_tree), str(vendor_key), str(bundle),
                               str(tmp_path / "opt"))
    assert result["release"] == {"outcome": "confirmed", "starts": ["0.1.0", "0.2.0"],
                                 "previous": "0.1.0", "current": "releases/0.2.0"}, result
    assert_sold_on_the_old_chain(site, result["voucher"])
    types = {t for (t,) in rows(site / "ingest" / "ingest.sqlite",
                                f"SELECT type FROM events WHERE device = '{DEVICE}'")}
    assert {"release.verified", "release.installed", "release.switched",
            "release.confirmed"} <= types
