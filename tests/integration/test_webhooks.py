"""The register of organisations and their webhooks, on both backends: an administrator registers an organisation
by its form; each change to one of its referrals reaches its server signed, in order, through refusals and outages,
and what happened is on the organisation's page."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.task import Task

from services.intake.adapters import webhook_deliveries
from services.intake.entrypoints import webhooks
from shared.contracts import EXAMPLES, load_event, make_event
from shared.supervisor import free_port
from tests.helpers import dispatcher, wait_for
from tests.integration.test_intake import REFERRAL
from tests.integration.test_role_homes import signed_in

ORGANISATION = "Fylde Coast PCN"


class Receiver:
    """An organisation's server: it keeps what it is sent, and answers with the statuses it is told to (200 once
    they run out); `down()` closes its port, `up()` opens it again."""

    def __init__(self):
        self.port = free_port()
        self.received: list[tuple[dict, bytes]] = []
        self.answers: list[int] = []
        self.server = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ccs-hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answers.pop(0) if receiver.answers else 200
                if status == 200:
                    receiver.received.append((dict(self.headers), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def stages(self) -> list[str]:
        return [json.loads(body)["referral"]["stage"] for _, body in self.received]


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.down()


@pytest.fixture
def intake(app_for):
    return app_for("intake")


def refused_tries(context) -> int:
    """How many deliveries' last try found no server (a session of its own: a snapshot would not see them)."""
    with context.sessions() as session:
        return session.scalar(sa.select(sa.func.count()).where(webhook_deliveries.c.last_answer == "ConnectionError"))


def csrf(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def register(admin, name: str, url: str) -> str:
    """Add an organisation by the form; its page's address."""
    page = admin.get("/organisations/new").text
    answer = admin.post("/organisations/new", data={"csrf_token": csrf(page), "name": name, "type": "pcn",
                                                    "adopted_on": "2026-03-01", "webhook_url": url})
    assert answer.status_code == 303, answer.text
    return answer.headers["Location"]


def test_an_administrator_registers_organisations_with_every_mistake_named_and_no_namesakes(intake):
    admin, _ = signed_in(intake, "root@ccs.example", "admin")
    page = admin.get("/organisations/new").text
    refused = admin.post("/organisations/new", data={"csrf_token": csrf(page), "name": "", "type": "a club",
                                                     "adopted_on": "last spring", "webhook_url": "ftp://x"})
    assert refused.status_code == 422
    summary = refused.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    for field in ("name", "type", "adopted_on", "webhook_url"):
        assert f'href="#{field}"' in summary, field
    assert "Choose the kind of organisation." in summary and "starting https://" in summary
    assert "No organisations yet." in admin.get("/organisations").text  # nothing half-written

    where = register(admin, ORGANISATION, "https://pcn.example/hook")
    shown = admin.get(where).text
    assert f'value="{ORGANISATION}"' in shown and 'class="secret"' in shown and "Nothing sent yet." in shown
    again = admin.post("/organisations/new", data={"csrf_token": csrf(page), "name": ORGANISATION.upper(),
                                                   "type": "pcn"})
    assert again.status_code == 422 and "already in the register" in again.text
    listed = admin.get("/organisations").text
    assert listed.count('href="/organisations/') == 2  # the one, and "Add an organisation"
    assert "Primary care network" in listed and "01 Mar 2026" in listed
    coordinator, _ = signed_in(intake, "kim@fylde.example", "coordinator")
    assert coordinator.get("/organisations").status_code == 403
    elsewhere, _ = signed_in(intake, "root@ottawa.example", "admin", communities=("ottawa-west",))
    assert elsewhere.get(where).status_code == 404 and ORGANISATION not in elsewhere.get("/organisations").text


def test_each_change_to_a_referral_reaches_its_organisation_signed_in_order_through_refusals_and_an_outage(
        intake, token, receiver, monkeypatch):
    monkeypatch.setattr(webhooks, "FIRST_RETRY", 0.05)  # retries at once, so the test need not wait minutes
    admin, _ = signed_in(intake, "root@ccs.example", "admin")
    where = register(admin, ORGANISATION, receiver.url)
    secret = admin.get(where).text.split('<code class="secret">', 1)[1].split("<", 1)[0]
    context = intake.extensions["ccs"]
    stop = threading.Event()
    sender = threading.Thread(target=webhooks.webhooks_loop(context), args=(stop,), daemon=True)
    sender.start()
    try:
        receiver.answers = [503, 500]  # refused twice, then taken
        referral = intake.test_client().post("/referrals", json=REFERRAL, headers=token(
            "referrer", subject="asha@pcn.example", organisation=ORGANISATION)).json
        wait_for("the first change", lambda: receiver.stages() == ["Received"])

        receiver.down()  # an outage: nothing is lost, and the order holds
        deliver = dispatcher(intake, "intake")
        offer = str(uuid.uuid4())
        for n, (event_type, extra) in enumerate([("offer.made", {}), ("offer.accepted", {}),
                                                 ("request.matched", {}), ("task.completed", {"occurrences": 1})],
                                                start=1):
            payload = {**EXAMPLES[(event_type, 1)], "request_id": referral["id"], "offer_id": offer,
                       "sequence": n, **extra}
            deliver(load_event(make_event(event_type, payload)))
        wait_for("a refused try recorded", lambda: refused_tries(context))
        receiver.up()
        wait_for("every change", lambda: len(receiver.stages()) == 4, timeout=30)
    finally:
        stop.set()
        sender.join(10)
    assert receiver.stages() == ["Received", "Looking for a volunteer", "Volunteer found", "Help given"]
    tasks = [json.loads(body)["task"] for _, body in receiver.received]
    for task in tasks:
        Task.model_validate(task)  # each change carries the referral's FHIR R4 Task too
    assert [(t["status"], t["businessStatus"]["text"]) for t in tasks] == [
        ("accepted", "Received"), ("in-progress", "Looking for a volunteer"), ("in-progress", "Volunteer found"),
        ("completed", "Help given")]
    assert {t["id"] for t in tasks} == {referral["id"]}
    assert {t["focus"]["identifier"]["value"] for t in tasks} == {referral["id"]}  # made by the API, not FHIR
    for headers, body in receiver.received:
        expected = hmac.new(secret.encode(), headers["X-CCS-Timestamp"].encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        assert headers["X-CCS-Signature"] == f"sha256={expected}"
        sent = json.loads(body)
        assert sent["referral"]["id"] == referral["id"]
        assert "phone" not in body.decode() and REFERRAL["person"]["name"] not in body.decode()
    shown = admin.get(where).text.split('class="board deliveries"', 1)[1]
    assert shown.count('data-label="Outcome">delivered ') == 4  # the organisation's page says what happened
    with context.sessions() as session:
        tries = session.execute(sa.select(webhook_deliveries.c.attempts, webhook_deliveries.c.delivered_at)
                                .order_by(webhook_deliveries.c.id)).all()
    assert tries[0].attempts == 3 and all(t.delivered_at for t in tries)  # the first: 503, 500, then taken


def test_a_referral_of_an_organisation_without_a_webhook_or_not_in_the_register_sends_nothing(intake, token):
    admin, _ = signed_in(intake, "root@ccs.example", "admin")
    page = admin.get("/organisations/new").text
    admin.post("/organisations/new", data={"csrf_token": csrf(page), "name": ORGANISATION, "type": "pcn"})
    for organisation in (ORGANISATION, "Not Registered Hospice"):
        made = intake.test_client().post("/referrals", json=REFERRAL, headers=token(
            "referrer", subject="asha@pcn.example", organisation=organisation))
        assert made.status_code == 201
    with intake.extensions["ccs"].sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(webhook_deliveries)) == 0


def test_retries_back_off_to_an_hour_and_stop_after_about_a_day():
    from datetime import datetime, timezone

    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    waits = [(webhooks.next_try(n, now) - now).total_seconds() for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert waits[:4] == [10, 20, 40, 80] and max(waits) == 3600 and waits == sorted(waits)
    assert 20 * 3600 < sum(waits) < 30 * 3600
    assert webhooks.next_try(webhooks.MAX_ATTEMPTS, now) is None


def test_an_administrator_merges_a_duplicate_and_metrics_counts_the_two_as_one_partner_of_its_type(app_for, token,
                                                                                                   monkeypatch):
    from tests.integration.test_scoping import SERVICES, System

    monkeypatch.setenv("CCS_SUPPRESS_BELOW", "0")  # to see the small counts; suppression has tests of its own
    system = System({name: app_for(name) for name in SERVICES})
    intake = system.apps["intake"]
    admin, _ = signed_in(intake, "root@ccs.example", "admin")
    kept = register(admin, ORGANISATION, "https://pcn.example/hook").rsplit("/", 1)[1]
    page = admin.get("/organisations/new").text
    made = admin.post("/organisations/new", data={"csrf_token": csrf(page), "name": "Fylde Coast Primary Care Network",
                                                  "type": "pcn"})
    duplicate = made.headers["Location"].rsplit("/", 1)[1]
    made = admin.post("/organisations/new", data={"csrf_token": csrf(page), "name": "Trinity Hospice",
                                                  "type": "hospice", "adopted_on": "2026-01-10"})
    assert made.status_code == 303
    for name in (ORGANISATION, "Fylde Coast Primary Care Network", "Trinity Hospice"):
        answer = intake.test_client().post("/referrals", headers=token("referrer", subject=f"gp@{len(name)}.example"),
                                           json={**REFERRAL,
                                                 "referrer": {**REFERRAL["referrer"], "organisation": name}})
        assert answer.status_code == 201, answer.json
    system.relay()
    manager = token("manager")

    def partners():
        counts = system.client("metrics").get("/activity", headers=manager, query_string={"period": "year"}).json
        measures = counts["periods"][-1]["measures"]
        return measures["active_partners"], measures["partners_by_type"], measures["providers_adopting"]

    assert partners() == (3, {"hospice": 1, "pcn": 2}, 2)  # two spellings of one PCN: two, until merged

    shown = admin.get(f"/organisations/{kept}").text
    refused = admin.post(f"/organisations/{kept}/merge", data={"csrf_token": csrf(shown), "duplicate": duplicate})
    assert refused.status_code == 422 and "checked they are the same" in refused.text  # not confirmed: nothing done
    itself = admin.post(f"/organisations/{kept}/merge", data={"csrf_token": csrf(shown), "duplicate": kept,
                                                              "same": "yes"})
    assert itself.status_code == 422 and "Choose another organisation" in itself.text
    merged = admin.post(f"/organisations/{kept}/merge", data={"csrf_token": csrf(shown), "duplicate": duplicate,
                                                              "same": "yes"})
    assert merged.status_code == 303, merged.text
    listed = admin.get("/organisations").text
    assert "Fylde Coast Primary Care Network" not in listed and ORGANISATION in listed
    assert admin.get(f"/organisations/{duplicate}").status_code == 404
    from services.intake.adapters import requests as requests_table

    with intake.extensions["ccs"].sessions() as session:  # the duplicate's referral is the PCN's now
        named = session.scalars(sa.select(requests_table.c.referrer_organisation)).all()
    assert sorted(named) == sorted([ORGANISATION, ORGANISATION, "Trinity Hospice"])
    system.relay()
    assert partners() == (2, {"hospice": 1, "pcn": 1}, 2)
    elsewhere, _ = signed_in(intake, "root@ottawa.example", "admin", communities=("ottawa-west",))
    assert elsewhere.post(f"/organisations/{kept}/merge", data={
        "csrf_token": csrf(elsewhere.get("/organisations/new").text), "duplicate": duplicate,
        "same": "yes"}).status_code == 404
