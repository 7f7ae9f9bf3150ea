"""Checkpoints run beside the main loop: it keeps consuming and alerting while one waits for the broker,
and the commit order (alerts, then state, then offsets) and the crash guarantees still hold.

A slow or failing state write is injected with :class:`GatedProducer` (acknowledgements of changelog
records held back until the test releases or fails them); every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from flushwatch.codec import encode_event
from flushwatch.config import Config
from flushwatch.kafka import Producer, create_topics
from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from processors import runtime
from processors.runtime import CheckpointError, ProcessorService
from processors.state import PartitionState

from .gated_producer import GatedProducer
from .helpers import committed_total, kafka_config, produce, read_all
from .test_processor_recovery import alert_ids, demo_events, process_to_end, publish, reference, setup
from .test_processor_service import EveryThird, liquidation

REPO = Path(__file__).resolve().parents[2]
#: the fault-hook points of one checkpoint, in the commit order
CYCLE = ["snapshot_taken", "alerts_flushed", "state_written", "committed"]


def assert_one_checkpoint_at_a_time(points: list[str]) -> None:
    """The points of successive checkpoints never interleave: each one finished before the next began."""
    assert points == [CYCLE[i % len(CYCLE)] for i in range(len(points))]


async def wait_for(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def start(broker, prefix: str) -> tuple[Config, Topics, GatedProducer]:
    # a group of its own: a test that fails half-way cannot leave members behind in another test's group
    config = kafka_config(broker.bootstrap, prefix,
                          processor={"commit_interval_s": 0.05, "group_id": f"{prefix}processor"})
    topics = Topics(prefix)
    await create_topics(config.kafka, topics.all, compacted=topics.compacted)
    producer = GatedProducer(config.kafka, Metrics(), state_topic=topics.processor_state)
    await producer.start()
    return config, topics, producer


async def publish_liquidations(broker, topics: Topics, base: str, numbers: range) -> None:
    await produce(broker.bootstrap, topics.market("liquidation"),
                  [(base.encode(), encode_event(liquidation(base, i))) for i in numbers])


def decode_states(values: list[bytes]) -> list[PartitionState]:
    return [PartitionState.decode(v) for v in values]


class _Observed(ProcessorService):
    """Notes when a revocation and the shutdown's final checkpoint begin, so a test can hold the checkpoint
    in flight across them, and which partitions the last assignment gave it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.revoking = asyncio.Event()
        self.stopping = asyncio.Event()
        self.assigned: set[int] = set()

    async def acquire(self, partitions: set[int]) -> None:
        await super().acquire(partitions)
        self.assigned = set(partitions)

    async def release(self, partitions: set[int]) -> None:
        self.revoking.set()
        await super().release(partitions)

    async def _final_checkpoint(self, *, failing: bool) -> None:
        self.stopping.set()
        await super()._final_checkpoint(failing=failing)


async def test_the_loop_keeps_consuming_and_alerting_while_a_state_write_is_slow(broker, topic_prefix):
    config, topics, producer = await start(broker, topic_prefix)
    producer.holding = True
    points: list[str] = []
    service = ProcessorService(config, Metrics(), lambda: [EveryThird()], producer, fault_hook=points.append)
    stop = asyncio.Event()
    await publish_liquidations(broker, topics, "BTC", range(3))  # alert BTC-3
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(service.run(stop))
            # a checkpoint is in flight (every unit is dirty at first), its state writes held back
            await wait_for(lambda: len(producer.held) == config.kafka.partitions)
            snapshot = decode_states([value for _inner, _outer, value in producer.held])
            assert sum(sum(s.offsets.values()) for s in snapshot) <= 3

            await publish_liquidations(broker, topics, "BTC", range(3, 9))  # alerts BTC-6, BTC-9
            await wait_for(lambda: service.records == 9 and service.alerts_emitted == 3)
            # consumed, detected and acknowledged on fw.alerts while the checkpoint still waits
            assert len(await read_all(broker.bootstrap, topics.alerts, expect=3)) == 3
            assert service.checkpoints == 0
            assert points == CYCLE[:2]  # no second checkpoint started meanwhile
            # offsets wait for the state
            assert await committed_total(broker.bootstrap, config, topics.market("liquidation")) == 0

            producer.release()
            await wait_for(lambda: service.checkpoints >= 1)
            stop.set()
    finally:
        await producer.stop()

    assert_one_checkpoint_at_a_time(points)
    states = decode_states(producer.state_values)
    final = states[-config.kafka.partitions:]  # the shutdown's checkpoint: one record per unit
    assert sum(sum(s.offsets.values()) for s in final) == 9
    assert await committed_total(broker.bootstrap, config, topics.market("liquidation")) == 9
    # the held state's alerts_next is at or before every alert it does not account for
    alerts = await read_all(broker.bootstrap, topics.alerts, expect=3)
    later = [r.offset for r in alerts if r.value and b'"BTC-3"' not in r.value]
    assert max(s.alerts_next for s in snapshot) <= min(later)


async def test_a_failed_background_checkpoint_stops_the_service_and_nothing_is_written_after_it(
        broker, topic_prefix):
    config, topics, producer = await start(broker, topic_prefix)
    producer.holding = True
    points: list[str] = []
    service = ProcessorService(config, Metrics(), lambda: [EveryThird()], producer, fault_hook=points.append)
    stop = asyncio.Event()
    await publish_liquidations(broker, topics, "ETH", range(3))
    task = asyncio.create_task(service.run(stop))
    try:
        await wait_for(lambda: len(producer.held) == config.kafka.partitions)
        producer.fail(KafkaError("injected: the state record was not acknowledged"))
        with pytest.raises(CheckpointError, match="state record was not acknowledged"):
            async with asyncio.timeout(30):
                await task
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait([task])
        await producer.stop()
    # no final checkpoint after the failed one: it could claim records whose alerts were lost
    assert len(producer.state_values) == config.kafka.partitions
    assert points == CYCLE[:2]
    assert await committed_total(broker.bootstrap, config, topics.market("liquidation")) == 0


async def test_stop_waits_for_the_checkpoint_in_flight_then_checkpoints_the_rest(broker, topic_prefix):
    config, topics, producer = await start(broker, topic_prefix)
    producer.holding = True
    points: list[str] = []
    service = _Observed(config, Metrics(), lambda: [EveryThird()], producer, fault_hook=points.append)
    stop = asyncio.Event()
    await publish_liquidations(broker, topics, "SOL", range(3))
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(service.run(stop))
            await wait_for(lambda: producer.held)
            await publish_liquidations(broker, topics, "SOL", range(3, 7))
            await wait_for(lambda: service.records == 7)
            stop.set()
            await wait_for(service.stopping.is_set)
            # the shutdown does not take its snapshot before the checkpoint in flight is acknowledged
            assert points == CYCLE[:2]
            producer.release()
    finally:
        await producer.stop()
    assert_one_checkpoint_at_a_time(points)
    assert len(points) == 2 * len(CYCLE)  # the one in flight, then the final one
    states = decode_states(producer.state_values)
    assert sum(sum(s.offsets.values()) for s in states[-config.kafka.partitions:]) == 7
    assert await committed_total(broker.bootstrap, config, topics.market("liquidation")) == 7


async def test_a_revocation_waits_for_the_checkpoint_in_flight_and_hands_over_exactly(broker, topic_prefix):
    config, topics, gated = await start(broker, topic_prefix)
    bases = ["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB"]  # spread over the 3 partitions
    for base in bases:
        await publish_liquidations(broker, topics, base, range(6))
    gated.holding = True
    points: list[str] = []
    first = _Observed(config, Metrics(), lambda: [EveryThird()], gated, fault_hook=points.append)
    plain = Producer(config.kafka, Metrics())
    await plain.start()
    second = ProcessorService(config, Metrics(), lambda: [EveryThird()], plain)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(first.run(stop_first))
            await wait_for(lambda: gated.held and first.records == 6 * len(bases))
            group.create_task(second.run(stop_second))  # joins: the first one's partitions are revoked
            await wait_for(first.revoking.is_set)
            assert points == CYCLE[:2]  # the revocation waits: its own checkpoint can only follow this one
            gated.release()
            await wait_for(second.ready.is_set)
            for base in bases:
                await publish_liquidations(broker, topics, base, range(6, 12))
            await wait_for(lambda: first.records + second.records >= 12 * len(bases))
            # one at a time: the embedded broker can lose track of a group whose members all leave at once
            stop_second.set()
            await wait_for(lambda: len(first.assigned) == config.kafka.partitions)
            stop_first.set()
    finally:
        await gated.stop()
        await plain.stop()
    assert_one_checkpoint_at_a_time(points)
    alerts = await read_all(broker.bootstrap, topics.alerts, expect=4 * len(bases))
    ids = sorted(r.value.split(b'"alert_id":"')[1].split(b'"')[0].decode() for r in alerts if r.value)
    assert ids == sorted(f"{b}-{n}" for b in bases for n in (3, 6, 9, 12))  # none missing, none doubled


async def test_kill_9_between_snapshot_and_commit_after_the_loop_ran_ahead(broker):
    """The process dies with its state written but not committed, after it produced (and the broker
    acknowledged) alerts of records its snapshot does not cover: the restart must not produce them again
    and must produce everything else, exactly as an uninterrupted run."""
    events = demo_events()
    expected = await reference(broker.bootstrap, "ref-bg-crash.", events)
    prefix = "bg-crash."
    await setup(broker.bootstrap, prefix)
    split = 700  # ETH and DOGE cascades start before it; BTC, XRP and TRUMP after it
    await publish(broker.bootstrap, prefix, events[:split])
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "tests" / "integration" / "crash_checkpoint.py"), broker.bootstrap, prefix,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    held, out, err = b"", b"", b""
    try:
        async with asyncio.timeout(90):
            assert child.stdout is not None
            held = await child.stdout.readline()
            assert held.startswith(b"held "), held
            await publish(broker.bootstrap, prefix, events[split:])  # consumed while the state write waits
            out, err = await child.communicate()
    finally:
        if child.returncode is None:  # it never got to the crash: keep its output for the assertion below
            child.kill()
            out, err = await child.communicate()
    assert child.returncode == -9, (held, out.decode()[-2000:], err.decode()[-3000:])
    assert b"killing at state_written" in out
    at_snapshot = int(held.split()[1])
    killed_after = int(out.split(b"after ")[1].split()[0])
    assert killed_after > at_snapshot  # alerts of records after the snapshot were produced before the crash

    service = await process_to_end(broker.bootstrap, prefix, expect=0)
    # at least the acknowledged one was found by the read-back (the others may have died unsent with the
    # process, and are produced now)
    assert service.alerts_suppressed >= 1
    got = await alert_ids(broker.bootstrap, prefix, expect=10)
    assert got == expected  # identical ids, none missing, none doubled


async def test_every_state_written_matches_its_offsets_when_units_are_snapshotted_across_passes(
        broker, topic_prefix, monkeypatch):
    """With no time budget each pass of the loop snapshots one unit, while records keep arriving for the
    others: every changelog record must still pair a unit's detector state with exactly its offsets."""
    monkeypatch.setattr(runtime, "SNAPSHOT_BUDGET_S", 0.0)
    config, topics, producer = await start(broker, topic_prefix)
    points: list[str] = []
    service = ProcessorService(config, Metrics(), lambda: [EveryThird()], producer, fault_hook=points.append)
    stop = asyncio.Event()
    bases = ["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB"]
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(service.run(stop))
            await wait_for(service.ready.is_set)
            for round_ in range(5):
                for base in bases:
                    await publish_liquidations(broker, topics, base, range(round_ * 4, round_ * 4 + 4))
                await wait_for(lambda round_=round_: service.records == (round_ + 1) * 4 * len(bases))
            await wait_for(lambda: service.checkpoints >= 3)
            stop.set()
    finally:
        await producer.stop()
    assert_one_checkpoint_at_a_time(points)
    states = decode_states(producer.state_values)
    assert len(states) >= 3 * config.kafka.partitions
    for state in states:  # EveryThird counts every liquidation of its unit: the count is the offset
        counted = sum(state.detectors["every_third"]["counts"].values())
        assert counted == state.offsets.get(topics.market("liquidation"), 0), state
    assert sum(sum(s.offsets.values()) for s in states[-config.kafka.partitions:]) == 20 * len(bases)
