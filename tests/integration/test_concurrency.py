"""Matching scaled out: two workers and two timer leaders on one PostgreSQL database.

Every use case takes its locks in one order (the request's row, then its offers, volunteers last: see the
docstring of services/matching/service_layer.py), an offer's code is taken without waiting, the timer jobs claim
their rows with FOR UPDATE SKIP LOCKED, and a timer leader checks it still holds its lock before each run. These
tests drive matching hard enough for a wrong order, a wait in the unique index of offer codes, a double claim or a
leader that did not notice it lost its lock to show. Those that need several connections at once run on
PostgreSQL + RabbitMQ only (SQLite has one writer at a time); the timer loop and the file lock are tested alone.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa

from services.matching.entrypoints import timers
from shared.contracts import load_event, make_event
from tests.helpers import wait_for
from tests.integration.test_matching import SHOPPING, TOMORROW, Matching, register

REAL_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgres+rabbitmq", marks=pytest.mark.real_backends)], indirect=True)

STORM_SECONDS = 24.0  # test (a) starts storms while one more fits in this time (and runs at least MIN_STORMS)
MIN_STORMS = 2
REQUESTS_PER_STORM = 4
BATCH = 20  # offers made at once: a cascade makes this many, with new codes
YES_SHARE = 0.25  # the share of requests one of whose first batch says YES; in the others all decline or expire
VOLUNTEERS = 3 * BATCH
FREE_CODES = 300  # of the 9,000 offer codes, the rest held by other open offers


def sent(offer_id, minutes_ago: int = 120) -> dict:
    """notify's sms.sent for an offer, sent long enough ago that its time to answer is up."""
    return {**make_event("sms.sent", {"message_id": str(uuid.uuid4()), "purpose": "offer",
                                      "provider_sid": "SM" + uuid.uuid4().hex, "offer_id": str(offer_id)}),
            "occurred_at": (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()}


def failed(offer_id) -> dict:
    """notify's sms.failed for an offer: it counts as declined."""
    return make_event("sms.failed", {"message_id": str(uuid.uuid4()), "purpose": "offer", "reason": "undelivered",
                                     "offer_id": str(offer_id)})


def answer(phone: str, keyword: str, code: str) -> dict:
    """A volunteer's YES or NO with an offer's code."""
    return make_event("sms.received", {"message_sid": "SM" + uuid.uuid4().hex, "from_phone": phone,
                                       "to_phone": "+447700900000", "body": f"{keyword} {code}", "keyword": keyword,
                                       "code": code})


def volunteers(client, token, count: int, prefix: str = "07911200") -> dict[str, str]:
    """Register `count` volunteers who may all be asked for every request; their phones by id."""
    made = [register(client, token("coordinator"), f"Volunteer {n}", f"{prefix}{n:03d}", weekly_cap=21)
            for n in range(count)]
    return {v["id"]: v["phone"] for v in made}


def day(n: int) -> dict:
    """A request's window on its own day (so nobody is double-booked or over a weekly cap by the test itself)."""
    start = TOMORROW + timedelta(days=n)
    return {"window_start": start.isoformat(), "window_end": (start + timedelta(hours=2)).isoformat()}


def errors_named(errors: list[BaseException]) -> str:
    """What went wrong, by the database's own error where there is one (DeadlockDetected, UniqueViolation)."""
    causes = [getattr(e, "orig", None) or e for e in errors]
    return "; ".join(f"{type(c).__name__}: {(str(c).splitlines() or [''])[0]}" for c in causes[:5])


# --- (a) replies, SMS reports and expiry for the same requests, all at once, on two workers ----------------------

@REAL_ONLY
def test_hundreds_of_simultaneous_yes_sent_and_expiry_events_match_each_request_exactly_once(
        app_for, token, monkeypatch):
    """Each storm: every offer of REQUESTS_PER_STORM requests gets its sms.sent (long ago, so it is due at once)
    and a YES (one offer in a quarter of the requests), a NO or an sms.failed, shuffled, from four handler threads on
    two worker apps, while both apps run the expiry job in a loop (as two timer leaders would). Replies, reports
    and expiry race for the same offers, and the cascades they start make offers for many requests at once, in a
    busy deployment where most offer codes are taken. No error may escape (DeadlockDetected, or a unique index's
    refusal), and once the requests still open are answered, each is matched once, with one accepted offer."""
    monkeypatch.setenv("CCS_OFFER_BATCH", str(BATCH))
    monkeypatch.setenv("CCS_MAX_ROUNDS", "20")
    apps = [app_for("matching"), app_for("matching")]
    workers = [Matching(app) for app in apps]
    matching = workers[0]
    phones = volunteers(apps[0].test_client(), token, VOLUNTEERS)
    most_codes_taken(matching, FREE_CODES)
    errors: list[BaseException] = []
    storms, events_delivered, started, longest = 0, 0, time.monotonic(), 0.0
    while storms < MIN_STORMS or time.monotonic() - started + longest < STORM_SECONDS:
        began = time.monotonic()
        requests = [matching.submit(**day(storms * REQUESTS_PER_STORM + n)) for n in range(REQUESTS_PER_STORM)]
        events = []
        for request_id in requests:
            batch = matching.offers(request_id)
            taker = random.choice(batch) if random.random() < YES_SHARE else None
            for offer in batch:
                phone = phones[str(offer.volunteer_id)]
                reply = (answer(phone, "YES", offer.code) if offer is taker else
                         random.choice((answer(phone, "NO", offer.code), failed(offer.id))))
                events += [sent(offer.id), reply]
        random.shuffle(events)
        storm(workers, events, errors)
        storms, events_delivered = storms + 1, events_delivered + len(events)
        assert not errors, f"storm {storms}: {len(errors)} errors escaped: {errors_named(errors)}"

        for request_id in requests:  # a request whose first batch all declined or expired asked a second: one says yes
            if matching.request(request_id).status == "open":
                offer = next(o for o in matching.offers(request_id) if o.status == "open")
                matching.reply(phones[str(offer.volunteer_id)], "YES", offer.code)
        matched, accepted = {}, [e["request_id"] for e in published(matching, "offer.accepted")]
        for event in published(matching, "request.matched"):
            matched.setdefault(event["request_id"], []).append(event["offer_id"])
        for request_id in requests:
            offers = matching.offers(request_id)
            assert matching.request(request_id).status == "matched"
            assert [o.status for o in offers].count("accepted") == 1
            assert accepted.count(request_id) == 1
            assert matched[request_id] == [str(next(o.id for o in offers if o.status == "accepted"))]
        longest = max(longest, time.monotonic() - began)
    assert events_delivered >= MIN_STORMS * REQUESTS_PER_STORM * BATCH * 2


def published(matching: Matching, event_type: str) -> list[dict]:
    """The payloads of the events of one type matching published (`Matching.events` reads them all)."""
    from services.matching.adapters import outbox

    with matching.sessions() as session:
        return [body["payload"] for body in session.scalars(sa.select(outbox.table.body).where(
            outbox.table.event_type == event_type).order_by(outbox.table.id))]


def most_codes_taken(matching: Matching, free: int) -> None:
    """A busy deployment: all but `free` of the 9,000 four-digit offer codes are held by open offers (to a
    volunteer of another community, for a request that never comes due), so the offers two transactions make at
    the same moment often draw the same code."""
    from services.matching.domain import MatchRequest, Volunteer

    with matching.sessions.begin() as session:
        elsewhere = Volunteer(community="cheshire-east", name="Elsewhere", phone="+447911299999", latitude=53.1,
                              longitude=-2.4, max_distance_km=1.0)
        request = MatchRequest(community="cheshire-east", support_type="shopping", latitude=53.1, longitude=-2.4,
                               area="CW1", status="matched", correlation_id="busy")
        session.add_all([elsewhere, request])
        session.flush()
        session.execute(sa.text(
            "INSERT INTO offers (id, request_id, volunteer_id, code, status, round, occurrence, distance_km,"
            " created_at) SELECT gen_random_uuid(), :request, :volunteer, code::text, 'open', 1, 1, 0, now()"
            " FROM generate_series(1000, 9999) AS code WHERE NOT code = ANY(:free)"),
            {"request": request.request_id, "volunteer": elsewhere.id,
             "free": random.sample(range(1000, 10000), free)})


def storm(workers: list[Matching], events: list[dict], errors: list[BaseException]) -> None:
    """Deliver the events from two handler threads per worker app, while each app runs the expiry job in a loop,
    all starting together; what any of them raises is kept in `errors`."""
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for item in events:
        pending.put(item)
    handlers_done = threading.Event()
    start = threading.Barrier(2 * len(workers) + len(workers))

    def handle(worker: Matching) -> None:
        start.wait()
        while True:
            try:
                envelope = pending.get_nowait()
            except queue.Empty:
                return
            try:
                worker.dispatch(load_event(envelope))
            except Exception as error:  # noqa: BLE001 - the test reports every one
                errors.append(error)

    def expire(worker: Matching) -> None:
        context = worker.app.extensions["ccs"]
        start.wait()
        while not handlers_done.is_set():
            try:
                timers.expire_offers(context.uow, context.settings)
            except Exception as error:  # noqa: BLE001
                errors.append(error)

    handler_threads = [threading.Thread(target=handle, args=(w,)) for w in workers for _ in range(2)]
    expiry_threads = [threading.Thread(target=expire, args=(w,)) for w in workers]
    for thread in handler_threads + expiry_threads:
        thread.start()
    for thread in handler_threads:
        thread.join(timeout=60)
    handlers_done.set()
    for thread in expiry_threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in handler_threads + expiry_threads), "a thread is stuck"


# --- (b) a timer leader whose lock went with its connection -----------------------------------------------------

def due(matching: Matching, request_id: str) -> None:
    """Make a request's open offers due: sent two hours ago."""
    for offer in matching.offers(request_id):
        if offer.status == "open":
            matching.dispatch(load_event(sent(offer.id)))


def timer_lock_holder(admin) -> int | None:
    """The server process holding matching's timer lock in this database, if any."""
    row = admin.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                        " AND objid::text::bigint = %s AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())", (timers.LOCK_KEY,)).fetchone()
    return row[0] if row else None


def terminate(admin, pid: int) -> None:
    """End a server process, as a PostgreSQL restart or a cut network would end a worker's connection, and wait
    until it is gone."""
    assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
    wait_for("the lock's connection to end", lambda: admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 0, timeout=10)


@REAL_ONLY
def test_a_leader_whose_lock_connection_is_killed_stops_before_its_next_run_and_another_takes_over(
        app_for, token, monkeypatch):
    """Two timer loops on two worker apps; the first leads. Its lock's connection is terminated from another
    connection (as a PostgreSQL restart or a network cut ends it): the second takes over, and the first notices
    before its next run and runs no job after the kill. It competes again, so when the second's connection is
    terminated in turn, the first leads again. Each offer's expiry happens once."""
    monkeypatch.setenv("CCS_OFFER_BATCH", "1")
    apps = [app_for("matching"), app_for("matching")]
    matching = Matching(apps[0])
    contexts = [app.extensions["ccs"] for app in apps]
    volunteers(apps[0].test_client(), token, 6)
    runs: list[int] = []  # which loop ran the jobs, in order
    which = {id(c): n for n, c in enumerate(contexts)}
    run_jobs_once = timers.run_jobs_once

    def recorded(unit_of_work, settings):
        runs.append(which[id(unit_of_work.__self__)])  # the context whose `uow` the loop was given
        return run_jobs_once(unit_of_work, settings)

    monkeypatch.setattr(timers, "run_jobs_once", recorded)
    stop = threading.Event()
    loops = [threading.Thread(target=timers.run_timers, args=(c.engine, c.uow, c.settings, stop, 0.3))
             for c in contexts]
    requests = [matching.submit(**day(n)) for n in range(3)]
    admin = psycopg.connect(contexts[0].settings.database_url.replace("+psycopg", ""), autocommit=True)
    try:
        loops[0].start()
        wait_for("the first loop to lead", lambda: 0 in runs, timeout=10)
        loops[1].start()
        due(matching, requests[0])
        wait_for("the leader to expire the first request's offer",
                 lambda: [o.status for o in matching.offers(requests[0])] == ["expired", "open"], timeout=10)
        time.sleep(0.6)  # two intervals: the second loop tries, and waits
        assert set(runs) == {0}
        first_pid = timer_lock_holder(admin)

        terminate(admin, first_pid)
        killed = len(runs)
        wait_for("the second loop to take over", lambda: 1 in runs[killed:], timeout=10)
        due(matching, requests[1])
        wait_for("the new leader to expire the second request's offer",
                 lambda: [o.status for o in matching.offers(requests[1])] == ["expired", "open"], timeout=10)
        time.sleep(1.0)  # more intervals: the first loop runs nothing, competes again, and does not get the lock
        assert set(runs[killed:]) == {1}, f"runs after the first leader's lock went: {runs[killed:]}"
        second_pid = timer_lock_holder(admin)
        assert second_pid not in (None, first_pid)

        terminate(admin, second_pid)
        killed = len(runs)
        wait_for("the first loop to lead again", lambda: 0 in runs[killed:], timeout=10)
        due(matching, requests[2])
        wait_for("it to expire the third request's offer",
                 lambda: [o.status for o in matching.offers(requests[2])] == ["expired", "open"], timeout=10)
        time.sleep(1.0)
        assert set(runs[killed:]) == {0}, f"runs after the second leader's lock went: {runs[killed:]}"
        assert timer_lock_holder(admin) not in (None, first_pid, second_pid)
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=10)
        admin.close()
    assert not any(loop.is_alive() for loop in loops)
    for request_id in requests:  # expired once: the cascade asked exactly one more volunteer
        assert [(o.status, o.round) for o in matching.offers(request_id)] == [("expired", 1), ("open", 2)]
    made = [e["request_id"] for e in published(matching, "offer.made")]
    assert [made.count(request_id) for request_id in requests] == [2, 2, 2]


def test_a_leader_checks_its_lock_before_every_run_and_competes_again_once_it_lost_it(monkeypatch):
    """The timer loop with a lock that goes before the third run: that run is not made; the loop waits, competes
    again, loses to another leader once, and leads again when it gets the lock."""
    calls: list[str] = []
    stop = threading.Event()

    class Lock:
        acquired = checks = 0

        def acquire(self) -> bool:
            self.acquired += 1
            calls.append("acquire")
            return self.acquired != 2  # the second try: another process leads

        def still_held(self) -> bool:
            self.checks += 1
            calls.append("check")
            return self.checks != 3  # lost before the third run

        def release(self) -> None:
            calls.append("release")

    def run_jobs_once(unit_of_work, settings) -> None:
        calls.append("run")
        if calls.count("run") == 3:
            stop.set()

    monkeypatch.setattr(timers, "run_jobs_once", run_jobs_once)
    loop = threading.Thread(target=timers.run_timers, args=(None, None, None, stop, 0.05), kwargs={"lock": Lock()})
    loop.start()
    loop.join(timeout=10)
    assert not loop.is_alive()
    assert calls[:10] == ["acquire", "check", "run", "check", "run", "check", "acquire", "acquire", "check", "run"]
    assert calls[-1] == "release"


def test_a_file_lock_leader_notices_when_its_file_is_no_longer_the_one_others_lock(tmp_path):
    """On SQLite the timer lock is a file lock: while held it cannot be lost, unless the file is replaced (its
    folder cleaned), when another process can lock the new file. The leader notices before its next run."""
    from types import SimpleNamespace

    settings, engine = SimpleNamespace(var_dir=tmp_path), sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    first, second = timers.TimerLock(engine, settings), timers.TimerLock(engine, settings)
    try:
        assert first.acquire() and not second.acquire()
        assert first.still_held() and first.held
        (tmp_path / "matching-timers.lock").unlink()
        assert second.acquire()  # a new file, and nobody holds it
        assert not first.still_held() and (first.lost, first.held) == (1, False)
        assert not first.acquire()
        second.release()
        assert first.acquire() and first.still_held()
    finally:
        first.release()
        second.release()
        engine.dispose()


# --- (b, continued) timer jobs run by two leaders at once ------------------------------------------------------

@REAL_ONLY
def test_the_timer_jobs_run_by_two_leaders_at_once_expire_cascade_and_remind_exactly_once(app_for, token, monkeypatch):
    """Two leaders for a moment (one lost its lock during a run, or has not yet looked): every expiry, cascade step
    and check reminder still happens once, because each job claims its rows (FOR UPDATE SKIP LOCKED) and checks
    them again once claimed. Each round, both apps run each job twice, all starting together."""
    monkeypatch.setenv("CCS_OFFER_BATCH", "2")
    apps = [app_for("matching"), app_for("matching")]
    matching = Matching(apps[0])
    contexts = [app.extensions["ccs"] for app in apps]
    client = apps[0].test_client()
    volunteers(client, token, 30, prefix="07911201")
    expiring = (date.today() + timedelta(days=10)).isoformat()
    rounds, per_round = 3, 15
    for attempt in range(rounds):
        for n in range(per_round):  # volunteers with a check expiring soon: each is reminded once
            register(client, token("coordinator"), f"Expiring {attempt}.{n}", f"0791121{attempt}{n:03d}", checks=[
                {"check": "safeguarding", "done_on": "2026-01-05", "expires_on": "2035-01-05"},
                {"check": "criminal_record", "done_on": "2025-01-05", "expires_on": expiring}])
        requests = [matching.submit(**day(attempt * per_round + n)) for n in range(per_round)]
        for request_id in requests:
            due(matching, request_id)
        jobs = [(c, job) for c in contexts for job in (timers.expire_offers, timers.remind_expiring_checks) * 2]
        start, results, errors = threading.Barrier(len(jobs)), [], []

        def run(context, job) -> None:
            start.wait()
            try:
                results.append((job.__name__, job(context.uow, context.settings)))
            except Exception as error:  # noqa: BLE001 - the test reports every one
                errors.append(error)

        threads = [threading.Thread(target=run, args=job) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors_named(errors)
        assert sum(n for name, n in results if name == "expire_offers") == 2 * per_round
        assert sum(n for name, n in results if name == "remind_expiring_checks") == per_round
        for request_id in requests:  # the whole first batch expired once: one more batch of two, in round 2
            assert sorted((o.round, o.status) for o in matching.offers(request_id)) == [
                (1, "expired"), (1, "expired"), (2, "open"), (2, "open")]
    reminded = [(e["volunteer_id"], e["check"]) for e in published(matching, "volunteer.check_expiring")]
    assert len(reminded) == len(set(reminded)) == rounds * per_round
    made = [e["request_id"] for e in published(matching, "offer.made")]
    assert len(made) == rounds * per_round * 4 and all(made.count(r) == 4 for r in set(made))


# --- a request and its cancellation at once -------------------------------------------------------------------

@REAL_ONLY
def test_a_request_and_its_cancellation_handled_at_once_on_two_workers_end_cancelled(app_for, token):
    """request.submitted on one worker and its request.cancelled on another, at the same moment: the cancellation
    either finds the request (waiting while it is taken in) or is kept for it, so every request ends cancelled
    with no offer open, never offered and forgotten."""
    apps = [app_for("matching"), app_for("matching")]
    workers = [Matching(app) for app in apps]
    volunteers(apps[0].test_client(), token, 4, prefix="07911203")
    requests, errors = [str(uuid.uuid4()) for _ in range(40)], []
    for n, request_id in enumerate(requests):
        start = threading.Barrier(2)
        envelopes = [make_event("request.submitted", {**SHOPPING, **day(n), "request_id": request_id}),
                     make_event("request.cancelled", {"request_id": request_id, "reason": "arranged"})]
        if n % 2:
            envelopes.reverse()

        def deliver(worker: Matching, envelope: dict) -> None:
            start.wait()
            try:
                worker.dispatch(load_event(envelope))
            except Exception as error:  # noqa: BLE001 - the test reports every one
                errors.append(error)

        threads = [threading.Thread(target=deliver, args=pair) for pair in zip(workers, envelopes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors_named(errors)
    left_open = [r for r in requests if workers[0].request(r).status != "cancelled"
                 or any(o.status == "open" for o in workers[0].offers(r))]
    assert left_open == [], f"{len(left_open)} of {len(requests)} requests were not cancelled"
