"""The people of the local Slack sink's workspace: users.info, usergroups.users.list,
conversations.open (IMs with the bot) and views.publish (each person's App Home).

A test fills the directory with `SinkUser`s (full members, guests, bots, deleted users)
and user groups; an id that is not there is `user_not_found` (`no_such_subteam` for a
group), as in a workspace where it does not exist.

Imports nothing from bot/ or store/.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from simulator import slack_shapes as shapes
from simulator.slack_shapes import ApiError, Params
from simulator.slack_store import MessageStore

UserKind = Literal["member", "guest", "single_channel_guest", "bot", "deleted"]
USER_KINDS = ("member", "guest", "single_channel_guest", "bot", "deleted")
MAX_MPIM_USERS = 8


@dataclass(frozen=True)
class SinkUser:
    """A person (or bot) of the workspace.

    member: a full member; guest: a multi-channel guest (`is_restricted`);
    single_channel_guest: `is_restricted` and `is_ultra_restricted`; bot: `is_bot` with a
    `bot_id`; deleted: a deactivated account (`deleted: true`).
    """

    id: str
    kind: UserKind = "member"
    name: str = ""
    bot_id: str | None = None
    is_admin: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SinkUser:
        if data.get("kind", "member") not in USER_KINDS:
            raise ValueError(f"user kind must be one of {USER_KINDS}")
        if not isinstance(data.get("id"), str) or data["id"][:1] not in ("U", "W"):
            raise ValueError("a user id starts with U or W")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_api(self, team_id: str) -> Params:
        name = self.name or self.id.lower()
        guest = self.kind in ("guest", "single_channel_guest")
        profile: Params = {"real_name": name, "display_name": name, "team": team_id}
        out: Params = {
            "id": self.id,
            "team_id": team_id,
            "name": name,
            "real_name": name,
            "deleted": self.kind == "deleted",
            "tz": "Europe/Paris",
            "tz_offset": 3600,
            "profile": profile,
            "is_bot": self.kind == "bot",
            "is_app_user": False,
            "updated": 1_700_000_000,
        }
        if self.kind == "deleted":  # Slack leaves the role flags out of a deactivated user
            return out
        out |= {
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": guest,
            "is_ultra_restricted": self.kind == "single_channel_guest",
        }
        if self.kind == "bot":
            profile["bot_id"] = self.bot_id or "B" + self.id[1:]
        return out


class Directory:
    def __init__(self, store: MessageStore, *, team_id: str, bot_user_id: str) -> None:
        self._store, self.team_id = store, team_id
        self.users: dict[str, SinkUser] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.views: dict[str, Params] = {}  # user id -> the latest published Home view
        self.mpims: dict[str, list[str]] = {}
        self.add_user(SinkUser(bot_user_id, "bot", name="mathfi-bot", bot_id=store.bot_id))
        self._views_published = 0

    def add_user(self, user: SinkUser) -> None:
        self.users[user.id] = user

    def add_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        if not usergroup_id.startswith("S"):
            raise ValueError("a user group id starts with S")
        self.usergroups[usergroup_id] = list(user_ids)

    def exists(self, user_id: str) -> bool:
        return user_id in self.users

    # ---- Web API methods -----------------------------------------------------------

    def users_info(self, params: Params) -> Params:
        user = self.users.get(str(params.get("user") or ""))
        if user is None:
            raise ApiError("user_not_found")
        return {"user": user.to_api(self.team_id)}

    def usergroup_users(self, params: Params) -> Params:
        members = self.usergroups.get(str(params.get("usergroup") or ""))
        if members is None:
            raise ApiError("no_such_subteam")
        return {"users": list(members)}

    def open_conversation(self, params: Params) -> Params:
        """One user: their IM with the bot (D…, the same id every time); 2-8: an MPIM."""
        if params.get("channel"):
            channel = str(params["channel"])
            if channel not in self._store.ims and channel not in self.mpims:
                raise ApiError("channel_not_found")
            return {"no_op": True, "already_open": True, "channel": self._im(channel, params)}
        raw = params.get("users")
        if not isinstance(raw, str) or not raw.strip():
            raise ApiError("users_list_not_supplied")
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        for user_id in ids:
            if user_id not in self.users:
                raise ApiError("user_not_found")
            if self.users[user_id].kind == "deleted":
                raise ApiError("user_disabled")
        if len(ids) > MAX_MPIM_USERS:
            raise ApiError("too_many_users")
        if len(ids) == 1:
            channel, already = self._store.open_im(ids[0])
        else:
            digest = hashlib.sha1(",".join(sorted(ids)).encode()).hexdigest()[:10].upper()
            channel, already = "G" + digest, "G" + digest in self.mpims
            self.mpims[channel] = ids
        found: Params = {"channel": self._im(channel, params)}
        if already:
            found |= {"no_op": True, "already_open": True}
        return found

    def publish_view(self, params: Params) -> Params:
        user_id = str(params.get("user_id") or "")
        if user_id not in self.users or self.users[user_id].kind == "deleted":
            raise ApiError("user_not_found")
        view = shapes.home_view(params.get("view"))
        current = self.views.get(user_id)
        wanted_hash = params.get("hash")
        if wanted_hash and current is not None and wanted_hash != current["hash"]:
            raise ApiError("hash_conflict")
        self._views_published += 1
        view_id = current["id"] if current is not None else f"V{self._views_published:08d}"
        stored: Params = {
            "id": view_id,
            "team_id": self.team_id,
            "type": "home",
            "blocks": view["blocks"],
            "private_metadata": str(view.get("private_metadata", "")),
            "callback_id": str(view.get("callback_id", "")),
            "external_id": str(view.get("external_id", "")),
            "state": {"values": {}},
            "hash": f"{self._store.next_ts()}.{self._views_published}",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": "A0SINK",
            "bot_id": self._store.bot_id,
        }
        self.views[user_id] = stored
        return {"view": stored}

    def _im(self, channel: str, params: Params) -> Params:
        if not shapes.truthy(params.get("return_im")):
            return {"id": channel}
        if channel in self.mpims:
            return {"id": channel, "is_mpim": True, "is_im": False, "members": self.mpims[channel]}
        user = self._store.ims[channel]
        return {"id": channel, "is_im": True, "user": user, "is_user_deleted": False}
