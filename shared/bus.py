"""The message bus: connections, publishing with confirms, and the consuming worker.

What happens to a message whose handler fails:
- a **transient** fault (the database or the broker unreachable, a deadlock, a serialization failure:
  `is_transient`) never uses up tries. The message waits on the broker (`Publisher.publish_later`: RabbitMQ's delay
  queues, or a folder beside the filesystem transport's) for the next of `CCS_RETRY_DELAYS` (1 s, 5 s, 30 s, 2 min,
  then every 10 min) and comes back to its queue, for as long as it takes. The worker stops taking messages until
  its database answers again (`ready`), rather than burning tries on the ones it has already been given;
- any other error is a **permanent** one: tried `max_attempts` times in all, waiting the same way between tries,
  then moved to the queue's dead-letter queue with the reason (`ccs dead-letters` lists, replays or purges them).
A message that cannot be decoded or does not match its contract is dead-lettered at once. Nothing is acknowledged
before it is handled, waiting on the broker, or dead-lettered.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import kombu.exceptions
import psycopg
import sqlalchemy.exc
from kombu import Connection, Consumer, Message, Producer, Queue
from kombu.mixins import ConsumerMixin
from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps
from marshmallow import ValidationError

from shared import topology
from shared.config import Settings
from shared.contracts import Event, load_event
from shared.telemetry import DEAD_LETTERED, RETRIED, describe, frames

log = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


# The longest a message, an outbox event or a queued SMS waits when the wake-up that should have fetched it was lost.
SWEEP_SECONDS = 5.0

# What mkfifo or open answer where a folder can never hold a FIFO (a filesystem without them, a mount forbidding
# them); any other failure (a full disk, too many open files) may pass, and making one is tried again later.
NO_FIFOS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class Wakes:
    """A wake-up call between processes on one machine, without a server: each process that waits keeps a FIFO of
    its own in `folder`, and `poke()` writes a byte into every one (a FIFO whose process has gone is removed).

    What waits for files (the filesystem bus's consumers, an outbox relay over SQLite) would otherwise look every
    poll interval; with this it looks when told, and still looks every so often in case a poke was missed.

    A FIFO is made under a dot-name, opened, and only then renamed into place: a poke never sees one that nobody
    reads yet (it would take it for a dead process's, and remove it). A forked child makes a FIFO of its own."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._fd: int | None = None
        self._path: Path | None = None
        self._pid = 0  # the process that made the FIFO
        self._unusable = False  # the folder cannot hold a FIFO
        self._failing = False  # making one failed, and was reported
        self._lock = threading.Lock()

    def poke(self) -> None:
        """Wake every process waiting on this folder, at once; never blocks, never fails."""
        try:
            names = os.listdir(self.folder)
        except OSError:  # nobody has waited here yet
            return
        for name in names:
            if name.startswith("."):  # being made: its process looks before it waits
                continue
            path = self.folder / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno == errno.ENXIO:  # nobody reads it: its process has gone
                    try:
                        path.unlink(missing_ok=True)
                    except OSError:  # not ours to remove
                        pass
                continue
            try:
                os.write(fd, b"\0")
            except OSError:  # full: a wake is waiting to be read already
                pass
            finally:
                os.close(fd)

    def ready(self) -> bool:
        """Make this process's FIFO, if it has none yet; False where there is none (the caller looks every poll
        interval). Call it before looking for work, so a poke that comes after the look is heard."""
        return self._own_fifo() is not None

    def wait(self, timeout: float) -> bool:
        """Wait until poked or `timeout` seconds pass; True if poked. Without a FIFO this only sleeps."""
        fd = self._own_fifo()
        if fd is None:
            time.sleep(max(timeout, 0))
            return False
        poller = select.poll()  # not select.select, which cannot take a descriptor above 1023
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(timeout, 0) * 1000):
            return False
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        """Stop being woken: this process's FIFO goes."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
                self._path.unlink(missing_ok=True)
            self._fd = None

    def _own_fifo(self) -> int | None:
        with self._lock:
            if self._fd is not None and self._pid != os.getpid():  # forked: the FIFO is the parent's
                os.close(self._fd)
                self._fd = None
            if self._fd is None and not self._unusable:
                try:
                    self._fd = self._make_fifo()
                    self._failing = False
                except OSError as err:
                    self._unusable = err.errno in NO_FIFOS
                    if self._unusable or not self._failing:
                        log.warning("cannot be woken through %s (%s): looking every poll interval %s", self.folder,
                                    errno.errorcode.get(err.errno, type(err).__name__),
                                    "instead" if self._unusable else "until a FIFO can be made")
                    self._failing = True
            return self._fd

    def _make_fifo(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{_THIS_PROCESS}-{uuid.uuid4().hex[:12]}"
        draft = self.folder / f".{name}"
        os.mkfifo(draft, 0o600)
        try:
            # Open for writing as well: with no writer left, a FIFO reads as ended and poll never waits.
            fd = os.open(draft, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            draft.unlink(missing_ok=True)
            raise
        try:
            os.rename(draft, self.folder / name)
        except OSError:
            os.close(fd)
            draft.unlink(missing_ok=True)
            raise
        self._path, self._pid = self.folder / name, os.getpid()
        return fd


class FolderChannel(filesystem.Channel):
    """The filesystem channel, writing each file whole before anyone can open it, and keeping each message on disk
    until it is acknowledged.

    kombu creates a missing binding table by opening it empty and then locking it, so a second process starting
    at the same moment could lock the empty file first, fail to read it as JSON, and crash on declaring. It writes
    a message the same way, so a consumer could move the empty file away and read nothing: the consumer crashed
    and the message, written after the move into a file about to be deleted, was lost.

    kombu also deletes a message's file as soon as a consumer takes it, keeping it only in memory until it is
    acknowledged: a worker killed with messages in hand (up to its prefetch) lost them. Here taking a message
    renames its file to `.inhand.<pid>-<start>.<name>` (`start`: when that process started, so a later process
    that happens to get the same pid does not keep a dead one's claims); acknowledging deletes it; and a claim
    whose process has died goes back to the queue (the handlers' once-only record absorbs a message that was
    handled but not acknowledged)."""

    RECOVER_EVERY = 2.0  # seconds between looks for claims whose process died

    def _put(self, queue, payload, **kwargs):
        """Write the message under a hidden name, then rename it into the queue: it appears whole or not at all."""
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        draft = os.path.join(self.data_folder_out, f".{name}.part")  # not a name any queue reads
        with open(draft, "wb") as handle:
            handle.write(dumps(payload).encode())
        os.rename(draft, os.path.join(self.data_folder_out, name))
        self.connection.wakes.poke()

    def __init__(self, *args, **kwargs):
        self._claims: dict[str, str] = {}  # the files of the messages in hand, by delivery tag
        self._recovered_at = 0.0
        super().__init__(*args, **kwargs)

    def _get(self, queue):
        """Claim the next message of `queue` by renaming its file; it stays on disk until acknowledged."""
        self._recover_abandoned()
        wanted = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            claim = os.path.join(self.data_folder_in, f".inhand.{_THIS_PROCESS}.{filename}")
            try:
                os.rename(os.path.join(self.data_folder_in, filename), claim)
            except OSError:
                continue  # another consumer took it
            with open(claim, "rb") as handle:
                payload = json.loads(handle.read())
            self._claims[payload["properties"]["delivery_tag"]] = claim
            return payload
        raise virtual.base.Empty()

    def _settle(self, delivery_tag) -> None:
        """The message is acknowledged, rejected or put back: its claimed file goes."""
        claim = self._claims.pop(delivery_tag, None)
        if claim is not None:
            try:
                os.remove(claim)
            except FileNotFoundError:
                pass

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple)
        self._settle(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):
        super().basic_reject(delivery_tag, requeue)
        self._settle(delivery_tag)

    def _restore(self, message):
        """Give a message back (rejected, or never acknowledged when the channel closes): its claimed file goes back
        under its own name, to its own queue only (kombu would publish it again through its exchange, to every
        queue bound there)."""
        claim = self._claims.pop(message.delivery_tag, None)
        if claim is None:
            super()._restore(message)
            return
        folder, name = os.path.split(claim)
        try:
            os.rename(claim, os.path.join(folder, name.removeprefix(".inhand.").partition(".")[2]))
        except FileNotFoundError:
            pass

    def _recover_abandoned(self) -> None:
        """Put back on their queues the messages claimed by a process that has since died."""
        if time.monotonic() - self._recovered_at < self.RECOVER_EVERY:
            return
        self._recovered_at = time.monotonic()
        for name in os.listdir(self.data_folder_in):
            if not name.startswith(".inhand."):
                continue
            holder, _, original = name.removeprefix(".inhand.").partition(".")
            if _alive(holder):
                continue
            try:
                os.rename(os.path.join(self.data_folder_in, name), os.path.join(self.data_folder_in, original))
                log.warning("a message a stopped process had taken from the bus is back on its queue")
            except FileNotFoundError:
                pass  # another consumer put it back

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        table = self._exchange_file(exchange)
        if not table.exists():
            self.control_folder.mkdir(parents=True, exist_ok=True)
            draft = table.with_name(f".{table.name}.{uuid.uuid4().hex}")
            draft.write_bytes(b"[]")
            try:
                os.link(draft, table)  # appears complete, or not at all; the first process wins
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


def _started(pid: int) -> str:
    """When a process started, in clock ticks since boot (Linux's /proc/<pid>/stat); "" where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[19].decode()  # field 22, counting from the pid
    except (OSError, IndexError):
        return ""


def _name_this_process() -> None:
    global _THIS_PROCESS
    _THIS_PROCESS = f"{os.getpid()}-{_started(os.getpid())}"


_name_this_process()
os.register_at_fork(after_in_child=_name_this_process)


def _alive(holder: str) -> bool:
    """The process a claim names (`<pid>-<start>`, or a bare pid) is still running, or is a zombie its parent has
    not reaped yet; not if its pid now belongs to a process that started later."""
    pid, _, start = holder.partition("-")
    if not pid.isdigit():
        return True  # not a claim this code made: leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _started(int(pid)) in ("", start)


class FolderTransport(filesystem.Transport):
    """kombu's filesystem transport, remembering declared bindings per folder rather than per process.

    kombu keeps one record of declared bindings for the whole process and skips a binding it has seen,
    so a process that used one folder would never write the bindings into another (as tests do).
    """

    Channel = FolderChannel
    _states: dict[str, virtual.BrokerState] = {}

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        folder = client.transport_options["control_folder"]
        self.state = self._states.setdefault(folder, virtual.BrokerState())
        self.wakes = Wakes(Path(folder).parent / "wake")

    def drain_events(self, connection, timeout=None):
        """kombu's loop, waiting between looks until a message is written (`Wakes`) rather than sleeping a poll
        interval; it looks anyway every `SWEEP_SECONDS`, should a wake be missed. Where no FIFO can be made it
        looks every poll interval, as kombu does."""
        started = time.monotonic()
        while True:
            interval = SWEEP_SECONDS if self.wakes.ready() else self.polling_interval  # before looking: see ready()
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except virtual.base.Empty:
                waited = time.monotonic() - started
                if timeout is not None and waited >= timeout:
                    raise socket.timeout()
                self.wakes.wait(interval if timeout is None else min(interval, timeout - waited))

    def close_connection(self, connection):
        """Close the connection, and the FIFO this process was woken through."""
        self.wakes.close()
        super().close_connection(connection)


def connect(settings: Settings) -> Connection:
    """A connection to the configured broker: the filesystem transport under var/, or RabbitMQ with confirms."""
    if settings.broker_is_filesystem:
        folder = settings.var_dir / "broker"
        for sub in ("messages", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return Connection(transport=FolderTransport, transport_options={
            "data_folder_in": str(folder / "messages"),
            "data_folder_out": str(folder / "messages"),
            "control_folder": str(folder / "control"),
            "polling_interval": settings.poll_interval,
        })
    return Connection(settings.broker_url, heartbeat=30, connect_timeout=5,
                      transport_options={"confirm_publish": True})


SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database schema is locked",
                    "unable to open database file")


# PostgreSQL's answers that mean "try again": serialization failure, deadlock, lock not available, the server
# shutting down or starting, too many connections (class 08, connection exceptions, too). Not a full disk, a
# statement timeout or a query too big: those would fail every time, and are dead-lettered after their tries.
TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"}


def _driver_fault_is_transient(error: BaseException, *, otherwise: bool) -> bool:
    """Whether a database driver's own error is one that passes: a connection to PostgreSQL lost, refused or
    closed (psycopg's OperationalError, InterfaceError), SQLite busy or locked; `otherwise` for other drivers."""
    if isinstance(error, sqlite3.Error):
        return isinstance(error, sqlite3.OperationalError) and str(error).lower().startswith(SQLITE_TRANSIENT)
    if isinstance(error, psycopg.Error):
        if error.sqlstate is None:  # from the client: the connection refused, lost or closed
            return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
        return error.sqlstate.startswith("08") or error.sqlstate in TRANSIENT_SQLSTATES
    return otherwise


def unavailable_dependency(error: BaseException) -> str | None:
    """"database" or "broker" when `error` says that dependency is down for the moment (a request that failed on it
    may succeed if sent again shortly); None for every other error, which stays a 500.

    Transient: SQLAlchemy's OperationalError and InterfaceError (for SQLite only "database is locked" and the
    like), any DBAPIError that invalidated its connection, psycopg's OperationalError and InterfaceError, the
    connection pool's timeout (every connection busy), and kombu's OperationalError (the broker unreachable)."""
    if isinstance(error, kombu.exceptions.OperationalError):
        return "broker"
    if isinstance(error, sqlalchemy.exc.TimeoutError):  # the pool had no connection to give within its timeout
        return "database"
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        if error.connection_invalidated:
            return "database"
        if isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return "database" if _driver_fault_is_transient(error.orig, otherwise=True) else None
        return None
    if isinstance(error, (sqlite3.Error, psycopg.Error)):  # a driver's error that SQLAlchemy did not wrap
        return "database" if _driver_fault_is_transient(error, otherwise=False) else None
    return None


def is_transient(error: BaseException) -> bool:
    """A fault that goes away by itself, anywhere in the chain of causes: a dependency down for the moment
    (`unavailable_dependency`, which also counts a deadlock or serialization failure, PostgreSQL's "try again"), or
    the network failing (ConnectionError, TimeoutError). A worker waits these out on the broker; a web request
    answers 503."""
    seen: BaseException | None = error
    while seen is not None:
        if unavailable_dependency(seen) or isinstance(seen, (ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class FolderDelays:
    """Messages waiting to go back to their queue, for the filesystem transport (which has no time-to-live): a
    file each in var/broker/delayed, named by when it is due, written whole before it appears. Any worker
    releases what is due: it claims a file by renaming it (one rename wins), publishes it through `retry`, then
    deletes it; a claim left by a worker that died is released again after a minute (a message may then arrive
    twice, which the handlers' once-only record absorbs)."""

    STALE_CLAIM = 60.0

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, body: Any, queue_name: str, delay: float, headers: dict[str, Any]) -> None:
        """Keep a message until `delay` seconds from now."""
        name = f"{time.time() + delay:017.6f}_{uuid.uuid4().hex}.json"
        draft = self.folder / f".{name}.part"
        draft.write_text(json.dumps({"queue": queue_name, "headers": headers, "body": body}))
        os.rename(draft, self.folder / name)

    def release_due(self, publisher: "Publisher") -> int:
        """Put each message that is due back on its queue; returns how many."""
        now, released = time.time(), 0
        self._put_back_stale_claims(now)
        for path in sorted(self.folder.glob("[0-9]*.json")):  # not drafts or claims, which start with a dot
            if float(path.name.split("_", 1)[0]) > now:
                break
            claimed = path.with_name(f".claimed.{int(now * 1000)}.{path.name}")
            try:
                os.rename(path, claimed)
                waiting = json.loads(claimed.read_text())
            except FileNotFoundError:
                continue  # another worker has it
            publisher.publish(waiting["body"], exchange=topology.RETRY, routing_key=waiting["queue"],
                              headers=waiting["headers"])
            try:
                claimed.unlink()
            except FileNotFoundError:
                pass  # put back as stale meanwhile: it will come again, once more, and be skipped as handled
            released += 1
        return released

    def _put_back_stale_claims(self, now: float) -> None:
        """A claim older than STALE_CLAIM (its worker died between claiming and publishing) is due again."""
        for claim in self.folder.glob(".claimed.*"):
            claimed_ms, _, original = claim.name.removeprefix(".claimed.").partition(".")
            if claimed_ms.isdigit() and now - int(claimed_ms) / 1000 > self.STALE_CLAIM:
                try:
                    os.rename(claim, claim.with_name(original))
                except FileNotFoundError:
                    pass


class Publisher:
    """Publishes envelopes on their producer's exchange, persistent and (on RabbitMQ) confirmed."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self.delays = FolderDelays(settings.var_dir / "broker" / "delayed") if settings.broker_is_filesystem else None

    def _ensure(self) -> Producer:
        if self._producer is None:
            self._connection = connect(self.settings)
            self._connection.ensure_connection(max_retries=1)
            topology.declare_all(self._connection, self.delay_queues)
            self._producer = Producer(self._connection.default_channel)
        return self._producer

    @property
    def delay_queues(self) -> tuple[float, ...]:
        """The waits RabbitMQ needs a delay queue for (none on the filesystem bus, which keeps a folder)."""
        return () if self.delays else self.settings.retry_delays

    def publish_later(self, body: Any, queue_name: str, delay: float, headers: dict[str, Any]) -> None:
        """Put a message back on a queue after `delay` seconds (one of the settings' retry delays), kept by the
        broker meanwhile."""
        if self.delays is not None:
            self.delays.add(body, queue_name, delay, headers)
            return
        self._ensure().publish(body, exchange=topology.delay_exchange(delay), routing_key=queue_name,
                               serializer="json", delivery_mode=2, headers=headers, retry=True,
                               retry_policy=RETRY_POLICY)

    def publish(self, envelope: dict[str, Any], *, exchange=None, routing_key: str | None = None,
                headers: dict[str, Any] | None = None) -> None:
        """Publish one envelope; returns once the broker has it (confirmed on RabbitMQ)."""
        producer = self._ensure()
        exchange = exchange or topology.EXCHANGES[envelope["producer"]]
        producer.publish(
            envelope,
            exchange=exchange,
            routing_key=routing_key or envelope["type"],
            serializer="json",
            delivery_mode=2,
            headers=headers or {},
            message_id=envelope.get("event_id"),
            retry=True,
            retry_policy=RETRY_POLICY,
        )

    def publish_raw(self, body: bytes, *, exchange, routing_key: str, headers: dict[str, Any],
                    content_type: str | None, content_encoding: str | None) -> None:
        """Publish bytes as they came (for dead-lettering what could not be decoded)."""
        producer = self._ensure()
        producer.publish(body, exchange=exchange, routing_key=routing_key, headers=headers, delivery_mode=2,
                         content_type=content_type or "application/octet-stream",
                         content_encoding=content_encoding or "binary", retry=True, retry_policy=RETRY_POLICY)

    def reset(self) -> None:
        """Drop the connection so the next publish reconnects."""
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # already broken
                pass
        self._connection = None
        self._producer = None


Handler = Callable[[Event], None]


class Worker(ConsumerMixin):
    """Consumes a service's queues and hands each event to its handler; what fails waits on the broker and comes
    back, or is dead-lettered (see the module's docstring).

    `ready`, if given, says whether the service's database answers; after a transient fault the worker takes no
    more messages until it does (`on_ready_changed` hears each change, for the worker's readiness probe)."""

    def __init__(self, connection: Connection, settings: Settings, queues: list[Queue],
                 dispatch: Callable[[Event], None], max_attempts: int | None = None,
                 ready: Callable[[], bool] | None = None, on_ready_changed: Callable[[bool], None] | None = None):
        self.connection = connection
        self.settings = settings
        self.queues = queues
        self.dispatch = dispatch
        self.max_attempts = max_attempts or settings.max_attempts
        self.publisher = Publisher(settings)
        self.ready = ready
        self.on_ready_changed = on_ready_changed or (lambda _ready: None)
        self._released_at = 0.0

    def get_consumers(self, consumer_cls, channel):
        """One consumer per queue, so a message's queue is known when it must be retried."""
        return [
            consumer_cls(queues=[queue], callbacks=[self._callback(queue)], accept=["json"], prefetch_count=10,
                         on_decode_error=self._decode_error(queue))
            for queue in self.queues
        ]

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        """Declare the whole topology once connected."""
        topology.declare_all(connection, self.publisher.delay_queues)
        self.on_ready_changed(True)
        log.info("%s worker consuming %s", self.settings.service, ", ".join(q.name for q in self.queues))

    def on_connection_error(self, exc, interval):
        """The broker is unreachable: not ready until it is back (kombu reconnects)."""
        self.on_ready_changed(False)
        super().on_connection_error(exc, interval)

    def on_consume_end(self, connection, channel):
        """Release the publishing connection as well."""
        self.publisher.reset()

    def on_iteration(self):
        """On the filesystem transport, put the waiting messages that are due back on their queues (at most each
        poll interval)."""
        if self.publisher.delays is not None and time.monotonic() - self._released_at >= self.settings.poll_interval:
            self._released_at = time.monotonic()
            self.publisher.delays.release_due(self.publisher)

    def _callback(self, queue: Queue):
        def on_message(body: Any, message: Message) -> None:
            self.handle(queue, body, message)
        return on_message

    def _decode_error(self, queue: Queue):
        def on_decode_error(message: Message, exc: Exception) -> None:
            self.dead_letter(queue, message, f"cannot decode message: {exc}")
        return on_decode_error

    def delay(self, tries: int) -> float:
        """How long a message waits before its next try, after `tries` tries."""
        delays = self.settings.retry_delays
        return delays[min(tries, len(delays)) - 1]

    def handle(self, queue: Queue, body: Any, message: Message) -> None:
        """Validate, dispatch, and settle one message."""
        try:
            event = load_event(body)
        except ValidationError as err:
            self.dead_letter(queue, message, f"does not match its contract: {err.messages}")
            return
        try:
            self.dispatch(event)
        except Exception as exc:
            headers = dict(message.headers or {})
            if is_transient(exc):
                waits = int(headers.get("x-transient-waits", 0)) + 1
                log.warning("%s could not handle %s %s for now (%s); trying again in %gs", queue.name, event.type,
                            event.event_id, type(exc).__name__, self.delay(waits))
                self.publisher.publish_later(body, queue.name, self.delay(waits), {**headers, "x-transient-waits": waits})
                RETRIED.labels(queue.name, "transient").inc()
                message.ack()
                self.wait_until_ready()
                return
            attempts = int(headers.get("x-attempts", 0)) + 1
            if attempts >= self.max_attempts:
                log.error("%s failed on %s %s after %d attempts; dead-lettered: %s\n%s", queue.name, event.type,
                          event.event_id, attempts, describe(exc), frames(exc))
                self.dead_letter(queue, message, f"handler failed {attempts} times: {describe(exc)}")
                return
            log.warning("%s failed on %s %s (attempt %d); trying again in %gs: %s",
                        queue.name, event.type, event.event_id, attempts, self.delay(attempts), type(exc).__name__)
            self.publisher.publish_later(body, queue.name, self.delay(attempts), {**headers, "x-attempts": attempts})
            RETRIED.labels(queue.name, "error").inc()
        message.ack()

    def wait_until_ready(self) -> None:
        """After a transient fault, take no more messages until the database answers (the ones already given to
        this worker wait, unacknowledged, and go back to the queue if the broker drops us meanwhile)."""
        if self.ready is None or self.ready():
            return
        self.on_ready_changed(False)
        pause = 0.2
        while not self.should_stop and not self.ready():
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
        self.on_ready_changed(True)

    def dead_letter(self, queue: Queue, message: Message, reason: str) -> None:
        """Move a message to the queue's dead-letter queue with the reason, then acknowledge it."""
        log.error("dead-lettering a message from %s: %s", queue.name, reason)
        DEAD_LETTERED.labels(queue.name).inc()
        self.publisher.publish_raw(
            raw_body(message),
            exchange=topology.DEAD_LETTER, routing_key=queue.name,
            headers={**(message.headers or {}), "x-dead-letter-reason": reason[:1000], "x-original-queue": queue.name,
                     "x-dead-lettered-at": time.time()},
            content_type=message.content_type, content_encoding=message.content_encoding,
        )
        message.ack()


def raw_body(message: Message) -> bytes:
    """A message's body as it came, for publishing it again unchanged."""
    return message.body if isinstance(message.body, bytes) else str(message.body).encode()


class DeadLetter:
    """A message in a dead-letter queue, as `ccs dead-letters` shows it (no payload: it may name a person)."""

    def __init__(self, queue: str, message: Message):
        self.queue, self.message = queue, message
        headers = message.headers or {}
        self.reason = str(headers.get("x-dead-letter-reason", ""))
        self.original_queue = str(headers.get("x-original-queue", queue.removesuffix(".dead")))
        self.dead_since = float(headers.get("x-dead-lettered-at") or 0) or None
        try:
            body = json.loads(message.body) if isinstance(message.body, (bytes, str)) else message.body
        except ValueError:
            body = None
        self.envelope = body if isinstance(body, dict) else None
        self.event_id = str((self.envelope or {}).get("event_id") or "")
        self.event_type = str((self.envelope or {}).get("type") or "(undecodable)")

    def summary(self) -> dict[str, Any]:
        """What a person deciding about it needs: where from, what it is, when and why; never the payload."""
        return {"queue": self.original_queue, "event_id": self.event_id, "type": self.event_type,
                "dead_since": self.dead_since, "reason": self.reason}


class DeadLetters:
    """The dead-letter queues, for a person to look at, replay or purge (`ccs dead-letters`). Chosen by queue,
    event type or age; what is looked at and not replayed or purged stays where it was."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def _each(self, queue: str | None, event_type: str | None, older_than: float | None, event_id: str | None,
              settle: Callable[[DeadLetter], bool]) -> list[DeadLetter]:
        """Take each chosen dead letter off its queue, and acknowledge it when `settle` says so; the rest go
        back when the channel closes."""
        chosen = []
        now = time.time()
        with connect(self.settings) as connection:
            topology.declare_all(connection)
            with connection.channel() as channel:
                for dead_queue in topology.DEAD_LETTER_QUEUES:
                    if queue and dead_queue.name not in (queue, f"{queue}.dead"):
                        continue
                    bound = dead_queue(channel)
                    while (message := bound.get(no_ack=False)) is not None:
                        letter = DeadLetter(dead_queue.name, message)
                        if (event_type in (None, letter.event_type) and event_id in (None, letter.event_id) and (
                                older_than is None or (letter.dead_since or 0) <= now - older_than)):
                            chosen.append(letter)
                            if settle(letter):
                                message.ack()
        return chosen

    def list(self, queue: str | None = None, event_type: str | None = None, older_than: float | None = None,
             event_id: str | None = None) -> list[DeadLetter]:
        """The dead letters chosen, left where they are."""
        return self._each(queue, event_type, older_than, event_id, lambda _letter: False)

    def replay(self, queue: str | None = None, event_type: str | None = None, older_than: float | None = None,
               event_id: str | None = None) -> list[DeadLetter]:
        """Put the chosen dead letters back on their queues to be handled again (with their tries reset)."""
        publisher = Publisher(self.settings)

        def replay_one(letter: DeadLetter) -> bool:
            headers = {k: v for k, v in (letter.message.headers or {}).items()
                       if k not in ("x-attempts", "x-transient-waits", "x-dead-letter-reason", "x-dead-lettered-at")}
            publisher.publish_raw(raw_body(letter.message), exchange=topology.RETRY,
                                  routing_key=letter.original_queue, headers=headers,
                                  content_type=letter.message.content_type,
                                  content_encoding=letter.message.content_encoding)
            return True

        try:
            return self._each(queue, event_type, older_than, event_id, replay_one)
        finally:
            publisher.reset()

    def purge(self, queue: str | None = None, event_type: str | None = None, older_than: float | None = None,
              event_id: str | None = None) -> list[DeadLetter]:
        """Drop the chosen dead letters for good."""
        return self._each(queue, event_type, older_than, event_id, lambda _letter: True)


__all__ = ["Consumer", "Connection", "DeadLetters", "Publisher", "Worker", "connect"]
