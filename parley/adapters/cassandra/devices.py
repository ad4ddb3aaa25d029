"""The Cassandra store's push devices (0011): devices by user, device_tokens naming each token's
current device, and notify_settings by user."""

from __future__ import annotations

from collections.abc import Sequence

from parley.adapters.cassandra.database import CassandraDatabase
from parley.records import Device, NotifySettings


class CassandraDevices(CassandraDatabase):
    """Implements parley.ports.DeviceStore. Registration is read, then written: two
    registrations of one token at once may leave both devices, and the one the token row does
    not name is pruned by the provider's answer (the token is the same) or by its owner."""

    async def register_device(self, device: Device) -> None:
        d = device
        holder = await self._one("device_token_get", [d.token])
        if holder is not None and (holder[0], holder[1]) != (d.user_id, d.id):
            await self._run("device_drop", [holder[0], holder[1]])
        await self._run("device_put", [d.user_id, d.id, d.family_id, d.platform, d.token, d.app_id, d.locale,
                                       d.created_at])
        await self._run("device_token_put", [d.token, d.user_id, d.id])

    async def devices(self, user_id: str) -> list[Device]:
        found = [Device(user_id=r[0], id=r[1], family_id=r[2], platform=r[3], token=r[4], app_id=r[5], locale=r[6],
                        created_at=r[7]) for r in await self._all("devices_of", [user_id])]
        return sorted(found, key=lambda d: (d.created_at, d.id))

    async def devices_of(self, user_ids: Sequence[str]) -> list[list[Device]]:
        return await self._gather(self.devices(u) for u in user_ids)  # a partition each, concurrently

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        device = next((d for d in await self.devices(user_id) if d.id == device_id), None)
        if device is None:
            return False
        await self._run("device_drop", [user_id, device_id])
        holder = await self._one("device_token_get", [device.token])
        if holder is not None and (holder[0], holder[1]) == (user_id, device_id):
            await self._run("device_token_drop", [device.token])
        return True

    async def notify_settings(self, user_id: str) -> dict[str, NotifySettings]:
        return {r[0]: NotifySettings(level=r[1], mute_until=r[2], previews=bool(r[3]))
                for r in await self._all("notify_of", [user_id])}

    async def notify_settings_of(self, user_ids: Sequence[str]) -> list[dict[str, NotifySettings]]:
        return await self._gather(self.notify_settings(u) for u in user_ids)

    async def put_notify_settings(self, user_id: str, scope: str, settings: NotifySettings | None) -> None:
        if settings is None:
            await self._run("notify_drop", [user_id, scope])
        else:
            await self._run("notify_put", [user_id, scope, settings.level, settings.mute_until, settings.previews])

    async def _run(self, name: str, params: list[object]) -> None:
        async with self._limit:
            await self._s.execute(name, params)
