"""`[store] url`: which database the ingest stores in, and what it says when it cannot."""

import json
from pathlib import Path

import pytest

from agent.contract.errors import ConfigError
from agent.contract.events import Draft, seal
from agent.contract.signing import Ed25519Signer, Verifier
from ingest.config import load_ingest_config
from ingest.store import IngestStore, open_store
from tests.support.postgres import free_port
from tests.support.running import cli

ROOT = Path(__file__).resolve().parent.parent


def ingest_toml(tmp_path, store: str = "") -> Path:
    text = (ROOT / "config" / "ingest.example.toml").read_text()
    text = text.replace('"/var/lib/cocoon-ingest"', f'"{tmp_path / "data"}"')
    path = tmp_path / "ingest.toml"
    path.write_text(text + store)
    return path


def test_without_a_url_the_store_is_the_sqlite_file(tmp_path):
    settings = load_ingest_config(ingest_toml(tmp_path)).require_ingest()
    assert settings.store_url is None
    store = open_store(settings)
    try:
        assert store.path == tmp_path / "data" / "ingest.sqlite" and store.path.exists()
    finally:
        store.close()


def test_a_url_of_another_database_is_refused(tmp_path):
    path = ingest_toml(tmp_path, '\n[store]\nurl = "mysql://bank@db/cocoon"\n')
    with pytest.raises(ConfigError, match=r"\[store\] url.*postgres\(ql\)\?://"):
        load_ingest_config(path)
    path = ingest_toml(tmp_path, '\n[store]\nurl = "postgresql://db/cocoon"\nurll = 1\n')
    with pytest.raises(ConfigError, match="urll"):
        load_ingest_config(path)


def test_status_reads_the_store_the_configuration_names(tmp_path, ingest_store_location):
    store_section = ("" if isinstance(ingest_store_location, Path)
                     else f'\n[store]\nurl = "{ingest_store_location}"\n')
    config = ingest_toml(tmp_path, store_section)
    assert (load_ingest_config(config).require_ingest().store_url is None) == (
        store_section == "")
    signer = Ed25519Signer.generate()
    event = seal(Draft("purchase.recorded", "money", {"amount": "12.50"}), device="st-01",
                 seq=1, prev="0" * 64, signer=signer)
    store = open_store(load_ingest_config(config).require_ingest())
    try:
        (outcome,), _ = store.process_batch(
            [("cocoon/v1/st-01/events", json.dumps(event).encode())],
            {"st-01": Verifier.from_pem(signer.public_key_pem())})
        assert outcome.status == "accepted"
    finally:
        store.close()
    done = cli("cocoon-ingest", "--config", config, "status", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert (row["device"], row["watermark"], row["accepted"]) == ("st-01", 1, 1)


def test_an_unreachable_database_is_one_clear_line_without_its_password(tmp_path):
    url = f"postgresql://bank:s3cret@127.0.0.1:{free_port()}/cocoon"
    done = cli("cocoon-ingest", "--config", ingest_toml(tmp_path, f'\n[store]\nurl = "{url}"\n'),
               "status")
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"error: cannot open the store {url.replace('s3cret', '***')}: "), done.stderr
    assert "s3cret" not in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(ConfigError, match="cannot open the store"):
        IngestStore(url)
