"""Chooses a consumer's fetch wait: short at the log end, longer with a backlog, never below what the broker
needs to answer.

The embedded broker (Tansu 0.6, memory storage) answers every fetch only after the whole wait, data or
not, and it lists every batch it holds for a partition on each fetch from it; a fetch that takes it longer
than the wait comes back empty. Measured here: one partition of 8,000 batches starves a 1 ms wait and
20,000 a 5 ms wait; against a broker holding 10 M records (3.5 GB) a processor read ~9 K records/s with a
20 ms wait and ~70 K/s with 100 ms, while at the log end of a small broker 20 ms rather than 100 halves the
alert latency (bench/RESULTS.md). So one wait cannot serve both: :class:`FetchWait` uses the short one
while the consumer keeps up and the catch-up one while more than a tick's worth of records waits, and it
raises the floor under both (with a warning) when polls find nothing while a backlog waits that the
records arriving would take many minutes to read: a broker too slow for the wait, which would otherwise
stall the consumer without an error. On a real Kafka cluster a fetch returns as soon as there is data, so
the wait matters only when there is none, and this changes nothing that matters.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer

from flushwatch.kafka import consumer_lag

__all__ = ["FetchWait"]

log = logging.getLogger("flushwatch.kafka")

#: below this many records waiting the consumer counts as keeping up, whatever it consumed
_KEEPING_UP = 1_000


class FetchWait:
    """Sets ``consumer``'s fetch wait from what :meth:`check` observes (see the module docstring).

    Call :meth:`check` once per tick with the records consumed and the polls that came back empty since the
    previous call. A poll must wait at least two fetch waits (:attr:`wait_ms`) before it gives up, or an empty
    poll proves nothing: against a broker that answers each fetch after the whole wait, a shorter poll
    would come back empty while the fetch is still on its way.

    * Keeping up (at most a tick's worth of records, or fewer than 1,000, wait): ``live_ms``.
    * Behind: ``catchup_ms``.
    * Starved (empty polls while records wait that the rate of arrival would take more than
      ``backlog_ticks`` ticks to read), ``patience`` checks in a row: the floor under both doubles, up to
      ``cap_ms``, with a warning. The floor never comes down: what makes the embedded broker slow (the
      records it holds) only grows.
    """

    def __init__(self, consumer: AIOKafkaConsumer, live_ms: int, catchup_ms: int | None = None, *,
                 cap_ms: int = 1_000, patience: int = 2, backlog_ticks: int = 600,
                 setting: str = "processor.fetch_max_wait_ms") -> None:
        self._consumer = consumer
        self._live_ms = live_ms
        self._catchup_ms = max(live_ms, catchup_ms if catchup_ms is not None else live_ms)
        self._floor_ms = 0
        self._cap_ms = max(cap_ms, self._catchup_ms)
        self._patience = patience
        self._backlog_ticks = backlog_ticks
        self._setting = setting
        self._starved = 0
        self._settable = hasattr(getattr(consumer, "_fetcher", None), "_fetch_max_wait_ms")
        #: the wait in use
        self.wait_ms = live_ms
        #: how many times the floor was raised
        self.raised = 0
        #: records behind the log end at the last check
        self.waiting = 0

    async def check(self, consumed: int, empty_polls: int) -> None:
        """One observation: ``consumed`` records arrived and ``empty_polls`` polls found nothing since the
        previous call."""
        self.waiting = waiting = await consumer_lag(self._consumer, ask_broker=True)
        starved = bool(empty_polls) and waiting > consumed * self._backlog_ticks
        self._starved = self._starved + 1 if starved else 0
        if self._starved >= self._patience and self.wait_ms < self._cap_ms:
            self._starved = 0
            if not self._settable:
                log.error("fetches bring (almost) nothing while %d record(s) wait, and this aiokafka version does "
                          "not let flushwatch change the fetch wait: set %s above %d ms", waiting,
                          self._setting, self.wait_ms)
                self._cap_ms = self.wait_ms  # said once
                return
            self._floor_ms = min(max(self.wait_ms, 1) * 2, self._cap_ms)
            log.warning("fetches brought %d record(s) in %d checks while %d wait: the broker takes about %d ms "
                        "or longer to answer a fetch and answers nothing when it takes longer (the embedded "
                        "broker slows down as it fills up); fetch wait raised to at least %d ms (set %s "
                        "to start there)", consumed, self._patience, waiting, self.wait_ms, self._floor_ms,
                        self._setting)
            self.raised += 1
        behind = waiting > max(consumed, _KEEPING_UP)
        self._apply(max(self._floor_ms, self._catchup_ms if behind else self._live_ms))

    def _apply(self, wait_ms: int) -> None:
        if wait_ms == self.wait_ms or not self._settable:
            return
        self._consumer._fetcher._fetch_max_wait_ms = wait_ms  # read by aiokafka for every fetch it builds
        log.debug("fetch wait %d -> %d ms", self.wait_ms, wait_ms)
        self.wait_ms = wait_ms
