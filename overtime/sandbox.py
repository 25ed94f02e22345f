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

The ``billing`` package, ``activities`` and ``workflows.types`` were passed through already
(``imports_passed_through`` in workflows/account.py); ``billing`` is now named as well.
"""

from __future__ import annotations

from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

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
