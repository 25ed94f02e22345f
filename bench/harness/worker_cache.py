"""``python -m worker`` with another workflow cache size (benchmarks only).

worker.py builds its Workers with the SDK's default ``max_cached_workflows`` (1,000);
the memory benchmark needs other sizes, so this launcher wraps the Worker class that
worker.py uses and then runs it unchanged: ``python -m harness.worker_cache 10000``.
"""

from __future__ import annotations

import asyncio
import functools
import sys

import worker as overtime_worker
from overtime.observability import configure_logging
from overtime.settings import get_settings


def main() -> None:
    size = int(sys.argv[1])
    overtime_worker.Worker = functools.partial(  # type: ignore[misc]
        overtime_worker.Worker, max_cached_workflows=size
    )
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(overtime_worker.run(settings))


if __name__ == "__main__":
    main()
