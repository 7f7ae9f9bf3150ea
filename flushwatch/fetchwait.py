"""Keeps a consumer's fetch wait above the time the broker needs to answer a fetch.

The embedded broker (Tansu 0.6, memory storage) lists every batch it holds for a partition on each fetch
from it, and a fetch that takes longer than the consumer's ``fetch_max_wait_ms`` comes back empty: measured
here, one partition of 8,000 batches starves a 1 ms wait, 20,000 a 5 ms wait, and a broker holding 10 M
records (3.5 GB) a 40 ms wait (and lets a trickle through a 60-80 ms one), while the log end keeps saying
there is more to read. A consumer in that state consumes nothing, or next to nothing, without an error.
:class:`FetchWait` watches for that (polls that find nothing while a backlog waits that the records
arriving would take many minutes to read) and doubles the wait, up to a cap, with a warning that names the
setting, so a short wait can be the default for latency without ever becoming a silent stall.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer

__all__ = ["FetchWait"]

log = logging.getLogger("flushwatch.kafka")


class FetchWait:
    """Raises ``consumer``'s fetch wait when it is starved (see the module docstring).

    Call :meth:`check` now and then (the processor does once per tick) with the records consumed and the
    polls that came back empty since the previous call; a poll must wait at least two fetch waits
    (:attr:`wait_ms`) before it gives up, or an empty poll proves nothing (a broker that answers each fetch
    after the whole wait, as the embedded one does, would look starved to a shorter poll and the wait would
    climb to the cap). Starved means: some polls came back empty while
    records wait beyond the position, and at the rate records arrived reading them would take more than
    ``backlog_ticks`` calls (none arrived at all, or a slow trickle through the fetches that still beat the
    broker). ``patience`` such calls in a row double the wait, up to ``cap_ms``; any other call resets the
    count. A consumer that keeps up, or one busy with a backlog (its polls find records buffered), never
    sees its wait change. The wait never comes down again: what makes the embedded broker slow (the records
    it holds) only grows.
    """

    def __init__(self, consumer: AIOKafkaConsumer, initial_ms: int, *, cap_ms: int = 1_000, patience: int = 2,
                 backlog_ticks: int = 600, setting: str = "processor.fetch_max_wait_ms") -> None:
        self._consumer = consumer
        self.wait_ms = initial_ms
        self._cap_ms = max(cap_ms, initial_ms)
        self._patience = patience
        self._backlog_ticks = backlog_ticks
        self._setting = setting
        self._starved = 0
        #: how many times the wait was raised
        self.raised = 0

    async def check(self, consumed: int, empty_polls: int) -> None:
        """One observation: ``consumed`` records arrived and ``empty_polls`` polls found nothing since the
        previous call."""
        if not empty_polls or self.wait_ms >= self._cap_ms:
            self._starved = 0
            return
        waiting = await self._records_waiting()
        if not waiting or waiting <= consumed * self._backlog_ticks:
            self._starved = 0
            return
        self._starved += 1
        if self._starved < self._patience:
            return
        self._starved = 0
        raised = min(self.wait_ms * 2, self._cap_ms)
        fetcher = getattr(self._consumer, "_fetcher", None)
        if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            log.error("fetches bring (almost) nothing while %d record(s) wait, and this aiokafka version does not "
                      "let flushwatch raise the fetch wait: set %s above %d ms", waiting, self._setting,
                      self.wait_ms)
            self._cap_ms = self.wait_ms  # said once: stop checking
            return
        fetcher._fetch_max_wait_ms = raised  # read by aiokafka for every fetch request it builds
        log.warning("fetches brought %d record(s) in %d checks while %d wait: the broker takes about as long "
                    "as %d ms or longer to answer a fetch, and answers nothing when it takes longer (the "
                    "embedded broker slows down as it fills up); fetch wait raised to %d ms (set %s to start "
                    "there)", consumed, self._patience, waiting, self.wait_ms, raised, self._setting)
        self.wait_ms = raised
        self.raised += 1

    async def _records_waiting(self) -> int:
        """Records between the position and the log end, summed over the assigned partitions (0: none).

        The log end is the larger of the high-water mark the last fetch reported (unknown when no fetch has
        answered yet) and ``end_offsets`` (which the embedded broker answers with the last batch's base
        offset + 1: short of the end, but past the position whenever a whole batch is unread)."""
        consumer = self._consumer
        assignment = consumer.assignment()
        if not assignment:
            return 0
        ends = await consumer.end_offsets(list(assignment))
        waiting = 0
        for tp in assignment:
            end = max(ends.get(tp) or 0, consumer.highwater(tp) or 0)
            waiting += max(0, end - await consumer.position(tp))
        return waiting
