"""One service at a time with its own database and the real bus, on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared import bus, config, topology
from shared.contracts import EXAMPLES, make_event
from tests.helpers import NEXT_MONDAY, wait_for
from tests.helpers import dispatcher

SHOPPING = {
    "person": {"name": "Pat Example", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
               "postcode": "FY1 4AB"},
    "support_type": "shopping",
    "when": {"start": f"{NEXT_MONDAY}T14:00:00+00:00", "end": f"{NEXT_MONDAY}T16:00:00+00:00"},
    "consent": {"share_contact": True, "sms_contact": True},
    "coordinator_notes": "Lives alone",
}
SAFEGUARDING = [{"check": "safeguarding", "done_on": "2026-01-05", "expires_on": "2035-01-05"}]
VOLUNTEER = {"name": "Sam Patel", "phone": "07911 123456", "skills": ["practical"], "checks": SAFEGUARDING,
             "latitude": 53.8142, "longitude": -3.0503, "max_distance_km": 10}


def queue_named(name: str):
    for queue in [q for qs in topology.QUEUES.values() for q in qs] + topology.DEAD_LETTER_QUEUES:
        if queue.name == name:
            return queue
    raise KeyError(name)


def drain(name: str, expect: int, timeout: float = 10.0) -> list:
    """Take `expect` messages off a queue (waiting for them), and check nothing more is there."""
    settings = config.load("cli")
    got = []
    with bus.connect(settings) as connection:
        topology.declare_all(connection)
        queue = queue_named(name)(connection.default_channel)

        def take():
            message = queue.get(no_ack=True)
            if message is not None:
                got.append(message)
            return len(got) >= expect

        if expect:
            wait_for(f"{expect} messages on {name}", take, timeout=timeout)
        assert queue.get(no_ack=True) is None, f"more than {expect} messages on {name}"
    return got


def publish(envelope_or_bytes, routing_key: str, exchange=None, content_type="application/json"):
    """Put a message on the bus as a producer would (or raw bytes, as a broken producer might)."""
    settings = config.load("cli")
    with bus.connect(settings) as connection:
        topology.declare_all(connection)
        producer = connection.Producer()
        if isinstance(envelope_or_bytes, bytes):
            producer.publish(envelope_or_bytes, exchange=exchange, routing_key=routing_key,
                             content_type=content_type, content_encoding="utf-8")
        else:
            producer.publish(envelope_or_bytes, exchange=exchange or topology.EXCHANGES[envelope_or_bytes["producer"]],
                             routing_key=routing_key, serializer="json")


@contextmanager
def running_worker(app, name: str, dispatch=None, max_attempts: int | None = None, ready=None):
    """A service's bus worker in a thread, as `ccs worker` runs it, stopped on exit."""
    settings = app.extensions["ccs"].settings
    worker = bus.Worker(bus.connect(settings), settings, topology.QUEUES[name],
                        dispatch or dispatcher(app, name), max_attempts=max_attempts, ready=ready)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.should_stop = True
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_a_request_is_stored_with_its_event_in_the_outbox_and_the_relay_publishes_it(app_for, token):
    from services.intake.adapters import outbox
    from services.intake.domain import SupportRequest

    app = app_for("intake")
    response = app.test_client().post("/requests", json=SHOPPING, headers=token("coordinator"))
    assert response.status_code == 201, response.json
    assert response.json["status"] == "submitted"
    assert response.json["person"]["area"] == "FY1"
    assert response.json["person"]["phone"] == "+441253477000"
    sessions = app.extensions["ccs"].sessions
    with sessions() as session:
        assert session.get(SupportRequest, uuid.UUID(response.json["id"])) is not None
        assert outbox.backlog(session) == 1

    publisher = bus.Publisher(app.extensions["ccs"].settings)
    try:
        assert outbox.relay_once(sessions, publisher) == 1
    finally:
        publisher.reset()
    with sessions() as session:
        assert outbox.backlog(session) == 0
    [message] = drain("matching.intake.requests", expect=1)
    assert message.payload["type"] == "request.submitted"
    assert message.payload["payload"]["request_id"] == response.json["id"]
    for private in ("person_name", "person_phone", "address", "coordinator_notes", "name", "phone"):
        assert private not in message.payload["payload"]
    assert "Pat" not in str(message.payload) and "Promenade" not in str(message.payload)
    [copy] = drain("metrics.intake.all", expect=1)
    assert copy.payload["event_id"] == message.payload["event_id"]


def test_invalid_input_gets_a_problem_naming_each_bad_field_and_nothing_is_stored(app_for, token):
    from services.intake.adapters import outbox
    from services.intake.domain import SupportRequest

    app = app_for("intake")
    bad = {**SHOPPING, "person": {"phone": "12", "postcode": "FY1"}, "support_type": "gardening", "unexpected": 1}
    del bad["consent"]
    response = app.test_client().post("/requests", json=bad, headers=token("coordinator"))
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["status"] == 422 and problem["title"]
    fields = {error["field"] for error in problem["errors"]}
    assert {"person.name", "person.phone", "support_type", "consent", "unexpected"} <= fields
    with app.extensions["ccs"].sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(SupportRequest)) == 0
        assert outbox.backlog(session) == 0
    # The checks that need the other fields to be valid still name their field.
    response = app.test_client().post("/requests", headers=token("coordinator"), json={
        **SHOPPING, "person": {**SHOPPING["person"], "postcode": "ZZ99 9ZZ"},
        "when": {"start": f"{NEXT_MONDAY}T14:00:00+00:00", "end": f"{NEXT_MONDAY}T13:00:00+00:00"}})
    assert {e["field"] for e in response.json["errors"]} == {"person.postcode", "when.end"}


def test_every_call_needs_a_token_with_a_role_that_may_make_it(app_for, token):
    client = app_for("intake").test_client()
    assert client.post("/requests", json=SHOPPING).status_code == 401
    forged = {"Authorization": "Bearer " + token("coordinator")["Authorization"].split()[1][:-2] + "xx"}
    assert client.post("/requests", json=SHOPPING, headers=forged).status_code == 401
    refused = client.post("/requests", json=SHOPPING, headers=token("manager"))
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    created = client.post("/requests", json=SHOPPING, headers=token("coordinator"))
    other_community = client.get(f"/requests/{created.json['id']}", headers=token("coordinator", ["ottawa-west"]))
    assert other_community.status_code == 404


def test_the_same_event_delivered_twice_has_one_effect(app_for, token):
    from services.matching.adapters import outbox
    from services.matching.domain import Offer

    app = app_for("matching")
    assert app.test_client().post("/volunteers", json=VOLUNTEER, headers=token("coordinator")).status_code == 201
    envelope = make_event("request.submitted", {**EXAMPLES[("request.submitted", 1)], "community": "fylde-coast",
                                                "request_id": str(uuid.uuid4())})
    publish(envelope, "request.submitted")
    publish(envelope, "request.submitted")
    sessions = app.extensions["ccs"].sessions
    processed = []
    dispatch = dispatcher(app, "matching")

    def counting(event):
        dispatch(event)
        processed.append(event.event_id)

    with running_worker(app, "matching", counting):
        wait_for("both deliveries", lambda: len(processed) == 2)
    with sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Offer)) == 1
        assert outbox.backlog(session) == 2  # volunteer.registered, and one offer.made


def test_what_cannot_be_decoded_or_validated_is_dead_lettered_with_the_reason(app_for):
    app = app_for("matching")
    publish(b"{not json", "request.submitted", exchange=topology.EXCHANGES["intake"])
    broken = make_event("request.submitted", EXAMPLES[("request.submitted", 1)])
    broken["payload"]["latitude"] = "north-ish"
    publish(broken, "request.submitted")
    handled = []
    with running_worker(app, "matching", handled.append):
        dead = drain("matching.intake.requests.dead", expect=2)
    assert handled == []
    reasons = sorted(m.headers["x-dead-letter-reason"] for m in dead)
    assert reasons[0].startswith("cannot decode message")
    assert reasons[1].startswith("does not match its contract") and "latitude" in reasons[1]
    assert {m.headers["x-original-queue"] for m in dead} == {"matching.intake.requests"}


def test_a_failing_handler_is_retried_a_bounded_number_of_times_then_dead_lettered(app_for):
    app = app_for("matching")
    publish(make_event("request.submitted", EXAMPLES[("request.submitted", 1)]), "request.submitted")
    attempts = []

    def always_fails(event):
        attempts.append(event.event_id)
        raise RuntimeError("database is on fire")

    with running_worker(app, "matching", always_fails, max_attempts=3):
        [dead] = drain("matching.intake.requests.dead", expect=1)
    assert len(attempts) == 3 and len(set(attempts)) == 1
    assert "handler failed 3 times: RuntimeError: database is on fire" in dead.headers["x-dead-letter-reason"]


def test_a_dead_letters_reason_and_the_workers_log_never_quote_the_values_a_failed_statement_wrote(app_for, caplog):
    """A unique phone number written twice: the database's error names the constraint, and its DETAIL and the
    statement's parameters (the phone number) stay out of the dead letter and the log."""
    app = app_for("matching")
    sessions, phone = app.extensions["ccs"].sessions, "+447911123456"
    with sessions.begin() as session:
        session.execute(sa.text("CREATE TABLE phones_seen (phone VARCHAR(20) UNIQUE)"))
        session.execute(sa.text("INSERT INTO phones_seen VALUES (:phone)"), {"phone": phone})
    publish(make_event("request.submitted", EXAMPLES[("request.submitted", 1)]), "request.submitted")

    def writes_the_phone_again(event):
        with sessions.begin() as session:
            session.execute(sa.text("INSERT INTO phones_seen VALUES (:phone)"), {"phone": phone})

    with running_worker(app, "matching", writes_the_phone_again, max_attempts=2):
        [dead] = drain("matching.intake.requests.dead", expect=1)
    reason = dead.headers["x-dead-letter-reason"]
    assert reason.startswith("handler failed 2 times: IntegrityError: ") and "phones_seen" in reason.lower()
    assert "7911" not in reason and "7911" not in caplog.text
    assert "dead-lettered: IntegrityError" in caplog.text and "writes_the_phone_again" in caplog.text  # the frames


def test_a_handler_that_fails_once_succeeds_on_retry_and_nothing_is_dead_lettered(app_for):
    app = app_for("matching")
    publish(make_event("request.submitted", EXAMPLES[("request.submitted", 1)]), "request.submitted")
    calls = []

    def flaky(event):
        calls.append(event.event_id)
        if len(calls) == 1:
            raise ConnectionError("blip")

    with running_worker(app, "matching", flaky, max_attempts=3):
        wait_for("the retry", lambda: len(calls) == 2)
    drain("matching.intake.requests.dead", expect=0)


def test_no_declines_and_the_next_nearest_volunteer_is_asked_then_yes_matches(app_for, token, monkeypatch):
    from services.matching.adapters import outbox
    from services.matching.domain import MatchRequest, Offer

    monkeypatch.setenv("CCS_OFFER_BATCH", "1")  # one at a time, to see the cascade
    app = app_for("matching")
    client = app.test_client()
    near = client.post("/volunteers", json=VOLUNTEER, headers=token("coordinator")).json
    further = client.post("/volunteers", headers=token("coordinator"), json={
        **VOLUNTEER, "name": "Ali Khan", "phone": "07911 123457", "latitude": 53.85}).json
    dispatch = dispatcher(app, "matching")
    request_id = str(uuid.uuid4())
    from shared.contracts import load_event

    def deliver(event_type, payload):
        dispatch(load_event(make_event(event_type, payload)))

    deliver("request.submitted", {**EXAMPLES[("request.submitted", 1)], "community": "fylde-coast",
                                  "request_id": request_id})
    sessions = app.extensions["ccs"].sessions

    def offers():
        with sessions() as session:
            return session.scalars(sa.select(Offer).order_by(Offer.created_at)).all()

    [first] = offers()
    assert str(first.volunteer_id) == near["id"]
    sms = {"message_sid": "SM1", "to_phone": "+447700900000", "from_phone": near["phone"]}
    deliver("sms.received", {**sms, "body": f"no {first.code}", "keyword": "NO", "code": first.code})
    first_again, second = offers()
    assert first_again.status == "declined"
    assert str(second.volunteer_id) == further["id"] and second.status == "open"
    # A YES from someone else's phone, or with the wrong code, does nothing.
    deliver("sms.received", {**sms, "message_sid": "SM2", "body": f"YES {second.code}", "keyword": "YES",
                             "code": second.code})
    assert offers()[1].status == "open"
    deliver("sms.received", {**sms, "message_sid": "SM3", "from_phone": further["phone"], "body": "YES",
                             "keyword": "YES", "code": second.code})
    assert offers()[1].status == "accepted"
    with sessions() as session:
        assert session.get(MatchRequest, uuid.UUID(request_id)).status == "matched"
        published = [row.event_type for row in session.scalars(sa.select(outbox.table).order_by(outbox.table.id))]
    # the YES with someone else's code was answered: that offer is not open to them
    assert published == ["volunteer.registered", "volunteer.registered", "offer.made", "offer.made",
                         "reply.unresolved", "offer.accepted", "request.matched"]


def test_times_come_back_with_their_time_zone(app_for, token):
    client = app_for("intake").test_client()
    created = client.post("/requests", json=SHOPPING, headers=token("coordinator")).json
    fetched = client.get(f"/requests/{created['id']}", headers=token("coordinator")).json
    assert fetched["when"]["start"] == f"{NEXT_MONDAY}T14:00:00+00:00"
    assert fetched["created_at"].endswith("+00:00")


def test_processes_starting_together_on_a_new_folder_all_declare_the_topology(tmp_path):
    """The filesystem transport's binding tables are created whole, so no process reads a half-made one."""
    declare = "from shared import bus, config, topology; topology.declare_all(bus.connect(config.load('cli')))"

    def tables(folder):
        return {table.name: sorted(map(tuple, json.loads(table.read_text())))
                for table in (folder / "broker" / "control").glob("*.exchange")}

    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    subprocess.run([sys.executable, "-c", declare], env={**env, "CCS_VAR_DIR": str(tmp_path / "alone")}, check=True)
    expected = tables(tmp_path / "alone")
    assert expected
    for round_ in range(3):
        folder = tmp_path / f"together-{round_}"
        starting = [subprocess.Popen([sys.executable, "-c", declare], env={**env, "CCS_VAR_DIR": str(folder)},
                                     stderr=subprocess.PIPE, text=True) for _ in range(6)]
        failures = [err for p in starting if (err := p.communicate(timeout=60)[1]) and p.returncode]
        assert not failures, failures[0]
        assert tables(folder) == expected


def test_a_consumer_draining_while_a_producer_publishes_reads_every_message_whole(app_for):
    """On the filesystem bus a message file appears only once written, so a busy consumer never reads half of one."""
    app = app_for("matching")
    handled, total = [], 300
    events = [make_event("request.cancelled", {"request_id": str(uuid.uuid4()), "reason": f"n{n}"})
              for n in range(total)]
    with running_worker(app, "matching", lambda event: handled.append(event.payload["reason"])):
        settings = config.load("cli")
        with bus.connect(settings) as connection:
            topology.declare_all(connection)
            producer = connection.Producer()
            for envelope in events:
                producer.publish(envelope, exchange=topology.EXCHANGES["intake"], routing_key="request.cancelled",
                                 serializer="json")
        wait_for(f"{total} events handled", lambda: len(handled) >= total, timeout=90)
    assert sorted(handled) == sorted(f"n{n}" for n in range(total))
    drain("matching.intake.requests.dead", 0)


def test_a_cancellation_or_update_that_overtakes_its_request_is_not_lost(app_for, token):
    """With several workers, or after a retry, events about one request can arrive out of order."""
    from services.matching.domain import MatchRequest, Offer
    from shared.contracts import load_event

    app = app_for("matching")
    assert app.test_client().post("/volunteers", json=VOLUNTEER, headers=token("coordinator")).status_code == 201
    dispatch = dispatcher(app, "matching")
    submitted = {**EXAMPLES[("request.submitted", 1)], "community": "fylde-coast"}
    cancelled_first, updated_first = str(uuid.uuid4()), str(uuid.uuid4())

    dispatch(load_event(make_event("request.cancelled", {"request_id": cancelled_first, "reason": "moved away"})))
    dispatch(load_event(make_event("request.submitted", {**submitted, "request_id": cancelled_first})))
    dispatch(load_event(make_event("request.updated", {**submitted, "request_id": updated_first,
                                                       "urgency": "urgent"})))
    dispatch(load_event(make_event("request.submitted", {**submitted, "request_id": updated_first})))

    with app.extensions["ccs"].sessions() as session:
        cancelled = session.get(MatchRequest, uuid.UUID(cancelled_first))
        updated = session.get(MatchRequest, uuid.UUID(updated_first))
        offers = session.scalars(sa.select(Offer)).all()
    assert cancelled.status == "cancelled"
    assert updated.status == "open" and updated.urgency == "urgent"
    assert [str(o.request_id) for o in offers] == [updated_first]


def test_dead_letters_can_be_listed_by_type_replayed_once_the_cause_is_fixed_and_purged(app_for):
    """`ccs dead-letters`: what no handler could take is listed without its payload, chosen by type or queue, and
    replayed back to its queue (handled once) or purged; what is only listed stays."""
    from tests.integration.test_cli import ccs

    app = app_for("matching")
    submitted = make_event("request.submitted", EXAMPLES[("request.submitted", 1)])
    cancelled = make_event("request.cancelled", {"request_id": submitted["payload"]["request_id"], "reason": "x"})
    publish(submitted, "request.submitted")
    publish(cancelled, "request.cancelled")

    def broken(event):
        raise RuntimeError("a bug, fixed in the next release")

    with running_worker(app, "matching", broken, max_attempts=1):
        wait_for("both to be dead-lettered", lambda: ccs("dead-letters", "list").endswith("2 dead letters\n"))
    listed = ccs("dead-letters", "list", "--type", "request.submitted")
    assert listed.splitlines()[-1] == "1 dead letter"
    assert submitted["event_id"] in listed and "matching.intake.requests" in listed and "a bug" in listed
    assert "Pat" not in listed and "latitude" not in listed  # never the payload
    assert ccs("dead-letters", "list", "--queue", "notify.matching.offers").endswith("0 dead letters\n")
    assert ccs("dead-letters", "list", "--older-than", "1h").endswith("0 dead letters\n")
    assert submitted["event_id"] in ccs("dead-letters", "show", submitted["event_id"])

    handled = []
    with running_worker(app, "matching", lambda event: handled.append(event.event_id)):
        assert ccs("dead-letters", "replay", "--type", "request.submitted").endswith("1 dead letter\n")
        wait_for("the replayed event to be handled", lambda: handled == [uuid.UUID(submitted["event_id"])])
    assert ccs("dead-letters", "purge", "--yes").endswith("1 dead letter\n")
    assert ccs("dead-letters", "list").endswith("0 dead letters\n")
    assert handled == [uuid.UUID(submitted["event_id"])]


@pytest.mark.real_backends
@pytest.mark.parametrize("backend", ["postgres+rabbitmq"], indirect=True)
def test_with_ccs_queue_type_quorum_every_queue_is_a_quorum_queue_and_delays_still_come_back(backend):
    """Production (deploy/kubernetes) replicates the queues: CCS_QUEUE_TYPE=quorum declares them so, delay queues
    included, and a message put back to wait still returns to its queue."""
    script = """
import time
from shared import bus, config, topology
settings = config.load("cli")
publisher = bus.Publisher(settings)
publisher.publish_later({"hello": "again"}, "matching.intake.requests", 0.1, {"x-attempts": 1})
with bus.connect(settings) as connection:
    queue = topology.QUEUES["matching"][0](connection.default_channel)
    deadline = time.monotonic() + 20
    while (message := queue.get(no_ack=True)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
print(message.payload if message else None)
"""
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "CCS_QUEUE_TYPE": "quorum"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'hello': 'again'}"
    vhost = os.environ["BROKER_URL"].rsplit("/", 1)[1]
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type"], capture_output=True,
                            text=True, check=True).stdout
    types = dict(line.split() for line in listed.splitlines()[1:] if line.strip())
    assert types and set(types.values()) == {"quorum"}, types
    assert types["delay.100ms"] == "quorum" and types["matching.intake.requests.dead"] == "quorum"


def test_messages_a_killed_worker_had_taken_but_not_acknowledged_go_back_to_their_queue(app_for):
    """RabbitMQ redelivers what a dead consumer had not acknowledged; the embedded bus does the same, so a worker
    killed with messages in hand (its prefetch) loses none."""
    app_for("matching")
    events = [make_event("request.submitted", {**EXAMPLES[("request.submitted", 1)], "request_id": str(uuid.uuid4())})
              for _ in range(3)]
    for event in events:
        publish(event, "request.submitted")
    script = """
import sys
from shared import bus, config, topology
with bus.connect(config.load("cli")) as connection:
    queue = topology.QUEUES["matching"][0](connection.default_channel)
    taken = [queue.get(no_ack=False) for _ in range(3)]
    print(sum(m is not None for m in taken), flush=True)
    sys.stdin.read()  # holds them, unacknowledged, until killed
"""
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "3"
            drain("matching.intake.requests", expect=0)  # in its hands: nobody else gets them
        finally:
            holder.kill()  # SIGKILL: no chance to give them back
            holder.wait()
    back = drain("matching.intake.requests", expect=3, timeout=20)
    assert sorted(m.payload["event_id"] for m in back) == sorted(e["event_id"] for e in events)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_claim_whose_pid_now_belongs_to_a_later_process_goes_back_to_its_queue(app_for):
    """Pids are reused: a claim names its process's pid and start time, so a message a dead worker had taken is
    not held for ever by whichever process gets that pid next (here, this one: same pid, another start)."""
    app_for("matching")
    event = make_event("request.submitted", {**EXAMPLES[("request.submitted", 1)], "request_id": str(uuid.uuid4())})
    publish(event, "request.submitted")
    messages = Path(os.environ["CCS_VAR_DIR"]) / "broker" / "messages"
    [queued] = [p for p in messages.iterdir() if p.name.endswith(".matching.intake.requests.msg")]
    queued.rename(messages / f".inhand.{os.getpid()}-1.{queued.name}")  # "started" at tick 1: long before us
    still_held = messages / f".inhand.{os.getpid()}-{bus._started(os.getpid())}.held.matching.intake.requests.msg"
    still_held.write_text("{}")  # a claim of this very process: left alone

    [back] = drain("matching.intake.requests", expect=1, timeout=20)
    assert back.payload["event_id"] == event["event_id"]
    assert still_held.exists()
