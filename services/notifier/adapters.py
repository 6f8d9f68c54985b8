"""`MongoDeliveryStore`: the delivery store on MongoDB / FerretDB (single-document atomic
updates and simple queries only, like the job repository)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.notifier.store import AttemptLog, Delivery, DeliveryState


class MongoDeliveryStore:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._docs = collection

    async def ensure_indexes(self) -> None:
        await self._docs.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self._docs.create_index([("job_id", ASCENDING)])

    async def insert(self, delivery: Delivery) -> bool:
        try:
            await self._docs.insert_one(_to_doc(delivery))
        except DuplicateKeyError:
            return False
        return True

    async def get(self, delivery_id: str) -> Delivery | None:
        doc = await self._docs.find_one({"_id": delivery_id})
        return _from_doc(doc) if doc else None

    async def list_for_job(self, job_id: str) -> list[Delivery]:
        found = self._docs.find({"job_id": job_id}).sort("created_at", ASCENDING)
        return [_from_doc(d) async for d in found]

    async def claim_due(self, now: datetime, lease_s: float, limit: int) -> list[Delivery]:
        claimed: list[Delivery] = []
        for _ in range(limit):
            doc = await self._docs.find_one_and_update(
                {"state": DeliveryState.PENDING.value, "next_attempt_at": {"$lte": now}},
                {
                    "$set": {
                        "lease": secrets.token_hex(8),
                        "next_attempt_at": now + timedelta(seconds=lease_s),
                    }
                },
                sort=[("next_attempt_at", ASCENDING)],
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                break
            claimed.append(_from_doc(doc))
        return claimed

    async def finish_attempt(
        self,
        delivery_id: str,
        lease: str,
        entry: AttemptLog,
        state: DeliveryState,
        next_attempt_at: datetime | None = None,
        reason: str | None = None,
    ) -> bool:
        changes: dict[str, Any] = {"state": state.value, "lease": None, "reason": reason}
        if next_attempt_at is not None:
            changes["next_attempt_at"] = next_attempt_at
        if state is DeliveryState.DELIVERED:
            changes["delivered_at"] = entry.at
        result = await self._docs.update_one(
            {"_id": delivery_id, "lease": lease},
            {"$set": changes, "$inc": {"attempts": 1}, "$push": {"log": entry.model_dump()}},
        )
        return result.modified_count == 1

    async def replay(self, delivery_id: str, now: datetime) -> Delivery | None:
        doc = await self._docs.find_one_and_update(
            {
                "_id": delivery_id,
                "state": {"$in": [DeliveryState.DEAD.value, DeliveryState.DELIVERED.value]},
            },
            {
                "$set": {
                    "state": DeliveryState.PENDING.value,
                    "next_attempt_at": now,
                    "attempts": 0,
                    "lease": None,
                    "reason": None,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        return _from_doc(doc) if doc else None

    async def count_pending(self) -> int:
        return await self._docs.count_documents({"state": DeliveryState.PENDING.value})


def _to_doc(delivery: Delivery) -> dict[str, Any]:
    doc = delivery.model_dump(mode="python")
    doc["_id"] = doc.pop("id")
    doc["state"] = delivery.state.value
    return doc


def _from_doc(doc: dict[str, Any]) -> Delivery:
    data = dict(doc)
    data["id"] = data.pop("_id")
    return Delivery.model_validate(data)
