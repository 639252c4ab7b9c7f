"""The give-back race, on both backends, through the real handlers: a volunteer gives a task back and nobody else
is eligible, so matching publishes `task.given_back` and then `request.unmatched`; whichever order intake hears
them in, it ends where matching is (unmatched), with both on its timeline in the order they happened."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from shared.contracts import load_event
from tests.helpers import dispatcher
from tests.integration.test_bus import SHOPPING
from tests.integration.test_matching import Matching, register


def outbox_of(app, outbox) -> list[dict]:
    """The events a service staged in its outbox, oldest first, as they go on the wire."""
    table = outbox.table
    with app.extensions["ccs"].sessions() as session:
        return [row.body for row in session.scalars(sa.select(table).order_by(table.id))]


@pytest.mark.parametrize("order", ["as published", "unmatched first"])
def test_a_task_given_back_with_nobody_else_eligible_ends_unmatched_in_intake_whatever_the_order(
        app_for, token, order):
    from services.intake.adapters import outbox as intake_outbox
    from services.intake.domain import SupportRequest
    from services.matching.adapters import outbox as matching_outbox

    intake_app, matching_app = app_for("intake"), app_for("matching")
    intake, matching = intake_app.test_client(), Matching(matching_app)
    to_intake = dispatcher(intake_app, "intake")
    coordinator = token("coordinator")
    volunteer = register(matching_app.test_client(), coordinator, "Only One", "07911123600")

    request_id = intake.post("/requests", json=SHOPPING, headers=coordinator).json["id"]
    [submitted] = [e for e in outbox_of(intake_app, intake_outbox) if e["type"] == "request.submitted"]
    matching.dispatch(load_event(submitted))
    [offer] = matching.offers(request_id)
    matching.reply(volunteer["phone"], "YES", offer.code)
    matching.reply(volunteer["phone"], "CANCEL", offer.code)
    assert matching.request(request_id).status == "unmatched"

    published = [e for e in outbox_of(matching_app, matching_outbox) if e["payload"].get("request_id") == request_id]
    assert [(e["type"], e["payload"]["sequence"]) for e in published] == [
        ("offer.made", 1), ("offer.accepted", 2), ("request.matched", 3), ("task.given_back", 4),
        ("request.unmatched", 5)]
    *before, given_back, unmatched = published
    race = [given_back, unmatched] if order == "as published" else [unmatched, given_back]
    for body in [*before, *race]:
        to_intake(load_event(body))

    seen = intake.get(f"/requests/{request_id}", headers=coordinator).json
    assert seen["status"] == "unmatched", order
    assert seen["outcome"] == unmatched["payload"]["reason"]
    assert [t["what"] for t in seen["timeline"]] == [
        "submitted", "offered", "accepted", "matched", "given back", "unmatched"]
    board = intake.get("/requests?status=unmatched", headers=coordinator).json
    assert [r["id"] for r in board] == [request_id]
    with intake_app.extensions["ccs"].sessions() as session:
        assert session.get(SupportRequest, uuid.UUID(request_id)).matching_sequence == 5
