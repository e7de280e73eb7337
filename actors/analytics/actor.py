"""The analytics actor: facts in through a small best-effort mailbox, events
out through the exporters. Never in the way of the server.

``run_analytics(config)`` starts it and hands back the :class:`Recorder`
every other actor records facts through (``DISABLED``, a no-op, when
analytics is off, which is the default as in the original). The actor reads
facts in batches, reduces them (``actors/analytics/reducer.py``) and offers
the events to each exporter:

- :class:`JsonlExporter` appends one JSON object per line to a file,
  handing each batch to the OS as it comes (no buffer, one write per batch
  on the trio thread, as the rollout writer does), so a turn's events are
  in the file within :data:`BATCH_WINDOW` of the turn's end;
- :class:`HttpExporter` POSTs ``{"events": [...]}`` with h11 over a trio
  socket, with a timeout per try, retries with doubling backoff, and gives
  a batch up (counted) after the last try.

Rules, and why:

- Recording never waits. The mailbox holds :data:`ANALYTICS_CAPACITY` facts,
  as the original's queue; a fact that finds it full is dropped and counted,
  and the warning is rate-limited (the original logs every drop and floods
  the log). Each exporter has its own bounded queue, so a hung endpoint
  drops events (counted) instead of slowing ingestion.
- Analytics never takes the server down: a fact the reducer chokes on, or an
  export that fails, is logged and skipped. A bad ``[analytics]`` setting is
  the one error it raises, at start, before the server serves anyone.
- Facts carry ids, never objects (see :mod:`.facts`), so nothing held
  here keeps a closed connection or the runtime alive.
- Shutdown is bounded. When the facts end (every Recorder closed) or the
  actor is cancelled, the facts still queued are reduced, and the exporters
  get :data:`EXPORT_SHUTDOWN_TIMEOUT` seconds to drain; an endpoint that
  never answers is abandoned at that deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from io import FileIO
from typing import Final
from urllib.parse import urlsplit

import msgspec
import trio

from ...runtime.config import AnalyticsConfig, ConfigError
from ...runtime.kernel.errors import MailboxClosed
from ...runtime.kernel.mailbox import DROP, open_mailbox
from .facts import DISABLED, DROP_WARNING_INTERVAL, Fact, Recorder
from .reducer import Event, Reducer

__all__ = [
    "ANALYTICS_CAPACITY",
    "EXPORT_QUEUE_CAPACITY",
    "EXPORT_SHUTDOWN_TIMEOUT",
    "HTTP_BATCH_MAX",
    "Exporter",
    "HttpExporter",
    "JsonlExporter",
    "Recorder",
    "analytics_enabled",
    "run_analytics",
]

log = logging.getLogger("trio_codex.analytics")

#: Facts waiting for the actor: 256, as the original's queue. Reducing a fact
#: takes microseconds, so only a stalled event loop or a flood fills it.
ANALYTICS_CAPACITY: Final = 256
#: Event batches (one per batch of facts) waiting for one exporter; past
#: this it is falling behind and new batches are dropped and counted.
EXPORT_QUEUE_CAPACITY: Final = 64
#: Events per HTTP POST at most.
HTTP_BATCH_MAX: Final = 100
#: How long the exporters may take to drain once analytics stops; well
#: inside the host's SHUTDOWN_TIMEOUT.
EXPORT_SHUTDOWN_TIMEOUT: Final = 1.0


def analytics_enabled(config: AnalyticsConfig, *, default_enabled: bool) -> bool:
    """Whether analytics runs: ``[analytics] enabled`` when set, else
    ``default_enabled`` (app-server: ``--analytics-default-enabled``)."""
    return default_enabled if config.enabled is None else config.enabled


#: How long the actor gathers facts after waking: a turn's facts are then
#: reduced and exported together, at most 1/BATCH_WINDOW times a second.
BATCH_WINDOW = 0.02


async def run_analytics(
    config: AnalyticsConfig,
    *,
    default_enabled: bool = False,
    task_status: trio.TaskStatus[Recorder] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the analytics actor until every handle of its Recorder is closed,
    or until cancelled; ``task_status.started`` hands over the Recorder.

    When analytics is off, hands over :data:`DISABLED` and returns at once.

    Raises:
      ConfigError: an exporter setting cannot be used (bad URL, a file that
        cannot be opened); raised before ``started``.
    """
    if not analytics_enabled(config, default_enabled=default_enabled):
        task_status.started(DISABLED)
        return
    exporters = _exporters(config)
    for exporter in exporters:
        await exporter.open()
    mailbox, inbox = open_mailbox(ANALYTICS_CAPACITY, name="analytics", default=DROP)
    recorder = Recorder(mailbox)
    reducer = Reducer()
    # The exporters run shielded from outside cancellation, so that they can
    # drain at shutdown; the deadline set below is what stops them.
    draining = trio.CancelScope(shield=True)
    received = 0
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_run_exporters, exporters, draining)
            task_status.started(recorder)
            try:
                while True:
                    try:
                        facts = await inbox.receive_batch(ANALYTICS_CAPACITY)
                    except trio.EndOfChannel:
                        break
                    received += len(facts)
                    _reduce(facts, reducer, exporters)
                    # Best effort, never in the way: gather what the next
                    # few ms bring rather than wake (and export) per fact.
                    await trio.sleep(BATCH_WINDOW)
            finally:
                leftover = inbox.drain_nowait(ANALYTICS_CAPACITY)
                received += len(leftover)
                _reduce(leftover, reducer, exporters)
                inbox.close()
                for exporter in exporters:
                    exporter.close()
                draining.deadline = trio.current_time() + EXPORT_SHUTDOWN_TIMEOUT
    finally:
        log.info("analytics stopped: %d fact(s) reduced, %d dropped because the queue was full; %s",
                 received, inbox.statistics().dropped,
                 "; ".join(e.summary() for e in exporters) or "no exporter")


def _exporters(config: AnalyticsConfig) -> list[Exporter]:
    exporters: list[Exporter] = []
    if config.export_jsonl:
        exporters.append(JsonlExporter(config.export_jsonl))
    if config.export_url:
        exporters.append(HttpExporter(
            config.export_url,
            timeout=config.export_timeout_ms / 1000,
            max_attempts=config.export_max_attempts,
            backoff=config.export_backoff_ms / 1000,
        ))
    return exporters


async def _run_exporters(exporters: Sequence[Exporter], scope: trio.CancelScope, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        async with trio.open_nursery() as nursery:
            for exporter in exporters:
                nursery.start_soon(exporter.run)
            task_status.started()


def _reduce(facts: Sequence[Fact], reducer: Reducer, exporters: Sequence[Exporter]) -> None:
    events: list[Event] = []
    for fact in facts:
        try:
            events += reducer.ingest(fact)
        except Exception:
            log.exception("analytics: the reducer failed on a %s fact; it is skipped (a bug: please report it)",
                          type(fact).__name__)
    if events:
        batch = tuple(events)
        for exporter in exporters:
            exporter.offer(batch)


class _Throttle:
    """Log a warning at most once per DROP_WARNING_INTERVAL, with how many
    occurrences it stands for."""

    def __init__(self) -> None:
        self._next = float("-inf")
        self._count = 0

    def warn(self, message: str, *args: object) -> None:
        self._count += 1
        now = trio.current_time()
        if now >= self._next:
            log.warning(message + " (%d time(s) since the last such warning)", *args, self._count)
            self._count = 0
            self._next = now + DROP_WARNING_INTERVAL


class Exporter:
    """An event sink running as its own task, fed through a bounded queue.

    :meth:`offer` never blocks: a batch that finds the queue full is dropped
    and its events counted in :attr:`dropped`. :meth:`run` exports batches as
    they come until :meth:`close`, then drains what is queued. Subclasses
    implement :meth:`export` (and :meth:`open` if they need to).

    Counters: ``exported`` events delivered, ``dropped`` events never tried
    (queue full), ``failed`` events tried and given up.
    """

    name = "exporter"

    def __init__(self) -> None:
        self._queue, self._inbox = open_mailbox(EXPORT_QUEUE_CAPACITY, name=f"analytics {self.name}",
                                                default=DROP)
        self._throttle = _Throttle()
        self.exported = 0
        self.dropped = 0
        self.failed = 0

    async def open(self) -> None:
        """Prepare to export; raise ConfigError if the settings cannot work."""

    async def export(self, events: list[Event]) -> None:
        raise NotImplementedError

    def offer(self, events: tuple[Event, ...]) -> None:
        """Queue ``events`` for export, or drop them if the queue is full."""
        try:
            if self._queue.send_nowait(events):
                return
        except MailboxClosed:
            pass
        self.dropped += len(events)
        self._throttle.warn("analytics %s is falling behind: dropped %d event(s)", self.name, len(events))

    def close(self) -> None:
        """No more events: :meth:`run` returns once the queue is drained."""
        self._queue.close()

    async def run(self) -> None:
        try:
            while True:
                try:
                    batches = await self._inbox.receive_batch(EXPORT_QUEUE_CAPACITY)
                except trio.EndOfChannel:
                    return
                events = [event for batch in batches for event in batch]
                try:
                    await self.export(events)
                except Exception:
                    self.failed += len(events)
                    log.exception("analytics %s failed; %d event(s) lost (a bug: please report it)",
                                  self.name, len(events))
        finally:
            self._inbox.close()
            self.finish()

    def finish(self) -> None:
        """Release what :meth:`open` took; called once, when :meth:`run` ends."""

    def summary(self) -> str:
        return f"{self.name}: {self.exported} exported, {self.dropped} dropped, {self.failed} failed"


class JsonlExporter(Exporter):
    """Appends each event to ``path`` as one line of JSON. The file is
    unbuffered: each batch is handed to the OS as it is written, so nothing
    is left to flush at shutdown, or to fail there.

    The write runs on the trio thread, as the rollout writer's do: a batch
    (a few KB, once per :data:`BATCH_WINDOW` at most) reaches the page cache
    in microseconds, while a worker-thread round trip would cost the server
    more CPU than the write itself (bench/analytics_overhead.py)."""

    name = "export_jsonl"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._file: FileIO | None = None
        self._encoder = msgspec.json.Encoder()

    async def open(self) -> None:
        try:
            self._file = await trio.to_thread.run_sync(lambda: open(self.path, "ab", buffering=0))
        except OSError as exc:
            raise ConfigError(
                f"[analytics] export_jsonl = {self.path!r}: cannot open it for appending "
                f"({exc.strerror}); point it at a writable file or remove the key",
                key="analytics.export_jsonl",
            ) from exc

    async def export(self, events: list[Event]) -> None:
        buf = bytearray()
        for event in events:
            self._encoder.encode_into(event, buf, -1)
            buf += b"\n"
        try:
            self._write(buf)
        except OSError as exc:
            self.failed += len(events)
            self._throttle.warn("analytics export_jsonl: cannot write %s (%s); %d event(s) lost",
                                self.path, exc.strerror, len(events))
        else:
            self.exported += len(events)

    def _write(self, data: bytearray) -> None:
        assert self._file is not None, "JsonlExporter.open() first"
        view = memoryview(data)
        while view:
            view = view[self._file.write(view):]

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()


class HttpExporter(Exporter):
    """POSTs ``{"events": [...]}`` (at most :data:`HTTP_BATCH_MAX` events) to
    an ``http://`` URL, with h11 over a trio TCP stream, one connection per
    batch (batches are rare: a few per turn).

    Each try must get response headers within ``timeout`` seconds. A
    connection error, a timeout, 408, 429 or a 5xx is tried again after
    ``backoff`` seconds, doubling each time, up to ``max_attempts`` tries in
    all; any other status is final. A batch that fails is counted in
    ``failed`` and ``batches_failed`` and logged, rate-limited.
    """

    name = "export_url"

    def __init__(self, url: str, *, timeout: float = 10.0, max_attempts: int = 3, backoff: float = 0.5) -> None:
        super().__init__()
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"[analytics] export_url = {url!r}: expected an http://HOST[:PORT]/PATH URL "
                "(https is not supported; put a local forwarder in front of an https endpoint)",
                key="analytics.export_url",
            )
        self.url = url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._host = parts.hostname
        self._port = parts.port or 80
        self._authority = parts.netloc.rpartition("@")[2]
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._encoder = msgspec.json.Encoder()
        self.batches_sent = 0
        self.batches_failed = 0

    async def export(self, events: list[Event]) -> None:
        for start in range(0, len(events), HTTP_BATCH_MAX):
            await self._send(events[start:start + HTTP_BATCH_MAX])

    async def _send(self, events: list[Event]) -> None:
        import h11  # only the HTTP exporter needs it: kept off the start-up path

        body = self._encoder.encode({"events": events})
        delay = self.backoff
        for attempt in range(1, self.max_attempts + 1):
            try:
                with trio.fail_after(self.timeout):
                    status = await self._post(body)
            except trio.TooSlowError:
                problem = f"no response within {self.timeout:g} s"
            except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
                problem = str(exc) or type(exc).__name__
            else:
                if 200 <= status < 300:
                    self.exported += len(events)
                    self.batches_sent += 1
                    return
                problem = f"HTTP {status}"
                if status < 500 and status not in (408, 429):
                    break
            if attempt < self.max_attempts:
                await trio.sleep(delay)
                delay *= 2
        self.failed += len(events)
        self.batches_failed += 1
        self._throttle.warn("analytics export_url: gave up posting %d event(s) to %s after %d tr%s: %s",
                            len(events), self.url, attempt, "y" if attempt == 1 else "ies", problem)

    async def _post(self, body: bytes) -> int:
        import h11

        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(method="POST", target=self._target, headers=[
            ("Host", self._authority),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("User-Agent", "trio-codex-analytics"),
            ("Connection", "close"),
        ])
        stream = await trio.open_tcp_stream(self._host, self._port)
        async with stream:
            await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body))
                                  + conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(16384))
                elif isinstance(event, h11.Response):
                    return event.status_code
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionError("the endpoint closed the connection without answering")

    def summary(self) -> str:
        return f"{super().summary()} ({self.batches_sent} batches sent, {self.batches_failed} given up)"

