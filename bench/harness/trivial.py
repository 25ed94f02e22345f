"""The baseline: a trivial workflow, and a worker for it (``python -m harness.trivial``).

The workflow answers an Update with its argument and counts signals; nothing else. Its
round-trips measure what Temporal itself costs on this machine, so the product's figures
can be printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

TASK_QUEUE = "bench-trivial"


@workflow.defn(sandboxed=False)
class TrivialWorkflow:
    def __init__(self) -> None:
        self.signals = 0
        self.updates = 0
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(
            lambda: self.done or workflow.info().is_continue_as_new_suggested()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self.done:
            workflow.continue_as_new()
        return self.signals

    @workflow.update
    def ping(self, value: int) -> int:
        self.updates += 1
        return value

    @workflow.signal
    def bump(self) -> None:
        self.signals += 1

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def count(self) -> int:
        return self.signals


async def serve(address: str, task_queue: str, max_cached: int) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[TrivialWorkflow],
        max_cached_workflows=max_cached,
    ):
        print("trivial worker polling", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", default=TASK_QUEUE)
    parser.add_argument("--max-cached", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue, args.max_cached))


if __name__ == "__main__":
    main()
