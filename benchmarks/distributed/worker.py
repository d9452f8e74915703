"""One benchmark worker process: ``forgeline worker`` with the benchmark's agents.

It is what ``forgeline worker`` runs (``cli/cluster.py``: ``open_runtime``, then
``BrokerWorker(...).run`` until SIGTERM, standing by as the outbox relay), with the
pipeline built from the instant or sleeping agents of ``flow.py`` instead of model
chains. ``python -m benchmarks.distributed.worker --store URL --broker URL --root DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import signal
from pathlib import Path

from forgeline.core.reactions import STAGES
from forgeline.runtime import open_runtime
from forgeline.transport.worker import BrokerWorker

from .flow import broker_settings, pipeline_factory


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = broker_settings(args.store, args.broker, Path(args.root))
    async with open_runtime(
        settings, agents=False, pipeline=pipeline_factory(args.sleep)
    ) as runtime:
        worker = BrokerWorker(runtime, STAGES, concurrency=args.concurrency, name=args.name)
        await worker.run(stop)
    print(f"worker {args.name} stopped after {worker.handled} message(s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed.worker")
    parser.add_argument("--store", required=True, help="the shared Postgres store's URL")
    parser.add_argument("--broker", required=True, help="the RabbitMQ URL")
    parser.add_argument("--root", required=True, help="the shared workspaces root")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each stage waits")
    parser.add_argument("--concurrency", type=int, default=None, help="messages at once")
    parser.add_argument("--name", default="bench-worker")
    parser.add_argument("--profile", default="", help="write a cProfile of the run here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    if not args.profile:
        asyncio.run(serve(args))
        return
    profile = cProfile.Profile()
    try:
        profile.runcall(asyncio.run, serve(args))
    finally:
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
