"""The coordinator's board with intake, matching and notify on both backends: every event relayed through each
service's real handlers, SMS through notify's signed webhook. Those needing a coordinator come first, each saying
why (nobody found, given back, a free-text SMS waiting in the inbox); matching names who holds each matched request,
in one read for the whole board; another community's requests and volunteers never appear."""

from __future__ import annotations

import html
import itertools
import json
import re
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from services.intake.adapters import needs_you as needs_you_sql, requests as requests_table
from services.intake.domain import ANSWERS_DUE_SOON, SupportRequest
from shared.clock import utcnow
from shared.communities import get as community
from shared.taxonomy import REQUEST_STATUSES, URGENCIES
from shared.web import claims_for
from tests.integration.test_matching import register
from tests.integration.test_scoping import csrf_pair
from tests.integration.test_withdrawals import SHOPPING, System

FYLDE, CHESHIRE = "fylde-coast", "cheshire-east"


@pytest.fixture
def s(app_for, token, monkeypatch) -> System:
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    return System(app_for, token)


def page(s: System, service: str, path: str, community: str = FYLDE, method: str = "GET", **form) -> str:
    """A page as a coordinator of `community` signed in reads it (or posts a form on it)."""
    with s.client(service) as client:
        with client.session_transaction() as session:
            session["user"] = claims_for(f"kim@{community}.example", "coordinator", [community])
        if method == "POST":
            secret, csrf = csrf_pair(s.apps[service])
            with client.session_transaction() as session:
                session["csrf_token"] = secret
            answer = client.post(path, data={**form, "csrf_token": csrf})
            assert answer.status_code == 303, answer.text
            return ""
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        return answer.get_data(as_text=True)


def groups(board: str) -> tuple[str, str]:
    """The board's "Needs you" group and the rest, as HTML."""
    needing, _, rest = board.partition('id="the-rest"')
    return needing.partition('id="needs-you"')[2], rest


def row_of(group: str, name: str) -> str:
    """The text of the row naming this person, tags dropped ("" when none does)."""
    row = next((r for r in group.split("<tr")[1:] if f">{name}</a>" in r), "")
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())


def offered(s: System, request_id: str) -> tuple[str, str]:
    """The phone and code of the request's open offer, once its SMS went (so its time to answer runs)."""
    s.carry()
    s.send()
    s.carry()
    [(phone, offer)] = [(phone, o) for phone, o in s.offers(request_id).items() if o.status == "open"]
    return phone, offer.code


def test_the_board_puts_what_needs_a_coordinator_first_with_why_and_names_each_tasks_volunteer(s, token):
    names = {"Ann Abbott": "07911 123501", "Bob Brennan": "07911 123502", "Cat Carter": "07911 123503"}
    phones = {s.volunteer(name, phone)["phone"]: name for name, phone in names.items()}
    cheshire = token("coordinator", [CHESHIRE])
    zed = register(s.client("matching"), cheshire, "Zed Elsewhere", "07911 123599")["phone"]

    def log(name: str, headers=None, **changes) -> str:
        body = {"person": {"name": name, "phone": "01253 477000", "address": "1 Promenade, Blackpool",
                           "postcode": "FY1 4AB"}, **changes}
        return s.request(**body) if headers is None else _logged(s, headers, body)

    matched = log("Maud Matched")
    holder, code = offered(s, matched)
    before = page(s, "intake", "/board/latest")
    s.text(holder, f"YES {code}")
    s.carry()
    assert page(s, "intake", "/board/latest") != before  # an acceptance, in matching, moves the open board

    texting = log("Tess Texted")
    texter, _ = offered(s, texting)
    s.text(texter, "Sorry, I'm away that week")  # free text: it waits in the inbox, about Tess's request
    s.carry()

    given = log("Gil Givenback")
    giver, code = offered(s, given)
    s.text(giver, f"YES {code}")
    s.carry()
    s.text(giver, f"CANCEL {code}")
    s.carry()

    stuck = log("Una Unmatched", support_type="planning_session")  # nobody here plans futures
    s.carry()
    assert [s.seen_by_intake(i)["status"] for i in (matched, texting, given, stuck)] == [
        "matched", "offered", "offered", "unmatched"]

    elsewhere = log("Otto Otherplace", headers=cheshire)
    s.carry()
    s.send()
    s.carry()
    [other_offer] = s.offers(elsewhere).values()
    s.text(zed, f"YES {other_offer.code}")
    s.carry()
    assert s.seen_by_intake(elsewhere) is not None

    board = page(s, "intake", "/board")
    needing, rest = groups(board)
    assert re.findall(r'<a href="/board/[0-9a-f-]+">([^<]+)</a>', needing) == ["Una Unmatched", "Gil Givenback",
                                                                           "Tess Texted"]
    assert row_of(needing, "Una Unmatched").count("Nobody found") == 1
    assert "Find a volunteer" in row_of(needing, "Una Unmatched")
    assert "Given back by their volunteer" in row_of(needing, "Gil Givenback")
    assert "1 message needs you" in row_of(needing, "Tess Texted")
    assert '<a href="/sms/conversations#inbox">1 message needs you</a>' in needing
    assert row_of(needing, "Maud Matched") == "" and "Maud Matched" in row_of(rest, "Maud Matched")
    assert f'id="volunteer-{matched}"' in rest

    assigned = page(s, "matching", "/offers/assigned")  # one read names every task's volunteer
    item = re.search(rf'<li data-assigned="{matched}">(.*?)</li>', assigned, re.S).group(1)
    assert phones[holder] in item and f'href="tel:{holder}"' in item
    assert assigned.count("data-assigned=") == 1  # Gil's task was given back; nobody holds the others

    for text in ("Otto Otherplace", "Zed Elsewhere", zed, elsewhere):  # Cheshire East's, never Fylde's
        assert text not in board and text not in assigned
    theirs = page(s, "matching", "/offers/assigned", community=CHESHIRE)
    assert "Zed Elsewhere" in theirs and phones[holder] not in theirs
    assert "Maud Matched" not in page(s, "intake", "/board", community=CHESHIRE)

    from services.notify.domain import InboundMessage

    with s.apps["notify"].extensions["ccs"].sessions() as session:
        [waiting] = session.scalars(sa.select(InboundMessage).where(InboundMessage.attention.is_not(None))).all()
    page(s, "notify", f"/sms/inbox/{waiting.message_sid}/dealt-with", method="POST")
    s.carry()
    needing, rest = groups(page(s, "intake", "/board"))
    assert row_of(needing, "Tess Texted") == "" and "Tess Texted" in row_of(rest, "Tess Texted")


def _logged(s: System, headers: dict, body: dict) -> str:
    answer = s.client("intake").post("/requests", json={**SHOPPING, **body}, headers=headers)
    assert answer.status_code == 201, answer.json
    return answer.json["id"]


def test_a_request_whose_offers_are_about_to_time_out_comes_first_saying_when(app_for, token, monkeypatch):
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    monkeypatch.setenv("CCS_OFFER_MINUTES", "8")  # a routine offer has 8 minutes to answer: about to time out at once
    s = System(app_for, token)
    s.volunteer("Ann Abbott", "07911 123511")
    waiting = s.request(person={"name": "Walt Waiting", "phone": "01253 477000", "address": "1 Promenade, Blackpool",
                                "postcode": "FY1 4AB"})
    offered(s, waiting)
    [due] = [e["due_at"] for e in s.events("matching", "offer.answer_due")]
    needing, _ = groups(page(s, "intake", "/board"))
    at = datetime.fromisoformat(due).astimezone(community(FYLDE).zone).strftime("%H:%M")
    assert f"Offers time out at {at} with no answer yet." in row_of(needing, "Walt Waiting")
    mark = json.loads(page(s, "intake", "/board/latest"))["latest"]
    assert mark.endswith("/1/0")  # the open board's mark moves with the clock too (and with applicants waiting)


def test_needs_you_and_its_sql_twin_agree_on_every_reason_and_every_combination(s):
    """The board orders in SQL (`adapters.needs_you`, so the order holds before its 200-row limit) and explains in
    Python (`SupportRequest.needs_you`): over every combination of what each reason reads, the two pick the same
    requests, whichever backend."""
    s.request()
    now = utcnow()
    answers_due = (None, now - timedelta(minutes=1), now + ANSWERS_DUE_SOON / 2, now + ANSWERS_DUE_SOON,
                   now + ANSWERS_DUE_SOON * 2)  # each side of both bounds, and on the outer one
    grid = list(itertools.product(REQUEST_STATUSES, (0, 1), (None, now - timedelta(hours=1)), answers_due, (0, 1),
                                  URGENCIES, (None, now.date())))
    with s.apps["intake"].extensions["ccs"].sessions() as session:
        template = dict(session.execute(sa.select(requests_table)).mappings().one())
        session.execute(sa.insert(requests_table), [
            {**template, "id": uuid.uuid4(), "status": status, "concerns_open": concerns, "given_back_at": given_back,
             "answers_due_at": due, "sms_waiting": waiting, "urgency": urgency, "visit_overdue_since": overdue}
            for status, concerns, given_back, due, waiting, urgency, overdue in grid])
        session.commit()
        flagged = set(session.scalars(sa.select(requests_table.c.id).where(needs_you_sql(now))))
        everyone = session.scalars(sa.select(SupportRequest)).all()
        assert len(everyone) == len(grid) + 1
        assert {r.id for r in everyone if r.needs_you(now)} == flagged
        reasons = {reason for r in everyone for reason, _ in r.needs_you(now)}
        assert reasons == {"concern", "unmatched", "visit_overdue", "given_back", "answers_due", "sms_waiting",
                           "urgent"}
        assert 0 < len(flagged) < len(everyone)
