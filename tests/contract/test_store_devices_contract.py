"""The store contract, DeviceStore: push devices by user (a token is one device, and moves with
its last registration) and notification settings by user and scope. Every adapter must pass
these unchanged (conftest.py)."""

from __future__ import annotations

from parley.records import Device, NotifySettings


def device(device_id: str, user: str = "u1", token: str = "tok-1", at: int = 1000, family: str = "f1") -> Device:
    return Device(id=device_id, user_id=user, family_id=family, platform="fcm", token=token, app_id="org.parley",
                  locale="en", created_at=at)


async def test_devices_are_stored_by_user_and_listed_oldest_first(reopen):
    store = await reopen()
    second, first, other = device("d2", token="t2", at=2000), device("d1", token="t1"), device("d3", "u2", "t3")
    for d in (second, first, other):
        await store.register_device(d)
    store = await reopen()  # durable
    assert await store.devices("u1") == [first, second]
    assert await store.devices("u2") == [other]
    assert await store.devices("nobody") == []


async def test_a_token_registered_again_under_another_user_moves_to_that_user(reopen):
    store = await reopen()
    await store.register_device(device("d1", "u1", token="shared"))
    await store.register_device(device("d9", "u2", token="shared", at=5000))
    assert await store.devices("u1") == []
    assert [d.id for d in await store.devices("u2")] == ["d9"]


async def test_a_token_registered_again_by_its_device_replaces_it(reopen):
    store = await reopen()
    await store.register_device(device("d1", token="t1"))
    await store.register_device(device("d1", token="t1", family="f2"))
    assert [(d.id, d.family_id) for d in await store.devices("u1")] == [("d1", "f2")]


async def test_a_device_is_deleted_by_its_user_only(reopen):
    store = await reopen()
    await store.register_device(device("d1", token="t1"))
    assert not await store.delete_device("u2", "d1")
    assert await store.delete_device("u1", "d1")
    assert not await store.delete_device("u1", "d1")  # gone already
    assert await store.devices("u1") == []
    await store.register_device(device("d2", "u2", token="t1"))  # the token is free again
    assert [d.id for d in await store.devices("u2")] == ["d2"]


DEFAULT = NotifySettings(level="mentions", previews=False)
MUTED = NotifySettings(level="all", mute_until=99_000)
SILENT = NotifySettings(level="none")


async def put_settings(store):
    """u1: an account-wide default and a muted conversation c1; u2: c1 silenced."""
    await store.put_notify_settings("u1", "", DEFAULT)
    await store.put_notify_settings("u1", "c1", MUTED)
    await store.put_notify_settings("u2", "c1", SILENT)


async def test_notification_settings_are_kept_per_scope_and_removed(reopen):
    store = await reopen()
    await put_settings(store)
    store = await reopen()
    assert await store.notify_settings("u1") == {"": DEFAULT, "c1": MUTED}
    await store.put_notify_settings("u1", "c1", NotifySettings())  # replaced
    await store.put_notify_settings("u1", "", None)  # removed
    assert await store.notify_settings("u1") == {"c1": NotifySettings()}
    assert await store.notify_settings("nobody") == {}


async def test_devices_of_many_users_are_each_users_devices_in_the_order_asked(reopen):
    store = await reopen()
    second, first, other = device("d2", token="t2", at=2000), device("d1", token="t1"), device("d3", "u2", "t3")
    for d in (second, first, other):
        await store.register_device(d)
    assert await store.devices_of(["u2", "nobody", "u1", "u2"]) == [[other], [], [first, second], [other]]
    assert await store.devices_of([]) == []


async def test_notification_settings_of_many_users_are_each_users_settings_in_the_order_asked(reopen):
    store = await reopen()
    await put_settings(store)
    assert await store.notify_settings_of(["u2", "nobody", "u1", "u2"]) == [
        {"c1": SILENT}, {}, {"": DEFAULT, "c1": MUTED}, {"c1": SILENT}]
    assert await store.notify_settings_of([]) == []
