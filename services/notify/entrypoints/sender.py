"""The SMS sender: a loop of notify's worker that sends what is due, until the worker stops."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from services.notify import service_layer
from shared.clock import utcnow
from shared.telemetry import describe

if TYPE_CHECKING:
    from services.notify.adapters import NotifyUnitOfWork, SmsGateway
    from services.notify.bootstrap import NotifySettings

log = logging.getLogger(__name__)


def sender(unit_of_work: Callable[[], NotifyUnitOfWork], gateway: SmsGateway,
           settings: NotifySettings) -> Callable[[threading.Event], None]:
    """The loop `sender(stop)`: send the messages that are due; when none were, wait a poll interval."""

    def run(stop: threading.Event) -> None:
        """Send until `stop` is set."""
        while not stop.is_set():
            try:
                if not service_layer.send_due(unit_of_work(), gateway, utcnow(), settings):
                    stop.wait(settings.poll_interval)
            except Exception as exc:  # database unreachable: try again shortly
                log.warning("SMS sender failed; retrying: %s", describe(exc))
                stop.wait(1.0)

    return run
