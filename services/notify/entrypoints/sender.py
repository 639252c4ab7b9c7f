"""The SMS sender: a loop of notify's worker that sends what is due, until the worker stops.

It does not poll. It sleeps until the next queued message is due (a message held through quiet hours, a retry's
back-off) or until a handler in this process queues one (`adapters.queued`, rung when that transaction commits),
and looks anyway every `SWEEP_SECONDS` in case a wake-up was lost."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from services.notify import service_layer
from services.notify.adapters import queued
from shared.clock import utcnow
from shared.outbox import SWEEP_SECONDS
from shared.telemetry import describe

if TYPE_CHECKING:
    from services.notify.adapters import NotifyUnitOfWork, SmsGateway
    from services.notify.bootstrap import NotifySettings

log = logging.getLogger(__name__)

BATCH = 20  # messages sent before looking at the time again
THREADS = 4  # senders in each worker: the gateway's answer (Twilio's is a round trip) is waited for in parallel
# The least a sender waits when a message is due but it could claim none (another worker holds it, locked, on
# PostgreSQL): it would otherwise ask again at once, over and over, until that worker is done.
HELD_ELSEWHERE = 0.05


def sender(unit_of_work: Callable[[], NotifyUnitOfWork], gateway: SmsGateway, settings: NotifySettings,
           sweep: float = SWEEP_SECONDS, threads: int = THREADS) -> Callable[[threading.Event], None]:
    """The loop `sender(stop)`: in `threads` threads, send the messages that are due; then wait for the next to fall
    due or be queued. Each message is claimed by one of them (`send_due`), as by one of several workers; each
    message queued wakes one of them. What a stopped sender left `sending` is settled on the sweep."""

    def send(stop: threading.Event) -> None:
        """Send until `stop` is set."""
        settled_at = None
        while not stop.is_set():
            try:
                settle = settled_at is None or time.monotonic() - settled_at >= sweep
                sent = service_layer.send_due(unit_of_work(), gateway, utcnow(), settings, BATCH, settle=settle,
                                              stop=stop)
                if settle:
                    settled_at = time.monotonic()
                if sent >= BATCH:
                    continue
                due = service_layer.seconds_until_due(unit_of_work(), utcnow())
                if due == 0 and not sent:  # held elsewhere, or left `sending` by a stopped sender: settle next look
                    settled_at, due = None, HELD_ELSEWHERE
                wait = sweep if due is None else min(due, sweep)
                queued.wait(wait, stop)
            except Exception as exc:  # database unreachable: try again shortly
                log.warning("SMS sender failed; retrying: %s", describe(exc))
                stop.wait(1.0)

    def run(stop: threading.Event) -> None:
        """Send in this thread and `threads - 1` more, until `stop` is set."""
        others = [threading.Thread(target=send, args=(stop,), name=f"{threading.current_thread().name}-{n}",
                                   daemon=True) for n in range(1, threads)]
        for thread in others:
            thread.start()
        send(stop)
        for thread in others:
            thread.join(timeout=5)

    return run
