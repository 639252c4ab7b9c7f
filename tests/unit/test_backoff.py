"""How a failed send is retried: the back-off doubles, is jittered and bounded; and which of Twilio's answers
are worth retrying at all."""

from __future__ import annotations

import random

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from services.notify.adapters import outcome_of
from services.notify.bootstrap import NotifySettings
from services.notify.domain import Retry
from shared.config import SettingsError


def test_the_back_off_doubles_is_jittered_and_bounded():
    retry = Retry(max_attempts=10, base_seconds=2, cap_seconds=60)
    rng = random.Random(7)
    delays = [[retry.delay(n, rng).total_seconds() for _ in range(200)] for n in range(1, 9)]
    for n, seen in enumerate(delays, start=1):
        step = min(60, 2 * 2 ** (n - 1))
        assert step / 2 <= min(seen) and max(seen) <= step
        assert len(set(seen)) > 100  # jittered: senders retrying together spread out
    assert min(delays[1]) >= max(delays[0]) and max(delays[-1]) <= 60  # grows, then stops growing
    assert max(retry.delay(60, rng).total_seconds() for _ in range(50)) <= 60  # no overflow, still capped


def test_the_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("CCS_SMS_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("CCS_SMS_RETRY_BASE_SECONDS", "0.5")
    assert NotifySettings.from_env().retry == Retry(max_attempts=7, base_seconds=0.5)
    monkeypatch.delenv("CCS_SMS_MAX_ATTEMPTS")
    monkeypatch.delenv("CCS_SMS_RETRY_BASE_SECONDS")
    assert NotifySettings.from_env().retry == Retry(max_attempts=5, base_seconds=2.0)


@pytest.mark.parametrize("name, value", [("CCS_SMS_MAX_ATTEMPTS", "lots"), ("CCS_SMS_MAX_ATTEMPTS", "0"),
                                         ("CCS_SMS_RETRY_BASE_SECONDS", "-1"), ("CCS_QUIET_HOURS", "nights")])
def test_a_bad_setting_is_refused_by_name(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    with pytest.raises(SettingsError, match=name):
        NotifySettings.from_env({name: value})


@pytest.mark.parametrize("value, hours", [(None, None), ("off", "off"), ("", "off"), ("22:00-07:00", "22:00-07:00")])
def test_quiet_hours_are_each_communitys_own_unless_overridden(monkeypatch, tmp_path, value, hours):
    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    assert NotifySettings.from_env({} if value is None else {"CCS_QUIET_HOURS": value}).quiet_hours == hours


def twilio_error(status: int, code: int | None) -> TwilioRestException:
    return TwilioRestException(status, "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
                               msg="refused", code=code, method="POST")


@pytest.mark.parametrize("exc, outcome", [
    (twilio_error(429, 20429), ("retry", "429 20429")),
    (twilio_error(500, None), ("retry", "500")),
    (twilio_error(503, 20503), ("retry", "503 20503")),
    (requests.ConnectionError("reset"), ("retry", "ConnectionError")),
    (requests.ReadTimeout("slow"), ("retry", "ReadTimeout")),
    (twilio_error(400, 21610), ("opted_out", "400 21610")),
    (twilio_error(400, 21211), ("invalid", "400 21211")),
    (twilio_error(400, 21614), ("invalid", "400 21614")),
    (twilio_error(400, 21408), ("failed", "400 21408")),  # no permission to send to that region
    (twilio_error(401, 20003), ("failed", "401 20003")),
    (ValueError("a bug"), ("failed", "ValueError")),
])
def test_only_a_busy_or_unreachable_twilio_is_retried(exc, outcome):
    assert outcome_of(exc) == outcome
