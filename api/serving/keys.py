"""``/v1/admin/keys``: managed API keys over REST, for callers with scope ``admin``.

An admin key manages only keys within its own reach: their collections must be among its own
(unless it has ``'*'``) and their scope no higher than its own, so no key can mint a stronger one.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from api.deps import Scope
from api.errors import ApiError
from api.schemas import KeyCreate, KeyCreated, KeyOut, KeysResponse
from rag.security.keys import ALL_COLLECTIONS, KeyInfo, KeyRing, parse_collections, parse_duration, parse_rate


def _out(info: KeyInfo) -> KeyOut:
    return KeyOut(**{**info.as_dict(), "collections": list(info.collections)})


def _within(scope: Scope, info_collections: tuple[str, ...], level: str) -> bool:
    if not scope.allows(level):
        return False
    if scope.collections is None:
        return True
    return ALL_COLLECTIONS not in info_collections and set(info_collections) <= scope.collections


class KeyService:
    """Create, list and revoke managed keys.

    Args:
        keys: the server's key ring.
    """

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    async def list(self, scope: Scope) -> KeysResponse:
        """The keys within the caller's reach, oldest first."""
        infos = await run_in_threadpool(self.keys.list)
        return KeysResponse(keys=[_out(i) for i in infos if _within(scope, i.collections, i.scope)])

    async def create(self, body: KeyCreate, scope: Scope) -> KeyCreated:
        """Make a key no stronger than the caller's.

        Raises:
            InputError: a bad collection name, lifetime or rate (422 naming the field).
            ApiError: 403 for a scope or collection beyond the caller's.
        """
        cols = parse_collections(body.collections)
        expires = parse_duration(body.expires, param="expires")
        rate = parse_rate(body.rate, param="rate")
        if not _within(scope, cols, body.scope):
            raise ApiError(
                403, f"this API key (scope {scope.level!r}) may not make a key with scope {body.scope!r} on {', '.join(cols)}",
                "permission_error", "collections" if scope.allows(body.scope) else "scope", "forbidden",
            )
        made = await run_in_threadpool(
            lambda: self.keys.create(collections=cols, scope=body.scope, name=body.name, expires_in=expires, rate=rate)
        )
        return KeyCreated(**_out(made.info).model_dump(), key=made.key)

    async def revoke(self, key_id: int, scope: Scope) -> KeyOut:
        """Revoke a key within the caller's reach; another one reads as not found.

        Raises:
            ApiError: 404 for an unknown key or one beyond the caller's reach.
        """
        infos = {i.id: i for i in await run_in_threadpool(self.keys.list)}
        info = infos.get(key_id)
        if info is None or not _within(scope, info.collections, info.scope):
            raise ApiError(404, f"no API key with id {key_id}", "not_found_error", "key_id", "not_found")
        return _out(await run_in_threadpool(self.keys.revoke, key_id))
