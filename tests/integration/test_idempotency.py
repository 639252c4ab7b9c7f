"""Every create takes an Idempotency-Key: a request, a volunteer, a group activity. A retry with the same key and
body answers as the first time and makes nothing more; the same key with another body is refused; keys belong to
the caller's communities."""

from __future__ import annotations

import threading
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from tests.integration.test_bus import SHOPPING, VOLUNTEER

ACTIVITY = {"kind": "death_cafe", "held_on": date.today().isoformat(), "attendance": 12, "organisation": "St Anne's Church"}
CREATES = {  # service, path, a body, a different body, the table the service keeps them in
    "request": ("intake", "/requests", SHOPPING, {**SHOPPING, "coordinator_notes": "Prefers mornings"}, "requests"),
    "volunteer": ("matching", "/volunteers", VOLUNTEER, {**VOLUNTEER, "name": "Sam Patil", "phone": "07911 123457"}, "volunteers"),
    "activity": ("metrics", "/activities", ACTIVITY, {**ACTIVITY, "attendance": 13}, "activities"),
}


def _kept(app, table: str) -> int:
    with app.extensions["ccs"].sessions() as session:
        return session.scalar(sa.text(f"SELECT count(*) FROM {table}"))


@pytest.mark.parametrize("create", sorted(CREATES))
def test_a_retried_create_with_its_key_answers_as_the_first_time_and_makes_nothing_more(create, app_for, token):
    service, path, body, other_body, table = CREATES[create]
    app = app_for(service)
    client = app.test_client()
    headers = {**token("coordinator"), "Idempotency-Key": str(uuid.uuid4())}

    first = client.post(path, json=body, headers=headers)
    assert first.status_code == 201, first.json
    assert "Idempotent-Replayed" not in first.headers
    again = client.post(path, json=body, headers=headers)
    assert (again.status_code, again.json, again.headers["Idempotent-Replayed"]) == (201, first.json, "true")
    assert again.headers.get("Location") == first.headers.get("Location")  # a retrying client follows it too
    assert _kept(app, table) == 1

    reused = client.post(path, json=other_body, headers=headers)
    assert reused.status_code == 422 and reused.mimetype == "application/problem+json"
    assert "Idempotency-Key" in reused.json["detail"]
    too_long = client.post(path, json=other_body, headers={**headers, "Idempotency-Key": "k" * 201})
    assert too_long.status_code == 400 and "Idempotency-Key" in too_long.json["detail"]
    assert _kept(app, table) == 1

    # The same subject and key from another community's token is another caller: its own create, not this answer.
    elsewhere = client.post(path, json={k: v for k, v in other_body.items() if k != "community"}, headers={
        **token("coordinator", communities=("cheshire-east",)), "Idempotency-Key": headers["Idempotency-Key"]})
    assert elsewhere.status_code == 201 and "Idempotent-Replayed" not in elsewhere.headers
    assert elsewhere.json != first.json and _kept(app, table) == 2


def test_each_create_documents_the_idempotency_key(app_for):
    for service, path, *_ in CREATES.values():
        document = app_for(service).test_client().get(f"/openapi/{service}.json").json
        parameters = document["paths"][path]["post"]["parameters"]
        assert [p["in"] for p in parameters if p["name"] == "Idempotency-Key"] == ["header"], (service, path)


@pytest.mark.parametrize("create", sorted(CREATES))
def test_retries_racing_with_one_key_make_one_and_each_gets_the_first_answer_or_a_409(create, app_for, token):
    """Four copies of one create, sent at the same moment with one key (a client's retries overlapping): one is
    made; each of the others waits for it and answers 409 (retry) or, once it is committed, the first answer."""
    service, path, body, _other, table = CREATES[create]
    app = app_for(service)
    headers = {**token("coordinator"), "Idempotency-Key": str(uuid.uuid4())}
    start, answers = threading.Barrier(4), []

    def send():
        client = app.test_client()
        start.wait()
        answers.append(client.post(path, json=body, headers=headers))

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=60)
    made = [a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]
    assert len(answers) == 4 and len(made) == 1, [(a.status_code, a.json) for a in answers]
    for answer in answers:
        assert (answer.status_code == 409 and answer.mimetype == "application/problem+json"
                or answer.status_code == 201 and answer.json == made[0].json), (answer.status_code, answer.json)
    assert _kept(app, table) == 1
