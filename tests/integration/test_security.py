"""Security on both backends: security headers on every answer, CSRF tokens on every form, the sign-in lock-out,
token lifetimes and revocation heard by every service."""

from __future__ import annotations

import re
import time

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from services.intake import service_layer
from services.intake.adapters import outbox as intake_outbox
from services.intake.adapters import passwords
from services.matching.adapters import revocations as matching_revocations
from shared import config, frontdoor
from shared.cli import main
from shared.clock import utcnow
from shared.config import SERVICES
from shared.contracts import load_event
from shared.revocation import REFRESH_SECONDS
from shared.web import _serializer, claims_for, issue_token, read_token
from tests.helpers import dispatcher

PASSWORD = "a long enough passphrase"
PAGES = {"intake": "/board", "matching": "/roster", "notify": "/sms/conversations", "metrics": "/dashboard"}
READS = {"intake": "/requests", "matching": "/volunteers", "notify": "/sms/messages", "metrics": "/activity"}
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|javascript:", re.I)


def signed_in(app, role: str = "admin", communities=("fylde-coast",)):
    """A test client with a signed-in session."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["user"] = claims_for(f"{role}@example.org", role, communities)
    return client


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def assert_secured(response, https: bool = False) -> None:
    """The headers every answer must carry."""
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in directives["default-src"] + directives["script-src"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert ("Strict-Transport-Security" in response.headers) is https


# --- headers ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_every_page_and_api_answer_of_each_service_carries_the_security_headers(app_for, token, name):
    client = signed_in(app_for(name))
    page = client.get(PAGES[name])
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert not INLINE_SCRIPT.search(page.text), "a page has inline script, which the policy would block"
    answers = [page, client.get(READS[name], headers=token("admin")), client.get(READS[name]),
               client.get(f"/openapi/{name}.json"), client.get("/no-such-page"), client.get(f"/healthz/{name}")]
    assert [a.status_code for a in answers][1:] == [200, 401, 200, 404, 200]
    for answer in answers:
        assert_secured(answer)


def test_hsts_is_sent_only_when_the_public_address_is_https(app_for, token, monkeypatch):
    assert_secured(app_for("intake").test_client().get("/login"))
    monkeypatch.setenv("PUBLIC_URL", "https://ccs.example.org")
    answer = app_for("intake").test_client().get("/login")
    assert_secured(answer, https=True)
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_the_front_door_secures_its_own_answers_and_runs_no_inline_script(monkeypatch):
    sent = {}

    def upstream(self, method, url, headers=None, **kwargs):
        sent.update(headers)
        answer = requests.Response()
        answer.status_code, answer._content = 200, b"{}"
        answer.headers["Content-Type"] = "application/json"
        return answer

    monkeypatch.setattr(requests.Session, "request", upstream)
    app = frontdoor.create_app({name: f"http://{name}.invalid" for name in SERVICES}, "https://ccs.example.org")
    client = app.test_client()

    def get(path: str, **options):
        with client.get(path, **options) as answer:
            answer.get_data()
            return answer

    docs = get("/docs")
    assert not INLINE_SCRIPT.search(docs.text)
    scripts = re.findall(r'<script src="([^"]+)"', docs.text)
    assert scripts == ["/docs/static/swagger-ui-bundle.js", "/static/docs.js"]
    assert all(get(src).status_code == 200 for src in scripts)
    assert "SwaggerUIBundle(" in get("/static/docs.js").text
    assert "window.print()" in get("/static/print.js").text
    for answer in (get("/"), docs, get("/static/print.js"), get("/nowhere"),
                   get("/requests", headers={"X-Forwarded-For": "203.0.113.5"},
                       environ_base={"REMOTE_ADDR": "198.51.100.7"})):
        assert_secured(answer, https=True)
    # The service is told where the request came from, after whatever the proxies before said.
    assert sent["X-Forwarded-For"] == "203.0.113.5, 198.51.100.7"


# --- CSRF ------------------------------------------------------------------------------------------------------------


def test_a_form_post_without_the_csrf_token_is_refused_and_with_it_works(app_for):
    intake = signed_in(app_for("intake"), "coordinator")
    token = csrf_of(intake.get("/board/new").text)
    for forged in ({}, {"csrf_token": "not-the-token"}):
        refused = intake.post("/board/new", data={**forged, "person.name": "Pat"})
        assert refused.status_code == 400
        assert "The form has expired or did not come from this site" in refused.json["detail"]
    shown = intake.post("/board/new", data={"csrf_token": token, "person.name": "Pat"})
    assert shown.status_code == 422 and "Postcode" in shown.text  # taken: the form is checked, and shown again

    matching = signed_in(app_for("matching"), "coordinator")
    assert matching.post("/roster/import", data={}).status_code == 400
    imported = matching.post("/roster/import", data={"csrf_token": csrf_of(matching.get("/roster/import").text)})
    assert imported.status_code == 422 and "Choose a CSV file to import." in imported.text

    notify = signed_in(app_for("notify"), "coordinator")
    assert notify.post("/simulator", data={"phone": "not a phone", "body": "YES"}).status_code == 400
    simulated = notify.post("/simulator", data={"csrf_token": csrf_of(notify.get("/simulator").text),
                                                "phone": "not a phone", "body": "YES"})
    assert simulated.status_code == 422


def test_sign_in_and_sign_out_need_the_token_and_one_service_s_token_works_at_another(app_for):
    intake_app, metrics_app = app_for("intake"), app_for("metrics")
    service_layer.create_user(intake_app.extensions["ccs"].uow(), passwords, "kim@example.org", "Kim", "manager",
                              ["fylde-coast"], None, PASSWORD)
    browser = intake_app.test_client()
    login = {"email": "kim@example.org", "password": PASSWORD}
    assert browser.post("/login", data=login).status_code == 400
    signed = browser.post("/login", data={**login, "csrf_token": csrf_of(browser.get("/login").text)})
    assert signed.status_code == 302
    # The dashboard (metrics) shows the sign-out form, which posts to intake with the session's token (one cookie,
    # as one browser keeps it for the one address of the front door).
    dashboard = metrics_app.test_client()
    dashboard.set_cookie("ccs_session", browser.get_cookie("ccs_session").value)
    token = csrf_of(dashboard.get("/dashboard").text)
    browser.set_cookie("ccs_session", dashboard.get_cookie("ccs_session").value)
    assert browser.post("/logout").status_code == 400
    assert browser.get("/board").status_code == 403  # still signed in (as a manager, who has no board)
    out = browser.post("/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["Location"]) == (302, "/login")
    assert browser.get("/board").status_code == 302  # signed out: to the sign-in page


def test_bearer_token_calls_and_twilio_webhooks_need_no_csrf_token(app_for, token):
    intake = app_for("intake").test_client()
    assert intake.post("/requests", json={}).status_code == 401  # the API says what is missing: a token
    assert intake.post("/requests", json={}, headers=token("coordinator")).status_code == 422
    notify = app_for("notify").test_client()
    unsigned = notify.post("/sms/inbound", data={"From": "+447911123456", "To": "+447700900100", "Body": "YES",
                                                 "MessageSid": "SM" + "1" * 32})
    assert unsigned.status_code == 403  # refused for its signature, not for a CSRF token


# --- sign-in lock-out ----------------------------------------------------------------------------------------------


def sign_in_attempt(client, email: str, password: str, address: str):
    """Post the sign-in form (with its CSRF token) as a browser at `address` behind the proxy would."""
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       headers={"X-Forwarded-For": f"10.9.9.9, {address}"})


def test_five_failed_sign_ins_lock_the_account_in_every_web_process_even_for_the_right_password(app_for):
    first, second = app_for("intake"), app_for("intake")  # two web processes on one database
    for email in ("kim@example.org", "lou@example.org"):
        service_layer.create_user(first.extensions["ccs"].uow(), passwords, email, "Kim", "coordinator",
                                  ["fylde-coast"], None, PASSWORD)
    one, two = first.test_client(), second.test_client()
    for n in range(5):
        assert sign_in_attempt(one, "kim@example.org", "wrong password!", f"198.51.100.{n}").status_code == 401
    locked = sign_in_attempt(two, "Kim@Example.org", PASSWORD, "198.51.100.99")
    assert locked.status_code == 429
    assert 14 * 60 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert "Too many failed sign-ins for this account or from this address. Try again in 15 minutes." in locked.text
    assert two.get("/board").status_code == 302  # not signed in
    assert sign_in_attempt(two, "lou@example.org", PASSWORD, "198.51.100.99").status_code == 302


def test_five_failed_sign_ins_from_one_address_lock_that_address_for_every_account(app_for):
    app = app_for("intake")
    service_layer.create_user(app.extensions["ccs"].uow(), passwords, "kim@example.org", "Kim", "coordinator",
                              ["fylde-coast"], None, PASSWORD)
    client = app.test_client()
    for n in range(5):
        assert sign_in_attempt(client, f"guess{n}@example.org", "wrong password!", "203.0.113.66").status_code == 401
    assert sign_in_attempt(client, "kim@example.org", PASSWORD, "203.0.113.66").status_code == 429
    assert sign_in_attempt(app.test_client(), "kim@example.org", PASSWORD, "203.0.113.67").status_code == 302


# --- tokens: lifetime and revocation ---------------------------------------------------------------------------------


def secret() -> str:
    return config.load("cli").secret_key


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_expired_token_or_one_with_no_id_is_refused(app_for):
    client = app_for("matching").test_client()
    claims = read_token(secret(), issue_token(secret(), "kim@example.org", "coordinator"))
    expired = _serializer(secret()).dumps({**claims, "exp": time.time() - 1})
    answer = client.get("/volunteers", headers=bearer(expired))
    assert (answer.status_code, answer.json["detail"]) == (401, "The token has expired.")
    old_style = _serializer(secret()).dumps(claims_for("kim@example.org", "coordinator"))  # before tokens had ids
    answer = client.get("/volunteers", headers=bearer(old_style))
    assert (answer.status_code, answer.json["detail"]) == (401, "The token is not valid.")
    assert client.get("/volunteers", headers=bearer(_serializer(secret()).dumps(claims))).status_code == 200


def revoke(*args: str) -> None:
    done = CliRunner().invoke(main, ["tokens", "revoke", *args], catch_exceptions=False)
    assert done.exit_code == 0, done.output


def revocations_published(app) -> list:
    """The `token.revoked` events in intake's outbox."""
    with app.extensions["ccs"].sessions() as session:
        bodies = session.scalars(sa.select(intake_outbox.table.body)
                                 .where(intake_outbox.table.event_type == "token.revoked")
                                 .order_by(intake_outbox.table.id)).all()
    return [load_event(body) for body in bodies]


def test_a_revoked_token_gets_401_from_every_service_once_the_event_is_handled(app_for):
    apps = {name: app_for(name) for name in SERVICES}
    clients = {name: app.test_client() for name, app in apps.items()}
    token, other = (issue_token(secret(), "kim@example.org", "admin") for _ in range(2))
    assert {name: clients[name].get(READS[name], headers=bearer(token)).status_code for name in SERVICES} == \
        dict.fromkeys(SERVICES, 200)

    revoke(read_token(secret(), token)["jti"])
    refused = clients["intake"].get(READS["intake"], headers=bearer(token))
    assert (refused.status_code, refused.json["detail"]) == (401, "The token has been revoked.")  # intake's own
    [event] = revocations_published(apps["intake"])
    for name in ("matching", "notify", "metrics"):
        assert clients[name].get(READS[name], headers=bearer(token)).status_code == 200  # not heard of yet
        dispatcher(apps[name], name)(event)
        refused = clients[name].get(READS[name], headers=bearer(token))
        assert (refused.status_code, refused.json["detail"]) == (401, "The token has been revoked."), name
    assert {name: clients[name].get(READS[name], headers=bearer(other)).status_code for name in SERVICES} == \
        dict.fromkeys(SERVICES, 200)  # another token of the same holder still works


def test_revoking_a_users_tokens_refuses_those_issued_before_and_not_those_after(app_for):
    apps = {name: app_for(name) for name in ("intake", "notify")}
    earlier = issue_token(secret(), "kim@example.org", "admin")
    someone_else = issue_token(secret(), "lou@example.org", "admin")
    revoke("--user", "Kim@Example.org")
    later = issue_token(secret(), "kim@example.org", "admin")
    [event] = revocations_published(apps["intake"])
    assert "kim@example.org" not in str(event)  # the holder travels as a digest
    dispatcher(apps["notify"], "notify")(event)
    for name, app in apps.items():
        client = app.test_client()
        assert client.get(READS[name], headers=bearer(earlier)).status_code == 401
        assert client.get(READS[name], headers=bearer(later)).status_code == 200
        assert client.get(READS[name], headers=bearer(someone_else)).status_code == 200


def test_a_web_process_rereads_revocations_made_elsewhere_within_its_refresh_and_not_on_every_request(app_for):
    app = app_for("matching")
    context = app.extensions["ccs"]
    ticks = [0.0]
    context.revoked = matching_revocations.list_for(context.sessions, context.settings.secret_key,
                                                    monotonic=lambda: ticks[0])
    token = issue_token(secret(), "kim@example.org", "coordinator")
    reads = []
    sa.event.listen(context.engine, "before_cursor_execute",
                    lambda *args: reads.append(args[2]) if args[2].startswith("SELECT revoked_tokens") else None)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/volunteers", headers=bearer(token)).status_code == 200
    assert len(reads) == 1  # one read for five requests
    # Another process (a worker) records the revocation: this one has no notice of it but the table.
    with context.engine.begin() as connection:
        connection.execute(sa.insert(matching_revocations.table.__table__).values(
            jti=read_token(secret(), token)["jti"], revoked_at=utcnow()))
    assert client.get("/volunteers", headers=bearer(token)).status_code == 200  # its copy is still fresh
    ticks[0] += REFRESH_SECONDS
    assert client.get("/volunteers", headers=bearer(token)).status_code == 401
    assert len(reads) == 2


def test_every_service_keeps_revoked_tokens_in_a_table_of_the_shared_shape(app_for):
    for name in SERVICES:
        columns = sa.inspect(app_for(name).extensions["ccs"].engine).get_columns("revoked_tokens")
        assert [c["name"] for c in columns] == ["id", "jti", "subject_digest", "issued_before", "revoked_at"], name
