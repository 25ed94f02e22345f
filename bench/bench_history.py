"""Temporal history events per call and per billing period.

Counts the events Temporal stores, from the histories themselves:

* per call placed one after another (authorise, report: two Updates and a ledger write),
* per call when 40 calls arrive at once (the dispatcher batches them into few Updates),
* per period: every run of the account workflow that covered one short period with
  40 calls (Updates, ledger writes, close, continue-as-new), plus its InvoiceWorkflow.

Temporal warns at 10,240 events and fails a run at 51,200; the workflow continues as new
after 8,000 events or 1,000 Updates (README, "Temporal's limits").
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import StackOptions, header, save, stack, table
from temporalio.service import RPCError

from billing.rules import period_key
from workflows.types import invoice_workflow_id

PERIOD_SECONDS = 25
CALLS = 40


async def main() -> None:
    header("History events per call and per period")
    async with stack(StackOptions(stripe=True, period_seconds=PERIOD_SECONDS)) as s:
        assert s.client is not None
        run = uuid.uuid4().hex[:6]
        seq, conc = await s.create_accounts(
            2, prefix=f"hist-{run}", limit={"limit_minutes": 100_000}
        )
        created = time.monotonic()
        first_period = datetime.fromisoformat((await s.state(seq))["period_start"])
        invoice_id = invoice_workflow_id(seq, period_key(first_period))

        async def call(account: str, call_id: str) -> None:
            await s.authorize(account, call_id)
            await s.usage(account, call_id, 300)  # 40 × 300 s: past the included 6,000 s

        async def settled_length(workflow_id: str) -> int:
            """History length once the ledger writes have landed (it stops growing)."""
            last, same = -1, 0
            while same < 3:
                length = await s.history_length(workflow_id)
                same = same + 1 if length == last else 0
                last = length
                await asyncio.sleep(0.2)
            return last

        before_seq = await settled_length(f"account-{seq}")
        for i in range(CALLS):
            await call(seq, f"s{i}")
        after_seq = await settled_length(f"account-{seq}")

        before_conc = await settled_length(f"account-{conc}")
        await asyncio.gather(*(call(conc, f"c{i}") for i in range(CALLS)))
        after_conc = await settled_length(f"account-{conc}")
        if time.monotonic() - created > PERIOD_SECONDS - 2:
            raise SystemExit("the period ended during the per-call measurement; rerun")

        # Wait for the period to close and its invoice to be paid.
        deadline = time.monotonic() + PERIOD_SECONDS * 4
        runs: list = []
        invoice_events = None
        while time.monotonic() < deadline:
            runs = [wf async for wf in s.client.list_workflows(f"WorkflowId = 'account-{seq}'")]
            try:
                invoice = await s.client.get_workflow_handle(invoice_id).describe()
            except RPCError:
                invoice = None  # not started yet
            if len(runs) >= 2 and invoice is not None and invoice.close_time is not None:
                invoice_events = await s.history_length(invoice_id)
                break
            await asyncio.sleep(0.5)
        # The run that covered the first period (the only one: no mid-period hand-over at
        # this size) ends by continuing as new when the period closes.
        closed_runs = sorted(
            (wf for wf in runs if wf.close_time is not None), key=lambda wf: wf.start_time
        )[:1]
        period_events = 0
        for wf in closed_runs:
            period_events += await s.history_length(wf.id, wf.run_id)

    per_seq = (after_seq - before_seq) / CALLS
    per_conc = (after_conc - before_conc) / CALLS
    rows = [
        ["per call, one after another (2 Updates + ledger write)", f"{per_seq:.1f}"],
        [f"per call, {CALLS} calls at once (batched)", f"{per_conc:.1f}"],
        [
            f"per period: account runs ({len(closed_runs)}) with {CALLS} calls + set-up",
            period_events,
        ],
        ["per period: the InvoiceWorkflow (create, charge, email)", invoice_events],
        [
            "calls per run before continue-as-new at 8,000 events (sequential)",
            f"{8000 / per_seq:.0f}" if per_seq else "-",
        ],
    ]
    print()
    print(table(["what", "events"], rows))
    save(
        "history",
        {
            "calls": CALLS,
            "per_call_sequential": per_seq,
            "per_call_concurrent": per_conc,
            "period_runs": len(closed_runs),
            "period_events": period_events,
            "invoice_events": invoice_events,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
