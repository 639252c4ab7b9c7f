"""Surveys by SMS in the browser, every process real, on both backends (issue 17): a coordinator adds their
community's own question for carers; a carer helped is texted the survey through the development gateway and
answers each question; the manager's dashboard shows the carers' answers by question, suppressed."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from shared.demo import text_in
from tests.e2e.conftest import accessible, api, running_site, sign_in
from tests.e2e.test_sms_pages import TOMORROW, sent_offer, volunteer
from tests.helpers import wait_for

CARER = "+447911124777"
OWN = "How supported do you feel as a carer?"


@pytest.fixture
def site(backend, tmp_path):
    """The whole system as real processes on the test's backend, with a user of each role."""
    with running_site(tmp_path / "site") as system:
        yield system


def last_survey_text(client) -> str | None:
    texts = [m for m in client.call("GET", "/sms/messages", params={"to": CARER})
             if m["purpose"] == "survey" and m["status"] in ("sent", "delivered")]
    return texts[0]["body"] if texts else None


def test_a_coordinator_adds_a_question_a_carer_answers_by_sms_and_the_dashboard_shows_it_suppressed(page, site):
    sign_in(page, "coordinator")
    page.goto("/board/surveys")
    expect(page.locator("#ons4 li")).to_have_count(4)
    page.get_by_role("button", name="Add the question").click()  # nothing filled in: each error beside its field
    expect(page.locator("#text-error")).to_be_visible()
    accessible(page, "the surveys page with a mistake")
    page.get_by_label("Who is asked").select_option(label="Carers, after support")
    page.get_by_label("Question", exact=True).fill(OWN)
    page.get_by_role("button", name="Add the question").click()
    expect(page.locator("table.survey-questions")).to_contain_text(OWN)
    accessible(page, "the surveys page with a question of the community's own")

    client = api(site)
    phone = volunteer(site, "practical")
    request = client.call("POST", "/requests", 201, json={
        "person": {"name": "Chris Carer", "phone": CARER, "address": "1 Promenade, Blackpool", "postcode": "FY1 4AB",
                   "is_carer": True},
        "support_type": "shopping", "when": {"start": f"{TOMORROW}T14:00:00+00:00", "end": f"{TOMORROW}T16:00:00+00:00"},
        "consent": {"share_contact": True, "sms_contact": True}})
    code = re.search(r"YES (\d{4})", sent_offer(site, phone)["body"]).group(1)
    text_in(site.url, phone, f"YES {code}", var_dir=site.var_dir)
    wait_for("the request to be matched", lambda: client.call("GET", f"/requests/{request['id']}")["status"]
             == "matched")
    text_in(site.url, phone, f"DONE {code} 2", var_dir=site.var_dir)

    first = wait_for("the survey's first question", lambda: last_survey_text(client))
    assert first.startswith("A short survey about the support you had (5 questions).") and "Chris" not in first
    for reply, next_question in (("seven", "worthwhile"), ("6/10", "happy"), ("8", "anxious"), ("deux", OWN)):
        text_in(site.url, CARER, reply, var_dir=site.var_dir)
        wait_for(f"the question after {reply!r}", lambda q=next_question: q in (last_survey_text(client) or ""))
    thanks = text_in(site.url, CARER, "9", var_dir=site.var_dir)
    assert "Thank you for answering our survey." in thanks.text

    sign_in(page, "manager")
    page.goto("/dashboard?period=month")
    carers = page.locator("section", has=page.get_by_role("heading", name="Carer wellbeing"))

    def counted():
        page.reload()
        return carers.locator("table.by-question tbody tr").count() == 5

    wait_for("metrics to count the answers", counted, timeout=30)
    # five answers, one to each question: shown, 5 would tell that each question had exactly one
    expect(carers.locator('li[data-measure="carer_survey_answers"] .value')).to_have_text("hidden")
    row = carers.locator('tr[data-question="Carers: life satisfaction"]')
    expect(row.locator('td[data-label="Answers"]')).to_have_text("<5")  # one carer: small, never shown
    expect(row.locator('td[data-label="Mean"]')).to_have_text("not shown")
    expect(row.locator('[data-band="7-8"]')).to_have_text(re.compile(r"^7-8: (<5|hidden)$"))
    assert "Chris" not in page.content() and CARER not in page.content()
    accessible(page, "the dashboard with survey answers")
