"""Alert thresholds over HTTP: `PUT /v1/accounts/{id}/alerts` on the real workflow.

(What the emails say is tests/test_alerts.py; the rules against a reference model are
tests/test_plan_and_alerts_property.py.)
"""

from __future__ import annotations

from typing import Any

from devstack.mail_catcher import MailCatcher
from tests.conftest import Api, eventually


async def put_alerts(api: Api, account: str, **body: Any) -> Any:
    return await api.admin.put(f"/v1/accounts/{account}/alerts", json=body)


async def test_each_threshold_warns_once_and_one_call_across_two_warns_once(
    api: Api, mail: MailCatcher
) -> None:
    account = await api.create_account(locale="en")
    email = f"{account}@example.com"
    assert (await api.enable(account, limit_minutes=10)).status_code == 200
    answer = await put_alerts(api, account, thresholds=[90, 50, 75])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"thresholds": [50, 75, 90], "recipients": []}
    assert (await api.state(account))["alert_thresholds"] == [50, 75, 90]

    assert await api.call(account, "included", 6000) == 6000
    assert await api.call(account, "to-55", 330) == 330  # 55 %: the 50 % warning
    assert await api.call(account, "to-95", 240) == 240  # 95 %: past 75 and 90, one warning
    assert await api.call(account, "to-96", 6) == 6  # nothing new
    warnings = await eventually(
        lambda: (
            len(mail.with_notice(email, "limit_warning")) == 2
            and mail.with_notice(email, "limit_warning")
        )
    )
    assert len(warnings) == 2

    # The rows are written once the mail server accepted each message: a moment later.
    async def two_recorded() -> bool:
        kinds = [n["kind"] for n in await api.notifications(account)]
        return kinds.count("limit_warning") == 2

    await eventually(two_recorded, timeout=10)


async def test_refused_thresholds_or_recipients_change_nothing(api: Api) -> None:
    account = await api.create_account()
    good = await put_alerts(api, account, thresholds=[80], recipients=["Billing@Example.com"])
    assert good.json() == {"thresholds": [80], "recipients": ["billing@example.com"]}
    for body in (
        {"thresholds": [100], "recipients": ["other@example.com"]},
        {"thresholds": [0]},
        {"thresholds": [50, 50]},
        {"thresholds": [10, 20, 30, 40, 50, 60]},
        {"thresholds": ["90"]},
        {"thresholds": [90.0]},
        {"thresholds": [60], "recipients": ["not an address"]},
        {"thresholds": [60], "recipients": [f"r{i}@example.com" for i in range(6)]},
        {"thresholds": [60], "reason": "x" * 501},
        {"recipients": []},
    ):
        refused = await put_alerts(api, account, **body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"], refused.text
    state = await api.state(account)
    assert state["alert_thresholds"] == [80]
    kept = await put_alerts(api, account, thresholds=[80])  # recipients left out: unchanged
    assert kept.json() == {"thresholds": [80], "recipients": ["billing@example.com"]}
    assert (await put_alerts(api, account, thresholds=[], recipients=[])).json() == {
        "thresholds": [],
        "recipients": [],
    }
    assert (await put_alerts(api, "acct-unknown", thresholds=[50])).status_code == 404
    denied = await api.telephony.put(f"/v1/accounts/{account}/alerts", json={"thresholds": [50]})
    assert denied.status_code == 403
