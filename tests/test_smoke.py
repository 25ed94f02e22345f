from tests.conftest import Api


async def test_smoke(api: Api) -> None:
    account = await api.create_account("starter")
    answer = await api.authorize(account, "c1")
    assert answer == {"allowed": True, "granted_seconds": 300}
    assert await api.usage(account, "c1", 120) == {"recorded": True, "duplicate": False}
    assert await api.usage(account, "c1", 120) == {"recorded": True, "duplicate": True}
    state = await api.state(account)
    assert state["used_seconds"] == 120
