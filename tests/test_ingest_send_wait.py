"""`cocoon-ingest send-command --wait S`: the device's verified answer, read from the ingest's
store, printed as `accepted`, `refused`, `failed` or `no answer`, each with its exit code;
through a real agent, Mosquitto and the ingest, on SQLite and PostgreSQL."""

import json
import tomllib

from agent.contract.errors import CocoonError
from agent.demo.sandbox import write_toml
from tests.support.running import add_device, cli

DEV, SILENT = "station-01", "station-02"


def operator_with_store(site):
    """The operator's [mqtt] with the ingest's [ingest] (and [store]), beside the ingest's file
    so that its relative paths mean the same."""
    ingest = tomllib.loads(site.ingest_config.read_text())
    operator = tomllib.loads(site.operator_config.read_text())
    sections = {"ingest": ingest["ingest"], "mqtt": operator["mqtt"]}
    if "store" in ingest:
        sections["store"] = ingest["store"]
    return write_toml(site.ingest_config.parent / "operator-wait.toml", sections)


def send(site, config, device, body, *extra, wait=15):
    return cli("cocoon-ingest", "--config", config, "send-command", "--key", site.bank_key,
               "--device", device, "--type", "payment.confirmed", "--body", json.dumps(body),
               "--wait", wait, *extra, timeout=60)


def test_send_command_waits_for_the_device_s_answer(site, site_store, services):
    config = add_device(site, DEV, heartbeat_s=30)
    add_device(site, SILENT)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config, start=False)

    def handler(cmd):
        if cmd.body.get("fail"):
            raise CocoonError("no such voucher")
        return {"ok": True}

    agent.dispatcher.register("payment.confirmed", handler)
    agent.start()
    agent.wait_connected()
    operator = operator_with_store(site)

    ok = send(site, operator, DEV, {"voucher": "v-1"})
    assert ok.returncode == 0, ok.stderr
    command_id, outcome = ok.stdout.split("\n")[:2]
    assert outcome == "accepted"

    failed = send(site, operator, DEV, {"voucher": "v-2", "fail": True})
    assert (failed.returncode, failed.stdout.split("\n")[1]) == (4, "failed"), failed.stderr
    assert "no such voucher" in failed.stderr

    again = send(site, operator, DEV, {"voucher": "v-1"}, "--id", command_id)   # a replay
    assert (again.returncode, again.stdout.split("\n")[1]) == (3, "refused"), again.stderr
    assert "replay" in again.stderr

    silent = send(site, operator, SILENT, {"voucher": "v-3"}, wait=1)
    assert (silent.returncode, silent.stdout.split("\n")[1]) == (5, "no answer"), silent.stderr

    # without the ingest's store, --wait cannot read an answer: a configuration problem
    bare = send(site, site.operator_config, DEV, {"voucher": "v-4"}, wait=1)
    assert bare.returncode == 2 and "[ingest]" in bare.stderr


def test_the_exit_codes_are_in_the_help():
    shown = cli("cocoon-ingest", "send-command", "--help").stdout
    for words in ("accepted (exit 0)", "refused (exit 3)", "failed (exit 4)",
                  "no answer (exit 5)"):
        assert words in " ".join(shown.split())
