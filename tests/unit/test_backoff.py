"""How a failed send is retried: the back-off doubles, is jittered and bounded; and which of Twilio's answers
are worth retrying at all."""

from __future__ import annotations

import random

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from services.notify.sms import Retry, outcome_of


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


def test_the_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CCS_SMS_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("CCS_SMS_RETRY_BASE_SECONDS", "0.5")
    assert Retry.from_env() == Retry(max_attempts=7, base_seconds=0.5)
    monkeypatch.delenv("CCS_SMS_MAX_ATTEMPTS")
    monkeypatch.delenv("CCS_SMS_RETRY_BASE_SECONDS")
    assert Retry.from_env() == Retry(max_attempts=5, base_seconds=2.0)


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
