"""The admins' dead-letters page (served by metrics), on both backends: what `ccs dead-letters` lists, replays and
purges, in a browser's terms, for admins alone, and never a message's payload."""

from __future__ import annotations

import re
import uuid

import pytest

from shared import bus
from shared.contracts import EXAMPLES, make_event
from tests.helpers import wait_for
from tests.integration.test_bus import drain, publish, running_worker
from tests.integration.test_security import csrf_of, signed_in

QUEUE = "matching.intake.requests"
REASON = "handler failed 1 times: RuntimeError: a bug, fixed in the next release"


def fails(event):
    raise RuntimeError("a bug, fixed in the next release\nDETAIL:  Key (phone)=(+447700900123) already exists.")


@pytest.fixture
def dead(app_for):
    """A request.submitted and a request.cancelled that matching's handler failed on, dead-lettered; the metrics
    app that shows them."""
    submitted = make_event("request.submitted", {**EXAMPLES[("request.submitted", 1)], "request_id": str(uuid.uuid4())})
    cancelled = make_event("request.cancelled", {"request_id": submitted["payload"]["request_id"],
                                                 "reason": "The family have arranged help."})
    publish(submitted, "request.submitted")
    publish(cancelled, "request.cancelled")
    matching, metrics = app_for("matching"), app_for("metrics")
    letters = bus.DeadLetters(metrics.extensions["ccs"].settings)

    with running_worker(matching, "matching", fails, max_attempts=1):
        wait_for("both to be dead-lettered", lambda: len(letters.list()) == 2)
    return metrics, letters, submitted, cancelled


def rows(page: str) -> list[str]:
    """The event ids of the table's rows."""
    return re.findall(r'<tr data-event-id="([^"]*)"', page)


def test_an_admin_sees_each_dead_letter_with_its_reason_and_never_its_payload(dead):
    metrics, _letters, submitted, cancelled = dead
    admin = signed_in(metrics, "admin")
    page = admin.get("/dead-letters")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert sorted(rows(html)) == sorted([submitted["event_id"], cancelled["event_id"]])
    assert QUEUE in html and "request.submitted" in html and "request.cancelled" in html
    assert REASON in html and "2 dead letters" in html
    assert "+447700900123" not in html and "DETAIL" not in html  # the reason's first line only
    payload = submitted["payload"]
    for value in (payload["request_id"], payload["person_ref"], payload["area"], "arranged help"):
        assert value not in html, value  # never the payload
    # the nav leads admins here
    assert 'href="/dead-letters"' in admin.get("/dashboard").get_data(as_text=True)

    chosen = admin.get("/dead-letters?type=request.cancelled").get_data(as_text=True)
    assert rows(chosen) == [cancelled["event_id"]]
    assert rows(admin.get("/dead-letters?queue=notify.matching.offers").get_data(as_text=True)) == []
    refused = admin.get("/dead-letters?queue=no.such.queue")
    assert refused.status_code == 422 and "Choose one of the queues" in refused.get_data(as_text=True)


def test_an_admin_replays_one_back_to_its_queue_and_purges_the_other_after_confirming(dead, app_for):
    metrics, letters, submitted, cancelled = dead
    admin = signed_in(metrics, "admin")
    token = csrf_of(admin.get("/dead-letters").get_data(as_text=True))
    one = {"queue": QUEUE, "type": "request.submitted", "event_id": submitted["event_id"]}

    assert admin.post("/dead-letters/replay", data=one).status_code == 400  # no CSRF token: nothing happens
    assert len(letters.list()) == 2

    replayed = admin.post("/dead-letters/replay", data={**one, "csrf_token": token, "shown_type": "request.submitted"})
    assert replayed.status_code == 303
    assert replayed.headers["Location"] == "/dead-letters?type=request.submitted&done=replayed&count=1"
    assert "Replayed 1 dead letter." in admin.get(replayed.headers["Location"]).get_data(as_text=True)
    [back] = drain(QUEUE, expect=1)  # on its own queue again, its tries reset, to be handled afresh
    assert back.payload["event_id"] == submitted["event_id"]
    assert "x-dead-letter-reason" not in back.headers and "x-attempts" not in back.headers
    assert [letter.event_id for letter in letters.list()] == [cancelled["event_id"]]

    everything = {"csrf_token": token}
    asked = admin.post("/dead-letters/purge", data=everything)  # the "Purge all" button: first, a question
    assert asked.status_code == 200
    question = asked.get_data(as_text=True)
    assert "Purge 1 dead letter for good?" in question and rows(question) == [cancelled["event_id"]]
    assert 'name="confirmed" value="yes"' in question
    assert len(letters.list()) == 1  # nothing gone yet

    # One more dies while the admin reads the question: the purge takes what the question listed, not that one.
    listed_at = re.search(r'name="listed_at" value="([^"]+)"', question)[1]
    later = make_event("request.submitted", {**EXAMPLES[("request.submitted", 1)], "request_id": str(uuid.uuid4())})
    publish(later, "request.submitted")
    with running_worker(app_for("matching"), "matching", fails, max_attempts=1):
        wait_for("the later one to be dead-lettered", lambda: len(letters.list()) == 2)

    purged = admin.post("/dead-letters/purge", data={**everything, "confirmed": "yes", "listed_at": listed_at})
    assert purged.status_code == 303 and purged.headers["Location"] == "/dead-letters?done=purged&count=1"
    assert [letter.event_id for letter in letters.list()] == [later["event_id"]]
    after = admin.get(purged.headers["Location"]).get_data(as_text=True)
    assert "Purged 1 dead letter." in after and rows(after) == [later["event_id"]]


def test_other_roles_are_refused_the_page_and_its_actions(dead):
    metrics, letters, submitted, _cancelled = dead
    for role in ("coordinator", "referrer", "manager"):
        client = signed_in(metrics, role)
        page = client.get("/dead-letters")
        assert page.status_code == 403 and "not for your role" in page.get_data(as_text=True), role
        assert submitted["event_id"] not in page.get_data(as_text=True)
        token = csrf_of(page.get_data(as_text=True))  # the sign-out form's: the refusal is the role's, not the token's
        for action in ("replay", "purge"):
            refused = client.post(f"/dead-letters/{action}", data={"csrf_token": token, "confirmed": "yes"})
            assert refused.status_code == 403, (role, action)
        assert 'href="/dead-letters"' not in page.get_data(as_text=True)  # not in their nav
    assert len(letters.list()) == 2
    stranger = metrics.test_client().get("/dead-letters")
    assert stranger.status_code == 302 and stranger.headers["Location"].startswith("/login?")
