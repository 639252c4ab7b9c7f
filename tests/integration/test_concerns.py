"""A volunteer's concern by SMS (issue 15): texted through notify's signed webhook, tied by matching to the task the
volunteer holds, opened by intake in the append-only safeguarding log (the request flagged at the top of the board),
a receipt texted back with the community's emergency number, closed by a coordinator with the action taken, and
counted by metrics. Intake, matching, notify and metrics with their databases on both backends, the bus played
through their real handlers in order (`system`, from test_withdrawals, with metrics added)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from datetime import timedelta

from services.intake.adapters import needs_you as needs_you_sql, requests as requests_table
from services.intake.domain import SupportRequest
from services.notify.domain import InboundMessage, answered_body
from shared import topology
from shared.clock import utcnow
from shared.communities import get as community
from shared.contracts import load_event, make_event
from shared.contracts.matching import ReplyAnswered, TaskLine
from tests.integration.test_own_view import take
from tests.integration.test_withdrawals import TOMORROW, System

WORDS = "She seemed confused and had not eaten; the fridge was empty."
RECEIPT = ("Thank you: your concern about task {code} has reached the coordinator. A coordinator will look at this "
           "today. If someone is in danger now, call 999.")


class WithMetrics(System):
    """Intake, matching, notify and metrics, the bus played in order through each one's handlers."""

    def __init__(self, app_for, token):
        super().__init__(app_for, token, metrics=True)

    def webhook(self, phone: str, body: str, sid: str) -> None:
        """Twilio posts a text to notify's signed webhook, with its MessageSid."""
        from services.notify.adapters import signature_for

        form = {"From": phone, "To": "+447700900100", "Body": body, "MessageSid": sid, "AccountSid": "AC" + "0" * 32,
                "NumMedia": "0"}
        signature = signature_for(self.apps["notify"].extensions["ccs"].settings, "/sms/inbound", form)
        answer = self.client("notify").post("/sms/inbound", data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200

    def ask(self, phone: str, body: str) -> list[str]:
        """Text us, carry what it caused and send what is due: the texts the phone then got."""
        before = len(self.gateway.to(phone))
        self.text(phone, body)
        self.carry()
        self.send()
        return self.gateway.to(phone)[before:]

    def concerns(self, headers=None) -> list[dict]:
        answer = self.client("intake").get("/concerns", headers=headers or self.headers)
        assert answer.status_code == 200, answer.json
        return answer.json

    def counts(self) -> dict:
        return self.client("metrics").get("/activity", headers=self.token("manager"),
                                          query_string={"period": "day"}).json["periods"][-1]["measures"]

    def everything_in(self, name: str) -> str:
        """Every row of every table of a service's database, as text."""
        from shared.service import get

        metadata = get(name).metadata()
        with self.apps[name].extensions["ccs"].sessions() as session:
            return "\n".join(str(tuple(row)) for table in metadata.sorted_tables
                             for row in session.execute(sa.select(table)).all())


@pytest.fixture
def concerns_system(app_for, token, monkeypatch):
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    monkeypatch.setenv("CCS_SUPPRESS_BELOW", "0")  # to see each count; suppression has its own tests
    s = WithMetrics(app_for, token)
    s.token = token
    return s


def test_a_volunteer_texts_a_concern_that_opens_on_the_request_flags_it_and_is_closed_with_an_action(
        concerns_system):
    s = concerns_system
    ann = s.volunteer("Ann", "07911 123481")["phone"]
    request_id, code = take(s, ann, TOMORROW)
    s.send()

    assert s.ask(ann, f"CONCERN {code} {WORDS}") == [RECEIPT.format(code=code)]

    [concern] = s.concerns()
    assert (concern["request_id"], concern["text"], concern["open"]) == (request_id, WORDS, True)
    assert concern["community"] == "fylde-coast" and concern["actions"] == []
    seen = s.seen_by_intake(request_id)
    assert seen["timeline"][-1]["detail"] == "A volunteer raised a concern: see Concerns"
    assert WORDS not in str(seen)  # the request's record points to the log; the words stay in it
    board = s.client("intake").get("/requests", headers=s.headers).json
    assert board[0]["id"] == request_id

    # the same text delivered again (Twilio retries its webhook; the bus redelivers each event) does nothing twice
    received = [row for row in s.outbox("notify") if row.event_type == "sms.received"][-1]
    s.webhook(ann, f"CONCERN {code} {WORDS}", received.body["payload"]["message_sid"])  # Twilio's retry
    assert [e["keyword"] for e in s.events("notify", "sms.received")] == ["YES", "CONCERN"]
    s.dispatch["matching"](load_event(received.body))  # the bus's redelivery
    s.dispatch["matching"](load_event(make_event("sms.received", received.body["payload"])))  # as a new event
    raised = [row for row in s.outbox("matching") if row.event_type == "concern.raised"]
    assert len(raised) == 2 and raised[0].body["payload"]["concern_id"] == raised[1].body["payload"]["concern_id"]
    s.carry()
    assert s.send() == 0
    assert len(s.concerns()) == 1 and len(s.events("intake", "concern.opened")) == 1
    assert s.counts()["concerns_raised"] == 1 and s.counts()["concerns_closed"] == 0

    # the words go to intake and nowhere else: matching publishes them once per delivery, to intake alone; notify
    # only in the sms.received matching hears; metrics never hears them, and its database has none
    assert topology.PERSONAL >= {"sms.received", "concern.raised"}
    assert [c for c, groups in topology.SUBSCRIPTIONS.items()
            if any("concern.raised" in types for _, types in groups.values())] == ["intake"]
    assert [row.event_type for row in s.outbox("matching") if WORDS in str(row.body)] == ["concern.raised"] * 2
    assert {row.event_type for row in s.outbox("notify") if WORDS in str(row.body)} == {"sms.received"}
    assert not [row for row in s.outbox("intake") if WORDS in str(row.body)]
    assert WORDS not in s.everything_in("metrics")
    assert WORDS not in str([m.body for m in s.messages(ann)])  # nor in any text we sent

    # bad input: problem details naming the field
    actions = f"/concerns/{concern['id']}/actions"
    refused = s.client("intake").post(actions, json={"action": "sent flowers", "close": "yes"}, headers=s.headers)
    assert refused.status_code == 422 and refused.content_type == "application/problem+json"
    assert {e["field"] for e in refused.json["errors"]} == {"action", "close"}
    assert s.client("intake").post(f"/concerns/{uuid.uuid4()}/actions", json={"action": "noted"},
                                   headers=s.headers).status_code == 404

    noted = s.client("intake").post(actions, json={"action": "called_person", "note": "Spoke to her daughter."},
                                    headers=s.headers)
    assert noted.status_code == 201 and noted.json["open"] is True
    closing = {"json": {"action": "referred_gp", "note": "GP to visit", "close": True},
               "headers": {**s.headers, "Idempotency-Key": str(uuid.uuid4())}}
    closed = s.client("intake").post(actions, **closing)
    assert closed.status_code == 201, closed.json
    retried = s.client("intake").post(actions, **closing)  # a retry after a timeout adds nothing to the log
    assert (retried.status_code, retried.headers["Idempotent-Replayed"], retried.json) == (201, "true", closed.json)
    assert closed.json["open"] is False and closed.json["closed_at"] is not None
    assert [(a["action"], a["closes"]) for a in closed.json["actions"]] == [("called_person", False),
                                                                              ("referred_gp", True)]
    assert closed.json["text"] == WORDS  # never changed
    again = s.client("intake").post(actions, json={"action": "noted"}, headers=s.headers)
    assert again.status_code == 409
    s.carry()
    [closing] = s.events("intake", "concern.closed")
    assert closing["action"] == "referred_gp" and "GP to visit" not in str(closing) and WORDS not in str(closing)
    assert s.counts()["concerns_closed"] == 1
    with s.apps["intake"].extensions["ccs"].sessions() as session:
        request = session.get(SupportRequest, uuid.UUID(request_id))
        assert request.concerns_open == 0 and request.needs_you(request.updated_at) == []


def test_needs_you_and_its_sql_twin_agree_on_a_concern(concerns_system):
    s = concerns_system
    ann = s.volunteer("Ann", "07911 123482")["phone"]
    request_id, code = take(s, ann, TOMORROW)
    quiet = s.request()  # offered, and nothing about it needs anyone yet
    s.carry()
    s.ask(ann, f"worried about {code}: {WORDS}")
    with s.apps["intake"].extensions["ccs"].sessions() as session:
        now = utcnow()
        flagged = set(session.scalars(sa.select(requests_table.c.id).where(needs_you_sql(now))))
        both = {r.id: r for r in session.scalars(sa.select(SupportRequest)).all()}
        assert {i for i, r in both.items() if r.needs_you(now)} == flagged
        assert uuid.UUID(request_id) in flagged and uuid.UUID(quiet) not in flagged
        assert both[uuid.UUID(request_id)].needs_you(now)[0] == ("concern", 1)


def test_without_a_code_the_only_task_is_meant_and_with_two_the_volunteer_is_asked_which(concerns_system):
    s = concerns_system
    ann = s.volunteer("Ann", "07911 123483")["phone"]
    first, first_code = take(s, ann, TOMORROW)
    s.send()
    assert s.ask(ann, f"I'm worried about her. {WORDS}") == [RECEIPT.format(code=first_code)]
    assert s.concerns()[0]["request_id"] == first

    _, second_code = take(s, ann, TOMORROW + timedelta(days=2))
    s.send()
    [which] = s.ask(ann, "concern: he was very low today")
    assert which == ("Thank you for telling us. Which task is it about ({codes})? Please send CONCERN with the code "
                     "and your words again, e.g. CONCERN {first} ... If someone is in danger now, call 999."
                     ).format(codes=f"{second_code}, {first_code}", first=second_code)
    assert len(s.concerns()) == 1  # nothing opened on a guess
    with s.apps["notify"].extensions["ccs"].sessions() as session:
        waiting = session.scalars(sa.select(InboundMessage).where(InboundMessage.attention == "concern_unplaced")).all()
        assert [m.body for m in waiting] == ["concern: he was very low today"]  # before a coordinator all the same

    assert s.ask(ann, f"CONCERN {second_code} he was very low today") == [RECEIPT.format(code=second_code)]
    assert len(s.concerns()) == 2 and s.concerns()[0]["text"] == "he was very low today"

    pages = [s.client("intake").get("/concerns", headers=s.headers, query_string={"page": n, "page_size": 1})
             for n in (1, 2, 3)]
    assert [[c["text"] for c in page.json] for page in pages] == [
        ["he was very low today"], [f"I'm worried about her. {WORDS}"], []]
    assert '"total": 2' in pages[0].headers["X-Pagination"]  # the log is paged, and says how long it is


def test_a_volunteer_with_no_task_is_told_it_reached_the_coordinators_and_ottawa_says_911(concerns_system):
    s = concerns_system
    bo = s.volunteer("Bo", "07911 123484")["phone"]
    [answer] = s.ask(bo, "Worried about my neighbour, she fell")
    assert answer == ("Thank you for telling us: it has gone to the coordinators, who will look at it today. If "
                      "someone is in danger now, call 999.")
    assert s.concerns() == []
    receipt = ReplyAnswered(phone="+16135550123", message_sid="SM1", answer="concern_received",
                            community="ottawa-west", tasks=[TaskLine(code="4821", support_type="shopping")])
    assert answered_body(receipt, community("ottawa-west"), "en").endswith("call 911.")
    assert answered_body(receipt, community("ottawa-west"), "fr").endswith("appelez le 911.")


@pytest.mark.parametrize("role", ["referrer", "manager"])
def test_only_coordinators_and_admins_see_concerns(concerns_system, role):
    """Referrers and managers are refused; volunteers have no accounts (they text), and no token is refused too."""
    s = concerns_system
    ann = s.volunteer("Ann", "07911 123485")["phone"]
    _, code = take(s, ann, TOMORROW)
    s.ask(ann, f"CONCERN {code} {WORDS}")
    [concern] = s.concerns()
    headers = s.token(role)
    intake = s.client("intake")
    assert intake.get("/concerns", headers=headers).status_code == 403
    assert intake.get(f"/concerns/{concern['id']}", headers=headers).status_code == 403
    assert intake.post(f"/concerns/{concern['id']}/actions", json={"action": "noted"},
                       headers=headers).status_code == 403
    assert intake.get("/concerns").status_code == 401
    elsewhere = s.token("coordinator", communities=("ottawa-west",))
    assert intake.get("/concerns", headers=elsewhere).json == []
    assert intake.get(f"/concerns/{concern['id']}", headers=elsewhere).status_code == 404
    assert s.concerns(s.token("admin", communities=("fylde-coast", "ottawa-west")))[0]["id"] == concern["id"]


def test_the_nightly_retention_removes_only_concerns_closed_longer_ago_than_the_community_keeps_them(
        concerns_system):
    from services.intake.service_layer import apply_retention
    from shared.communities import all_communities

    s = concerns_system
    ann = s.volunteer("Ann", "07911 123486")["phone"]
    first, first_code = take(s, ann, TOMORROW)
    second, second_code = take(s, ann, TOMORROW + timedelta(days=2))
    s.ask(ann, f"CONCERN {first_code} {WORDS}")
    s.ask(ann, f"CONCERN {second_code} he was very low today")
    closed, still_open = sorted(s.concerns(), key=lambda c: c["request_id"] != first)
    answer = s.client("intake").post(f"/concerns/{closed['id']}/actions", json={"action": "noted", "close": True},
                                     headers=s.headers)
    assert answer.status_code == 201
    uow = s.apps["intake"].extensions["ccs"].uow
    keeps = all_communities()["fylde-coast"].keeps.safeguarding_log_days
    communities = {"fylde-coast": all_communities()["fylde-coast"]}

    soon = apply_retention(uow, utcnow() + timedelta(days=keeps - 1), communities)
    assert soon["fylde-coast"]["concerns_removed"] == 0 and len(s.concerns()) == 2
    later = apply_retention(uow, utcnow() + timedelta(days=keeps + 1), communities)
    assert later["fylde-coast"]["concerns_removed"] == 1
    assert [c["id"] for c in s.concerns()] == [still_open["id"]]  # an open concern is kept however old
    assert WORDS not in s.everything_in("intake")
