"""Runs a processor that kills itself (SIGKILL) between a checkpoint's snapshot and its offset commit, after
its main loop went on consuming and produced alerts of records the snapshot does not cover: the window a
checkpoint running beside the loop opens.

Used by test_processor_checkpoint.py as a subprocess: ``python crash_checkpoint.py BOOTSTRAP PREFIX``. It
prints ``held N`` when it takes the first snapshot that covers an alert (N alerts produced so far); the
state write of that checkpoint is then held back (tests/integration/gated_producer.py) and the parent
publishes the rest of the input. The state write is let through once an alert produced after the snapshot
is acknowledged on fw.alerts, and the process dies as soon as the state is written ("state_written"),
before the offsets are committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from flushwatch.metrics import Metrics
from flushwatch.topics import Topics
from processors.registry import build_detectors
from processors.runtime import ProcessorService
from tests.integration.gated_producer import GatedProducer
from tests.integration.helpers import kafka_config


async def main(bootstrap: str, prefix: str) -> None:
    config = kafka_config(bootstrap, prefix, processor={"commit_interval_s": 0.2})
    topics = Topics(prefix)
    metrics = Metrics()
    producer = GatedProducer(config.kafka, metrics, state_topic=topics.processor_state, alerts_topic=topics.alerts)
    await producer.start()
    state = {"armed": False, "later_alert_acked": False}
    service: ProcessorService

    def later_alert_done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            state["later_alert_acked"] = True
            if producer.holding:
                producer.release()

    def on_alert(future: asyncio.Future[Any]) -> None:
        if state["armed"]:  # produced after the held snapshot
            future.add_done_callback(later_alert_done)

    def hook(where: str) -> None:
        if where == "snapshot_taken" and not state["armed"] and service.alerts_emitted >= 1:
            state["armed"] = True
            producer.holding = True
            print(f"held {service.alerts_emitted}", flush=True)
        elif where == "state_written" and state["armed"] and state["later_alert_acked"]:
            print(f"killing at state_written after {service.alerts_emitted} alerts", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    producer.on_alert = on_alert
    service = ProcessorService(config, metrics, lambda: build_detectors(config), producer, fault_hook=hook)
    await service.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
