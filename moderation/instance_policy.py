"""The instance-wide policy an admin reads and updates (`/v1/admin/policies`): registration mode,
guest access, and the conversation defaults the policy engine resolves after per-conversation
overrides (ADR 0002). Stored as a key/value map; this Struct gives it its type and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from moderation import policy
from parley.errors import Invalid
from parley.ports import ModerationStore

Registration = Literal["open", "approval", "invite", "closed"]
MinRole = Literal["owner", "admin", "moderator", "member"]
#: "<kind>.<action>", e.g. "group.send": the instance default minimum role of that action.
DefaultKey = Annotated[str, Meta(pattern=r"^(direct|group|channel)\.[a-z_]{1,32}$")]
GuestTtl = Annotated[int, Meta(ge=60, le=7 * 24 * 3600)]


class InstancePolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """open: anyone registers; approval: new accounts wait for a moderator; invite: registration
    needs a single-use invite code; closed: nobody registers (staff use invites... or the CLI)."""

    registration: Registration = "open"
    #: `POST /v1/auth/guest` hands out guest tokens.
    guests: bool = False
    #: Lifetime of a guest token.
    guest_ttl_s: GuestTtl = 3600
    #: Instance defaults of the conversation policy engine (minimum role per kind.action).
    conv_defaults: Annotated[dict[DefaultKey, MinRole], Meta(max_length=200)] = {}
    #: Calls on this server (when LiveKit is configured), and for guests.
    calls: bool = True
    guest_calls: bool = False


class PolicyPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The fields to change; the others stay."""

    registration: Registration | msgspec.UnsetType = msgspec.UNSET
    guests: bool | msgspec.UnsetType = msgspec.UNSET
    guest_ttl_s: GuestTtl | msgspec.UnsetType = msgspec.UNSET
    conv_defaults: Annotated[dict[DefaultKey, MinRole], Meta(max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    calls: bool | msgspec.UnsetType = msgspec.UNSET
    guest_calls: bool | msgspec.UnsetType = msgspec.UNSET


def changes(patch: PolicyPatch) -> dict[str, Any]:
    """The fields the patch sets; raises Invalid for conversation defaults the engine refuses."""
    changed = {f: v for f in patch.__struct_fields__ if (v := getattr(patch, f)) is not msgspec.UNSET}
    if "conv_defaults" in changed:
        engine_defaults(changed["conv_defaults"])
    return changed


def engine_defaults(conv_defaults: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """`{"group.invite": "member"}` as the policy engine takes it; raises Invalid when the engine
    has no such default to change (the pattern admits any action name, the engine knows them)."""
    defaults = {}
    for key, role in conv_defaults.items():
        kind, _, action = key.partition(".")
        defaults[(kind, action)] = role
    try:
        policy.InstancePolicy(defaults=defaults)
    except ValueError as err:
        raise Invalid(f"invalid conv_defaults: {err}", [{"field": "conv_defaults", "message": str(err)}]) from err
    return defaults


async def load(store: ModerationStore) -> InstancePolicy:
    """The stored policy over the defaults; a stored key this build does not know is ignored."""
    raw = await store.instance_policy()
    known = {k: v for k, v in raw.items() if k in InstancePolicy.__struct_fields__}
    try:
        return msgspec.convert(known, InstancePolicy)
    except msgspec.ValidationError:
        return InstancePolicy()
