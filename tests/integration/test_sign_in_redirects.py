"""Signing in and out, on both backends, lead only to a path on this site, whatever `next` says."""

from __future__ import annotations

import pytest

from services.intake import service_layer
from services.intake.adapters import passwords

PASSWORD = "a long enough passphrase"
OFF_SITE = ["/%09/evil.example", "/\t/evil.example", "/\\evil.example", "//evil.example", "https://evil.example",
            "/\t/evil", "/%2F/evil.example", "javascript:alert(1)", "\n//evil.example"]


@pytest.fixture
def intake(app_for):
    app = app_for("intake")
    service_layer.create_user(app.extensions["ccs"].uow(), passwords, "kim@fylde.example", "Kim", "coordinator",
                              ["fylde-coast"], None, PASSWORD)
    return app


def csrf_of(client) -> str:
    """The CSRF token the sign-in page's form carries."""
    page = client.get("/login").get_data(as_text=True)
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def sign_in(client, next_value: str, raw_query: bool = False):
    form = {"email": "kim@fylde.example", "password": PASSWORD, "csrf_token": csrf_of(client)}
    if raw_query:  # as a link would carry it: /login?next=/%09/evil.example
        return client.post(f"/login?next={next_value}", data=form)
    return client.post("/login", data={**form, "next": next_value})


def test_sign_in_with_an_off_site_next_lands_on_the_board_and_a_path_here_is_followed(intake):
    for target in OFF_SITE:
        for raw in (False, True):
            if raw and any(ch in target for ch in "\t\n"):
                continue  # a raw query string cannot carry them; their encoded forms are in the table
            answer = sign_in(intake.test_client(), target, raw_query=raw)
            assert answer.status_code == 302, answer.get_data(as_text=True)[:300]
            assert answer.headers["Location"] == "/board", (target, raw)
        form = intake.test_client().get("/login", query_string={"next": target}).get_data(as_text=True)
        assert 'name="next" value=""' in form, target  # the form carries only a safe path on (or none)
    answer = sign_in(intake.test_client(), "/board?status=unmatched")
    assert (answer.status_code, answer.headers["Location"]) == (302, "/board?status=unmatched")


def test_sign_out_with_an_off_site_next_lands_on_the_sign_in_page(intake):
    for target in OFF_SITE:
        client = intake.test_client()
        sign_in(client, "/board")
        token = client.get("/board").get_data(as_text=True).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = client.post("/logout", data={"csrf_token": token, "next": target})
        assert (answer.status_code, answer.headers["Location"]) == (302, "/login"), target
        assert client.get("/board").status_code == 302  # signed out


@pytest.mark.parametrize("role, home", [("coordinator", "/board"), ("admin", "/communities"),
                                        ("manager", "/dashboard"), ("referrer", "/my-referrals")])
def test_each_role_signing_in_with_nowhere_to_go_lands_on_its_own_home(intake, role, home):
    """A manager was sent to the board, which refused them: each role has a page of its own to land on."""
    email = f"{role}@fylde.example"
    service_layer.create_user(intake.extensions["ccs"].uow(), passwords, email, role.title(), role,
                              ["fylde-coast"], "Fylde PCN" if role == "referrer" else None, PASSWORD)
    client = intake.test_client()
    answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert (answer.status_code, answer.headers["Location"]) == (302, home)
    board = client.get("/board")  # the site's name leads home; a page not for the role says where home is
    assert f'<a class="brand" href="{home}">' in board.text
    if role in ("manager", "referrer"):
        assert board.status_code == 403 and f'<a href="{home}">Go to your own start page</a>' in board.text
