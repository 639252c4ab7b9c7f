"""How loops are woken without polling: the FIFOs between processes (`bus.Wakes`), the doorbell within one
(`outbox.Doorbell`), and what notify's senders do between wake-ups."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.bus import Wakes
from shared.outbox import Doorbell
from tests.helpers import wait_for


def fifos(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_poke_leaves_alone_a_fifo_being_made(tmp_path):
    """A FIFO not yet open (its maker between mkfifo and open) has no reader: a poke must not take it for a dead
    process's and remove it, or its maker would never be woken."""
    os.mkfifo(tmp_path / ".being-made", 0o600)
    Wakes(tmp_path).poke()
    assert fifos(tmp_path) == [".being-made"]


def test_a_fifo_whose_process_has_gone_is_removed_and_one_made_before_looking_hears_the_next_poke(tmp_path):
    os.mkfifo(tmp_path / "12345-gone", 0o600)
    wakes = Wakes(tmp_path)
    assert wakes.ready()  # made before the caller looks for work, so a poke after that look is not missed
    Wakes(tmp_path).poke()
    assert fifos(tmp_path) == [wakes._path.name] and not wakes._path.name.startswith(".")
    assert wakes.wait(0) and not wakes.wait(0)
    wakes.close()
    assert fifos(tmp_path) == []


def test_a_fifo_that_could_not_be_made_for_now_is_made_later(tmp_path, monkeypatch):
    real = os.mkfifo
    answers = [OSError(errno.ENOSPC, "full"), None]

    def mkfifo(path, mode):
        if answer := answers.pop(0):
            raise answer
        real(path, mode)

    monkeypatch.setattr(os, "mkfifo", mkfifo)
    wakes = Wakes(tmp_path)
    assert not wakes.ready() and wakes.ready()
    wakes.close()


def test_a_folder_that_cannot_hold_a_fifo_is_not_tried_again(tmp_path, monkeypatch):
    calls = []

    def mkfifo(path, mode):
        calls.append(path)
        raise OSError(errno.EPERM, "not here")

    monkeypatch.setattr(os, "mkfifo", mkfifo)
    wakes = Wakes(tmp_path)
    assert not wakes.ready() and not wakes.ready() and not wakes.wait(0)
    assert len(calls) == 1


def test_a_forked_child_makes_a_fifo_of_its_own(tmp_path):
    wakes = Wakes(tmp_path)
    assert wakes.ready()
    pid = os.fork()
    if pid == 0:  # the child: its own FIFO beside its parent's, which it leaves alone
        ok = wakes.ready() and len(fifos(tmp_path)) == 2
        wakes.close()
        os._exit(0 if ok and len(fifos(tmp_path)) == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    Wakes(tmp_path).poke()
    assert wakes.wait(0)
    wakes.close()


def test_one_ring_wakes_one_of_the_loops_waiting(tmp_path):
    bell, stop, woken = Doorbell(), threading.Event(), []

    def waiting():
        woken.append(bell.wait(3600, stop))

    threads = [threading.Thread(target=waiting) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_for("all three to wait", lambda: bell._waiting == 3)
    bell.ring()
    wait_for("one to wake", lambda: woken)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    assert sorted(woken) == [False, False, True]


def test_a_ring_while_every_loop_is_busy_is_kept_once():
    bell = Doorbell()
    bell.ring(5)
    assert bell.wait(0) and not bell.wait(0)


def test_a_wake_up_that_fails_after_the_commit_does_not_fail_the_commit(caplog):
    class Broken(Doorbell):
        def ring(self, times=1):
            raise PermissionError("cannot")

    engine = sa.create_engine("sqlite://")
    bell = Broken("ccs_test")
    with Session(engine) as session:
        session.execute(sa.text("SELECT 1"))
        bell.ring_after_commit(session)
        session.commit()
    assert "could not wake" in caplog.text


def run_sender(monkeypatch, sent: int, due: float | None, rung: bool) -> tuple[list[float], list[bool]]:
    """Run one sender thread for two looks, with send_due sending `sent` and `due` seconds until the next message;
    what it waited each time, and whether it settled."""
    from services.notify import service_layer
    from services.notify.adapters import queued
    from services.notify.entrypoints import sender

    stop, waits, settled = threading.Event(), [], []
    monkeypatch.setattr(service_layer, "send_due", lambda *args, settle, **kwargs: settled.append(settle) or sent)
    monkeypatch.setattr(service_layer, "seconds_until_due", lambda uow, now: due)

    def wait(timeout, stop_):
        waits.append(timeout)
        if len(waits) == 2:
            stop.set()
        return rung

    monkeypatch.setattr(queued, "wait", wait)
    sender.sender(lambda: None, None, None, sweep=3600, threads=1)(stop)
    return waits, settled


def test_a_sender_that_finds_a_message_due_but_claims_none_waits_a_little(monkeypatch):
    """On PostgreSQL a due message another worker holds locked is skipped: asking again at once would spin."""
    from services.notify.entrypoints.sender import HELD_ELSEWHERE

    waits, settled = run_sender(monkeypatch, sent=0, due=0.0, rung=False)
    assert waits == [HELD_ELSEWHERE] * 2
    assert settled == [True, True]  # what a stopped sender left `sending` is settled at the next look


@pytest.mark.parametrize("sent, due, waited", [(1, None, 3600), (0, None, 3600), (0, 7.0, 7.0), (2, 0.0, 0.0)])
def test_a_sender_sleeps_until_the_next_message_is_due_and_settles_only_on_the_sweep(monkeypatch, sent, due, waited):
    waits, settled = run_sender(monkeypatch, sent=sent, due=due, rung=True)
    assert waits == [waited] * 2 and settled == [True, False]
