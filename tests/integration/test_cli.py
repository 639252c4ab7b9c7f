"""The `ccs` command: users, tokens and the gazetteer, on both backends."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from shared import config, gazetteer
from shared.cli import main
from shared.web import read_token

PASSWORD = "a long enough passphrase"
PERSON = {"name": "Lee Leeds", "phone": "0113 496 0000", "postcode": "LS1 4DY"}
REQUEST = {"support_type": "shopping", "consent": {"share_contact": True, "sms_contact": True},
           "when": {"days": ["mon"], "part_of_day": "morning"}}


def ccs(*args: str, expect: int = 0) -> str:
    """Run `ccs` in this process and return what it printed."""
    done = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert done.exit_code == expect, done.output
    return done.output


def test_a_user_is_created_and_issued_a_token_with_their_role_and_communities(migrated):
    out = ccs("users", "create", "--email", "Mo@Example.org", "--name", "Mo", "--role", "manager",
              "--community", "fylde-coast", "--community", "cheshire-east", "--password", PASSWORD)
    assert out.strip() == "mo@example.org: manager in cheshire-east, fylde-coast"
    claims = read_token(config.load("cli").secret_key, ccs("tokens", "issue", "--user", "mo@example.org").strip())
    assert claims["sub"] == "mo@example.org"
    assert claims["role"] == "manager"
    assert claims["communities"] == ["cheshire-east", "fylde-coast"]


def test_a_user_cannot_be_created_twice_or_with_a_role_that_does_not_exist(migrated):
    ccs("users", "create", "--email", "al@example.org", "--name", "Al", "--role", "coordinator", "--password",
        PASSWORD)
    again = CliRunner().invoke(main, ["users", "create", "--email", "al@example.org", "--name", "Al",
                                      "--role", "coordinator", "--password", PASSWORD])
    assert again.exit_code == 1
    assert "a user al@example.org already exists" in again.output
    assert "'superuser' is not one of" in ccs("users", "create", "--email", "x@example.org", "--name", "X",
                                              "--role", "superuser", "--password", PASSWORD, expect=2)


@pytest.mark.parametrize("password, why", [
    ("pw", "The password must be at least 12 characters long (this one has 2)"),
    ("qwerty123456", "That password is on a list of commonly used passwords"),
])
def test_a_password_that_would_be_easy_to_guess_is_refused_and_no_user_is_made(migrated, password, why):
    out = ccs("users", "create", "--email", "al@example.org", "--name", "Al", "--role", "coordinator",
              "--password", password, expect=1)
    assert why in out
    assert "no active user al@example.org" in ccs("tokens", "issue", "--user", "al@example.org", expect=2)


def test_a_token_has_an_id_and_lasts_the_deployments_lifetime_or_less(migrated, monkeypatch):
    secret = config.load("cli").secret_key
    claims = read_token(secret, ccs("tokens", "issue", "--role", "coordinator").strip())
    assert len(claims["jti"]) == 32 and claims["exp"] - claims["iat"] == pytest.approx(30 * 86400)
    claims = read_token(secret, ccs("tokens", "issue", "--role", "coordinator", "--days", "2").strip())
    assert claims["exp"] - claims["iat"] == pytest.approx(2 * 86400)
    monkeypatch.setenv("CCS_TOKEN_LIFETIME_DAYS", "7")
    claims = read_token(secret, ccs("tokens", "issue", "--role", "coordinator", "--days", "90").strip())
    assert claims["exp"] - claims["iat"] == pytest.approx(7 * 86400)  # --days may shorten it, never lengthen it
    assert "0 is not in the range x>=1" in ccs("tokens", "issue", "--role", "coordinator", "--days", "0", expect=2)


def test_tokens_are_revoked_by_id_by_the_token_itself_or_for_a_user(migrated):
    token = ccs("tokens", "issue", "--role", "coordinator").strip()
    jti = read_token(config.load("cli").secret_key, token)["jti"]
    assert ccs("tokens", "revoke", jti).strip() == f"revoked token {jti}"
    assert ccs("tokens", "revoke", token).strip() == f"revoked token {jti}"
    assert ccs("tokens", "revoke", "--user", "Mo@Example.org").strip() == \
        "revoked every token of mo@example.org issued until now"
    assert "is not a token id" in ccs("tokens", "revoke", "12345", expect=2)
    assert "that is not a token of this deployment" in ccs("tokens", "revoke", "a.forged.token", expect=2)
    assert "give a token (or its id), or --user EMAIL" in ccs("tokens", "revoke", expect=2)


def test_tokens_for_a_role_and_for_nobody(migrated):
    claims = read_token(config.load("cli").secret_key,
                        ccs("tokens", "issue", "--role", "referrer", "--subject", "gp@pcn.example").strip())
    assert (claims["sub"], claims["role"], claims["communities"]) == ("gp@pcn.example", "referrer", ["fylde-coast"])
    assert "no active user nobody@example.org" in ccs("tokens", "issue", "--user", "nobody@example.org", expect=2)
    assert "give --user EMAIL, or --role ROLE" in ccs("tokens", "issue", expect=2)


def test_a_loaded_geonames_file_of_full_postcodes_recentres_their_district_for_every_service(app_for, token,
                                                                                            tmp_path):
    client = app_for("intake").test_client()
    before = client.post("/requests", json={**REQUEST, "person": PERSON}, headers=token("coordinator"))
    assert before.status_code == 201 and before.json["person"]["area"] == "LS1"  # every district ships
    assert before.json["person"]["latitude"] != pytest.approx(53.797, abs=1e-4)

    geonames = tmp_path / "GB_full.txt"
    rows = [("LS1 4DY", 53.7960, -1.5480), ("LS1 5AA", 53.7980, -1.5460)]
    geonames.write_text("".join(f"GB\t{code}\tLeeds\tEngland\tENG\tLeeds\t\t\t\t{lat}\t{lon}\t6\n"
                                for code, lat, lon in rows), encoding="utf-8")
    out = ccs("gazetteer", "load", str(geonames))
    assert out.strip() == f"{len(gazetteer.places())} postcode districts loaded from GB_full.txt"

    after = client.post("/requests", json={**REQUEST, "person": PERSON}, headers=token("coordinator"))
    assert after.status_code == 201, after.json
    assert after.json["person"]["area"] == "LS1"
    assert after.json["person"]["latitude"] == pytest.approx(53.797)
    assert client.post("/requests", json={**REQUEST, "person": {**PERSON, "postcode": "FY1 4AB"}},
                       headers=token("coordinator")).status_code == 201  # the shipped districts are still known


def test_a_file_that_is_not_geonames_is_refused_with_its_line_number(migrated, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("GB\tFY1\tBlackpool\tEngland\tENG\tBlackpool\t\t\t\t53.8\t-3.05\t4\nnot,a,geonames,file\n")
    done = CliRunner().invoke(main, ["gazetteer", "load", str(bad)])
    assert done.exit_code != 0
    assert "bad.txt line 2" in str(done.exception) + done.output


def test_metrics_rebuild_reports_what_it_changed(migrated):
    assert ccs("metrics", "rebuild").strip() == "metrics: 0 facts changed"
