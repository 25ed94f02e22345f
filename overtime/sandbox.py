"""The workflow runner every worker and every replay uses: Temporal's sandbox, with our own
workflow package passed through.

Why not the SDK's default sandbox: it re-imports the workflow's module (``workflows.account``,
713 lines) for every workflow run it creates, on every cache miss, eviction replay and
continue-as-new. That copy (code objects, functions, the class and its Temporal definition)
is ~90 KiB of the ~100 KiB a cached AccountWorkflow holds and 20-50 ms of CPU per creation
(without ``.pyc`` files, as in our image with ``PYTHONDONTWRITEBYTECODE``, the module is
compiled from source each time). Passing ``workflows`` through imports it once per process;
each run still gets its own workflow object, its own deterministic event loop and its own
random seed (bench/bench_memory.py measures both runners).

What stays checked, in production and in tests alike:

* Temporal's replay check: every workflow task's commands are compared with the history,
  so a change that alters what a run does still fails with a non-determinism error;
* the sandbox's runtime restrictions on builtins (``open``, ``input``, ``breakpoint``) and
  its import guard: a module imported while a workflow runs that is neither standard
  library nor passed through is still loaded inside the sandbox and checked.

What moves to the tests: the restricted-module proxies (``datetime.now``, ``time.time``,
``random``, ``os.environ``, ``uuid.uuid4`` ...) see only modules the sandbox imports itself.
``workflows`` is now imported outside it, so a forbidden call in workflow code would no
longer raise in production. :func:`strict_workflow_runner` is the SDK's default sandbox with
nothing of ours passed through but what the workflow code passes through itself
(``workflow.unsafe.imports_passed_through``): tests/test_replay.py replays every recorded
and live history under it too, so such a call fails the suite before it ships.

The sandbox's own code strings (it enters a run by ``exec`` of source text, for every
activation and every payload) are compiled once per process (:func:`_cache_sandbox_code`).

The ``billing`` package, ``activities`` and ``workflows.types`` were passed through already
(``imports_passed_through`` in workflows/account.py); ``billing`` is now named as well.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import CodeType
from typing import Any

from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox import _runner as sandbox_runner

log = logging.getLogger(__name__)

# Our deterministic workflow code, imported once per process instead of once per run, and
# the pure billing rules its dataclasses are made of: the payload converter resolves a
# dataclass's type hints through ``sys.modules``, which inside the sandbox lists a module
# imported outside it only when it is passed through by name.
PASSED_THROUGH = ("workflows", "billing")


def workflow_runner() -> WorkflowRunner:
    """The production runner (worker.py, tests' in-process worker, the Replayer)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    )


def strict_workflow_runner() -> WorkflowRunner:
    """The SDK's default sandbox: workflow modules re-imported per run behind the
    restricted-module proxies. Replays in the tests use it as the determinism guard for
    the workflow source itself; too costly per run for a worker holding 10,000 accounts."""
    return SandboxedWorkflowRunner()


@functools.lru_cache(maxsize=128)
def _compiled(code: str) -> CodeType:
    return compile(code, "<string>", "exec")


def _cache_sandbox_code() -> bool:
    """Compile the sandbox's few code strings once instead of on every use.

    The sandbox enters a workflow by ``exec`` of a short source string: for every
    activation, and (SDK 1.35) for every payload the worker encodes or decodes, to ask the
    run for its serialization context. ``exec`` of a string compiles it first, ~0.1 ms
    each here, several times per activation. The strings are constants of the SDK, so
    their code objects are cached; what runs, and in which globals, is unchanged. This
    reaches into the SDK's private runner: if a future SDK has no ``_Instance._run_code``,
    nothing is patched (and tests/test_replay.py says so).
    """
    instance = getattr(sandbox_runner, "_Instance", None)
    original: Callable[..., None] | None = getattr(instance, "_run_code", None)
    if instance is None or original is None:
        log.warning("the sandbox's code strings are compiled on every use (SDK changed)")
        return False
    if getattr(original, "cached_code", False):
        return True

    def run_code(self: Any, code: str | CodeType, **extra_globals: Any) -> None:
        return original(self, _compiled(code) if isinstance(code, str) else code, **extra_globals)

    # A marker on the function object (read back above); functions take any attribute.
    run_code.cached_code = True  # type: ignore[attr-defined]
    instance._run_code = run_code
    return True


SANDBOX_CODE_CACHED = _cache_sandbox_code()
