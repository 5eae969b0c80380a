"""The ingest keeps going when storing fails: a poison message is parked with its reason and the
device's other events are stored; a database that goes away for a while is waited for, and what
arrived meanwhile is stored once it is back. Through Mosquitto (TLS) and the ingest, with the
failures made by the database itself (a trigger that refuses one event, connections refused).
"""

import json
import sqlite3
from contextlib import closing

from agent.contract import events, topics
from agent.contract.events import Draft
from tests.support.running import (
    add_device,
    ingest_device,
    ingest_query,
    ingest_store_path,
    ingest_store_seqs,
    use_store_url,
)
from tests.support.waiting import wait_for
from tests.test_forgery import device_signer, raw_client

DEV = "station-01"

POISON_SQLITE = ("CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.type = 'test.poison' "
                 "BEGIN SELECT RAISE(ABORT, 'refused by the test''s trigger'); END")
POISON_POSTGRESQL = (
    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.type = 'test.poison' THEN RAISE EXCEPTION 'refused by the test''s trigger'; END IF; "
    "RETURN NEW; END $$; "
    "CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison()")


def chain(site, types: dict[int, str], n: int) -> list[dict]:
    out, prev, signer = [], events.GENESIS_PREV, device_signer(site, DEV)
    for seq in range(1, n + 1):
        draft = Draft(types.get(seq, "purchase.recorded"), "money", {"n": seq})
        out.append(events.seal(draft, device=DEV, seq=seq, prev=prev, signer=signer))
        prev = events.event_hash(out[-1])
    return out


def acks_seen(raw) -> list[int]:
    with raw.cond:
        return [json.loads(p)["seq"] for t, p in raw.messages if t == topics.acks(DEV)]


def test_a_poison_event_is_parked_and_the_others_are_stored(site, site_store, services):
    add_device(site, DEV)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    if site_store == "sqlite":
        with closing(sqlite3.connect(ingest_store_path(site), isolation_level=None)) as conn:
            conn.execute(POISON_SQLITE)
    else:
        ingest_query(site, POISON_POSTGRESQL)
    evs = chain(site, {4: "test.poison"}, 10)
    with raw_client(site, DEV) as raw:
        raw.subscribe(topics.acks(DEV))
        for ev in evs:
            raw.publish(topics.events(DEV), ev)
        wait_for(lambda: ingest.stats["parked"] == 1 and len(ingest_store_seqs(site, DEV)) == 9,
                 15, what="the poison parked, the nine others stored")
        assert ingest_store_seqs(site, DEV) == [1, 2, 3, *range(5, 11)]
        ((device, topic, payload, reason),) = ingest_query(
            site, "SELECT device, topic, payload, reason FROM parked")
        assert (device, topic, json.loads(bytes(payload))) == (DEV, topics.events(DEV), evs[3])
        assert "refused by the test's trigger" in reason
        assert ingest.running and ingest.stats["store_failures"] >= 3
        assert ingest_device(site, DEV)["watermark"] == 3      # the hole is the parked event
        # once the cause is gone, the device's copy is stored and the chain is whole
        ingest_query(site, "DROP TRIGGER poison" + (" ON events" * (site_store != "sqlite")))
        raw.publish(topics.events(DEV), evs[3])
        wait_for(lambda: 10 in acks_seen(raw), 15, what="the ack of seq 10")
        seen = acks_seen(raw)
        assert seen == sorted(seen) and seen[-1] == 10
    assert ingest_store_seqs(site, DEV) == list(range(1, 11))


def test_a_database_away_for_a_while_is_waited_for(site, services, postgres, postgres_url):
    add_device(site, DEV)
    use_store_url(site, postgres_url)
    name = postgres_url.rsplit("/", 1)[1]
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    evs = chain(site, {}, 9)
    with raw_client(site, DEV) as raw:
        raw.subscribe(topics.acks(DEV))
        for ev in evs[:3]:
            raw.publish(topics.events(DEV), ev)
        wait_for(lambda: 3 in acks_seen(raw), 15, what="the ack of seq 3")
        postgres.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        postgres.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = %s", (name,))
        failures = ingest.stats["store_failures"]
        for ev in evs[3:]:
            raw.publish(topics.events(DEV), ev)
        wait_for(lambda: ingest.stats["store_failures"] >= failures + 3, 15,
                 what="the ingest trying again while the database is away")
        assert ingest.running and ingest.stats["parked"] == 0
        postgres.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        wait_for(lambda: 9 in acks_seen(raw), 30, what="the ack of seq 9 once it is back")
        seen = acks_seen(raw)
        assert seen == sorted(seen)
    assert ingest_store_seqs(site, DEV) == list(range(1, 10))
    assert ingest.stats["parked"] == 0 and ingest_query(site, "SELECT count(*) FROM parked") == [
        (0,)]
