"""Retention and erasure, on both backends: `ccs person erase` leaves no trace of a person in any table of any
service's database while the managers' counts stay the same; `ccs person export` gives everything held about one
person and nothing of another; the nightly jobs, on the rehearsal clock, remove only what is past its period, and a
second run changes nothing more."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from shared import clock
from shared.cli import main
from shared.communities import all_communities
from tests.integration.test_scoping import CHECKS, System

# Someone whose name, phone (as typed, and as kept), address and date of birth appear nowhere else.
TYPED_PHONE = "07911 729846"
PERSON = {"name": "Ottoline Wrenfeather", "phone": TYPED_PHONE, "address": "42 Honeysuckle Wynd, Blackpool",
          "postcode": "FY1 4AB", "date_of_birth": "1941-05-17"}
TRACES = ["ottoline", "wrenfeather", "+447911729846", "447911729846", "07911 729846", "07911729846", "729846",
          "honeysuckle", "1941-05-17", "17/05/1941"]
OTHER = {"name": "Barnabus Eldergrove", "phone": "07911 729312", "address": "9 Bramblecote Lane, Blackpool",
         "postcode": "FY1 4AB"}
VOLUNTEER = {"name": "Sam Patel", "phone": "+447911729001", "postcode": "FY1", "skills": ["practical"],
             "checks": CHECKS, "max_distance_km": 15}


WHEN = {"days": ["mon", "tue", "wed", "thu", "fri"], "part_of_day": "afternoon"}  # whatever the rehearsal clock says


def request_for(person: dict, notes: str) -> dict:
    return {"person": person, "support_type": "shopping", "when": WHEN,
            "consent": {"share_contact": True, "sms_contact": True}, "coordinator_notes": notes}


def ccs(*args: str) -> str:
    """Run `ccs` in this process; what it printed on standard output."""
    done = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return done.stdout


@pytest.fixture
def system(app_for, monkeypatch):
    monkeypatch.setenv("CCS_SUPPRESS_BELOW", "0")  # the counts themselves, to compare
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    return System({name: app_for(name) for name in ("intake", "matching", "notify", "metrics")})


def helped(system: System, token, person: dict, notes: str, key: str) -> str:
    """A request for `person` through the API, offered to the volunteer by SMS, accepted with YES, and the
    person's details texted to them; every event relayed. Its id."""
    coordinator = token("coordinator")
    made = system.client("intake").post("/requests", json=request_for(person, notes),
                                        headers={**coordinator, "Idempotency-Key": key})
    assert made.status_code == 201, made.json
    system.relay()
    system.send_sms()
    system.relay()
    [offer] = [o for o in system.events("matching", "offer.made") if o["request_id"] == made.json["id"]]
    system.text(VOLUNTEER["phone"], f"YES {offer['code']}")
    system.relay()
    system.send_sms()
    system.relay()
    return made.json["id"]


def counts(system: System, token) -> dict:
    """What a manager is shown: this year's counts, and the dashboard's page."""
    manager = token("manager")
    year = system.client("metrics").get("/activity", headers=manager, query_string={"period": "year"})
    assert year.status_code == 200, year.json
    return year.json["periods"][-1]["measures"]


def everything(system: System) -> dict[str, list[str]]:
    """Every row of every table of every service's database, as text (tables added later are read too)."""
    found = {}
    for name, app in system.apps.items():
        engine = app.extensions["ccs"].engine
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.connect() as connection:
            for table in tables.sorted_tables:
                found[f"{name}.{table.name}"] = [str(tuple(row)) for row in connection.execute(sa.select(table))]
    return found


def traces_in(system: System, traces: list[str]) -> list[str]:
    """Where any of `traces` appears (any case), as "service.table: trace"."""
    return [f"{table}: {trace}" for table, rows in everything(system).items() for row in rows
            for trace in traces if trace.lower() in row.lower()]


def test_erasure_leaves_no_trace_of_the_person_in_any_database_and_the_counts_stay(system, token):
    volunteer = system.client("matching").post("/volunteers", json=VOLUNTEER, headers=token("coordinator"))
    assert volunteer.status_code == 201, volunteer.json
    request_id = helped(system, token, PERSON, "Ottoline Wrenfeather's daughter calls on Sundays", "erase-1")
    system.text(VOLUNTEER["phone"], "Ottoline Wrenfeather was out, I'll go back tomorrow")  # waits in the inbox
    system.relay()
    other_id = helped(system, token, OTHER, "Barnabus likes a chat", "erase-2")
    assert {t.split(":")[0] for t in traces_in(system, TRACES)} >= {
        "intake.requests", "intake.idempotency_keys", "intake.outbox", "notify.outgoing_messages",
        "notify.inbound_messages", "notify.outbox"}, "the person's details are everywhere they go before the erasure"
    before = counts(system, token)

    out = CliRunner().invoke(main, ["person", "erase", request_id, "--by", "dpo@fylde.example"], input="n\n")
    assert out.exit_code == 1 and traces_in(system, TRACES), "without confirmation nothing is erased"
    ccs("person", "erase", request_id, "--yes", "--by", "dpo@fylde.example")
    system.relay()

    assert traces_in(system, TRACES) == []
    assert traces_in(system, ["Eldergrove", "Bramblecote"]), "another person's details stay"
    assert counts(system, token) == before
    from services.intake.adapters import retention_runs
    with system.apps["intake"].extensions["ccs"].sessions() as session:
        [run] = session.execute(sa.select(retention_runs)).all()
    assert (run.kind, run.actor, run.request_ids) == ("erasure", "dpo@fylde.example", [request_id])
    with system.apps["notify"].extensions["ccs"].sessions() as session:
        from services.notify.domain import OutgoingMessage
        kept = session.scalars(sa.select(OutgoingMessage).where(OutgoingMessage.request_id == uuid.UUID(
            request_id))).all()
    assert {m.purpose for m in kept} >= {"offer", "confirmation"}, "the records that SMS went stay"
    assert {m.body for m in kept} == {""} and {m.status for m in kept} != {""}
    board = system.client("intake").get(f"/requests/{request_id}", headers=token("coordinator"))
    assert board.status_code == 200 and board.json["status"] == "matched"
    assert other_id != request_id


def test_an_export_holds_the_persons_requests_and_sms_and_nothing_of_anyone_else(system, token):
    volunteer = system.client("matching").post("/volunteers", json=VOLUNTEER, headers=token("coordinator"))
    assert volunteer.status_code == 201, volunteer.json
    request_id = helped(system, token, PERSON, "Prefers mornings", "export-1")
    other_id = helped(system, token, OTHER, "Barnabus likes a chat", "export-2")

    held = json.loads(ccs("person", "export", request_id, "--by", "dpo@fylde.example"))

    [request] = held["intake"]["requests"]
    assert (request["id"], request["person_name"], request["person_phone"]) == (
        request_id, PERSON["name"], "+447911729846")
    assert request["coordinator_notes"] == "Prefers mornings" and request["timeline"] and request["consents"]
    assert {e["action"] for e in held["intake"]["audit_log"]} >= {"create"}
    assert {m["purpose"] for m in held["notify"]["sent"]} >= {"offer", "confirmation"}
    [details] = [m for m in held["notify"]["sent"] if m["purpose"] == "confirmation"]
    assert "Ottoline" in details["body"] and "42 Honeysuckle Wynd" in details["body"]
    [matched] = held["matching"]
    assert matched["request_id"] == request_id and matched["offers"][0]["status"] == "accepted"
    text = json.dumps(held)
    for other in (other_id, "Eldergrove", "Bramblecote", "729312"):
        assert other not in text
    nobody = str(uuid.uuid4())
    for args in (["export", nobody], ["erase", nobody, "--yes"]):
        unknown = CliRunner().invoke(main, ["person", *args])
        assert unknown.exit_code == 1 and f"No person or request {nobody}" in unknown.output


def snapshot(system: System) -> dict[str, list[str]]:
    """Every table but the record of the runs themselves."""
    return {table: sorted(rows) for table, rows in everything(system).items() if not table.endswith("retention_runs")}


def test_the_nightly_jobs_remove_only_what_is_past_its_period_and_a_second_run_changes_nothing(
        system, token, tmp_path, monkeypatch):
    from services.intake import service_layer as intake
    from services.intake.entrypoints import timers as intake_timers
    from services.notify import service_layer as notify
    from services.notify.domain import OutgoingMessage

    monkeypatch.setenv("CCS_CLOCK_FILE", str(tmp_path / "clock"))
    start = datetime.now(timezone.utc)
    coordinator = token("coordinator")
    volunteer = system.client("matching").post("/volunteers", json=VOLUNTEER, headers=coordinator)
    assert volunteer.status_code == 201, volunteer.json
    old = helped(system, token, PERSON, "Ottoline's notes", "nightly-1")  # helped, then closed, long ago
    assert system.client("intake").post(f"/requests/{old}/cancel", headers=coordinator, json={
        "reason": "Ottoline Wrenfeather moved away"}).status_code == 200
    still_open = system.client("intake").post("/requests", headers=coordinator,
                                              json=request_for(OTHER, "Barnabus likes a chat")).json["id"]
    system.relay()

    def step_to(moment: datetime) -> None:
        clock.set_forward(tmp_path / "clock", moment)

    def run_both():
        return (intake.apply_retention(system.apps["intake"].extensions["ccs"].uow, clock.utcnow(),
                                       all_communities()),
                notify.apply_retention(system.apps["notify"].extensions["ccs"].uow, clock.utcnow(),
                                       all_communities()))

    def texts_about(request_id: str) -> set[str]:
        with system.apps["notify"].extensions["ccs"].sessions() as session:
            return {m.body for m in session.scalars(sa.select(OutgoingMessage).where(
                OutgoingMessage.request_id == uuid.UUID(request_id)))}

    step_to(start + timedelta(days=400))  # past the SMS period (365 days), not the closed request's (730)
    recent = system.client("intake").post("/requests", headers=coordinator,
                                          json=request_for({**OTHER, "name": "Cressida Fernhollow"}, "")).json["id"]
    system.relay()
    system.send_sms()
    system.relay()
    assert system.client("intake").post(f"/requests/{recent}/cancel", headers=coordinator,
                                        json={"reason": "Not needed"}).status_code == 200
    system.relay()
    first = run_both()
    assert first[1]["fylde-coast"]["sent_blanked"] >= 2 and texts_about(old) == {""}
    assert "" not in texts_about(recent), "an SMS within its period keeps its text"
    assert first[0]["fylde-coast"]["pseudonymised"] == 0 and traces_in(system, ["Wrenfeather"])

    step_to(start + timedelta(days=731))  # past the closed request's period; the recent one is 331 days closed
    assert intake_timers.nightly(system.apps["intake"].extensions["ccs"].uow)["fylde-coast"]["pseudonymised"] == 1
    assert intake_timers.nightly(system.apps["intake"].extensions["ccs"].uow) is None, "once a night"
    assert traces_in(system, TRACES) == []
    reader = token("coordinator")
    gone, kept, closed_lately = (system.client("intake").get(f"/requests/{i}", headers=reader).json
                                 for i in (old, still_open, recent))
    assert gone["person"]["name"] == "(details removed)" and gone["person"]["area"] == "FY1"
    assert gone["status"] == "cancelled" and gone["support_type"] == "shopping"
    assert kept["person"]["name"] == OTHER["name"] and closed_lately["person"]["name"] == "Cressida Fernhollow"

    before = snapshot(system)
    again = run_both()
    assert again[0]["fylde-coast"] == {"pseudonymised": 0, "copies_scrubbed": 0, "audit_entries_removed": 0,
                                       "concerns_removed": 0}
    assert again[1]["fylde-coast"] == {"sent_blanked": 0, "received_blanked": 0}
    assert snapshot(system) == before


def test_the_fhir_document_is_kept_only_while_the_request_is_open(app_for, token):
    from services.intake.domain import SupportRequest
    from tests.integration.test_scoping import service_request

    intake = app_for("intake")
    client = intake.test_client()
    referrer = token("referrer", organisation="Fylde Coast PCN")
    sent = client.post("/fhir/ServiceRequest", data=json.dumps(service_request()), headers=referrer,
                       content_type="application/fhir+json")
    assert sent.status_code == 201, sent.json
    request_id = uuid.UUID(sent.json["id"])
    with intake.extensions["ccs"].sessions() as session:
        assert session.get(SupportRequest, request_id).source_document["resourceType"] == "ServiceRequest"
    assert client.post(f"/requests/{request_id}/cancel", headers=token("coordinator"),
                       json={"reason": "Family are helping"}).status_code == 200
    with intake.extensions["ccs"].sessions() as session:
        assert session.get(SupportRequest, request_id).source_document is None
    read = client.get(f"/fhir/ServiceRequest/{request_id}", headers=referrer)
    assert read.status_code == 200 and read.json["status"] == "revoked" and "Pemberthwaite" not in read.text


def test_erasing_a_referral_removes_the_patient_from_its_document_its_reason_and_the_webhooks_sent(app_for, token):
    from services.intake import service_layer
    from shared.auth import Actor
    from tests.integration.test_scoping import service_request

    intake = app_for("intake")
    service_layer.add_organisation(intake.extensions["ccs"].uow(), Actor("admin@fylde.example", "admin",
                                                                         ("fylde-coast",)),
                                   {"name": "Fylde Coast PCN", "type": "pcn", "adopted_on": None,
                                    "webhook_url": "https://pcn.example/hook"})
    client, system = intake.test_client(), System({"intake": intake})
    sent = client.post("/fhir/ServiceRequest", data=json.dumps(service_request()), content_type="application/fhir+json",
                       headers=token("referrer", organisation="Fylde Coast PCN"))
    assert sent.status_code == 201, sent.json
    traces = ["Pemberthwaite", "Cordelia", "729562"]
    assert "intake.requests" in {t.split(":")[0] for t in traces_in(system, traces)}
    assert client.post(f"/requests/{sent.json['id']}/cancel", headers=token("coordinator"), json={
        "reason": "Cordelia Pemberthwaite is staying with her daughter"}).status_code == 200
    assert "intake.webhook_deliveries" in {t.split(":")[0] for t in traces_in(system, traces)}

    ccs("person", "erase", sent.json["id"], "--yes")

    assert traces_in(system, traces) == []
    from services.intake.adapters import webhook_deliveries
    with intake.extensions["ccs"].sessions() as session:
        bodies = session.scalars(sa.select(webhook_deliveries.c.body)).all()
    assert bodies[-1]["task"]["statusReason"]["text"] == "[removed] is staying with her daughter"


def test_a_run_skips_a_request_another_run_holds_and_a_later_run_takes_it(app_for, token, backend, tmp_path,
                                                                            monkeypatch):
    """Two leaders at once (one that lost its lock mid-run, and the next): on PostgreSQL a request another run holds
    is skipped (SKIP LOCKED) and left for the next run; SQLite has one writer at a time, so there the first run does
    both. Either way each request is done once."""
    from contextlib import nullcontext

    from services.intake import service_layer
    from services.intake.domain import SupportRequest

    monkeypatch.setenv("CCS_CLOCK_FILE", str(tmp_path / "clock"))
    intake = app_for("intake")
    client, coordinator = intake.test_client(), token("coordinator")
    ids = [client.post("/requests", headers=coordinator, json=request_for(person, "")).json["id"]
           for person in (PERSON, OTHER)]
    for request_id in ids:
        assert client.post(f"/requests/{request_id}/cancel", headers=coordinator,
                           json={"reason": "No longer needed"}).status_code == 200
    clock.set_forward(tmp_path / "clock", datetime.now(timezone.utc) + timedelta(days=731))
    context = intake.extensions["ccs"]
    with context.engine.connect() if backend.is_real else nullcontext() as other_run:
        if other_run is not None:
            other_run.execute(sa.text("SELECT id FROM requests WHERE id = :id FOR UPDATE"), {"id": ids[0]})
        first = service_layer.apply_retention(context.uow, clock.utcnow(), all_communities())
        if other_run is not None:
            other_run.rollback()
    second = service_layer.apply_retention(context.uow, clock.utcnow(), all_communities())
    done = (first["fylde-coast"]["pseudonymised"], second["fylde-coast"]["pseudonymised"])
    assert done == ((1, 1) if backend.is_real else (2, 0))
    with context.sessions() as session:
        assert {session.get(SupportRequest, uuid.UUID(i)).person_name for i in ids} == {"(details removed)"}


@pytest.mark.parametrize("service", ["intake", "notify"])
def test_a_workers_retention_loop_leads_and_runs_the_job_once_a_night(app_for, service):
    """The loop the worker runs: it takes the service's timer lock, runs the job, and does not run it again the
    same night however often it looks."""
    import importlib
    import threading

    from tests.helpers import wait_for

    context = app_for(service).extensions["ccs"]
    timers = importlib.import_module(f"services.{service}.entrypoints.timers")
    runs_table = importlib.import_module(f"services.{service}.adapters").retention_runs

    def runs() -> list:
        with context.sessions() as session:
            return session.execute(sa.select(runs_table.c.kind, runs_table.c.day)).all()

    stop = threading.Event()
    loop = threading.Thread(target=timers.retention_loop(context, interval=0.05), args=(stop,))
    loop.start()
    try:
        wait_for("the nightly run", lambda: runs() == [("nightly", clock.utcnow().date())], timeout=10)
        stop.wait(0.5)  # ten more looks
        assert runs() == [("nightly", clock.utcnow().date())]
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive()
