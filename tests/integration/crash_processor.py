"""Runs a processor that kills itself with SIGKILL at the worst moment of the commit protocol.

Used by test_processor_recovery.py as a subprocess: ``python crash_processor.py BOOTSTRAP PREFIX POINT``.
The process dies at POINT ("alerts_flushed": alerts are on fw.alerts but neither state nor offsets are
saved) of the first checkpoint that produced alerts after at least one complete checkpoint, so the
restarted processor must restore an older state and must not produce those alerts again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from flushwatch.kafka import Producer
from flushwatch.metrics import Metrics
from processors.registry import build_detectors
from processors.runtime import ProcessorService
from tests.integration.helpers import kafka_config


async def main(bootstrap: str, prefix: str, point: str) -> None:
    config = kafka_config(bootstrap, prefix, processor={"commit_interval_s": 0.01})
    metrics = Metrics()
    producer = Producer(config.kafka, metrics)
    await producer.start()
    state = {"checkpoints": 0, "emitted_at_last": 0}
    service: ProcessorService

    def hook(where: str) -> None:
        if where == "committed":
            state["checkpoints"] += 1
            state["emitted_at_last"] = service.alerts_emitted
        elif (where == point and state["checkpoints"] >= 1
              and service.alerts_emitted > state["emitted_at_last"]):
            print(f"killing at {where} after {service.alerts_emitted} alerts", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    service = ProcessorService(config, metrics, lambda: build_detectors(config), producer, max_batch=40,
                               fault_hook=hook)
    await service.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
