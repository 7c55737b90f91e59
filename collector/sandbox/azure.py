"""The Azure DevOps half of the sandbox (work in progress: the interface app.py relies on)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from collector.sandbox.server import Router


class AzureWorld:
    """A seeded Azure DevOps organisation served over the REST API 7.1 shapes."""

    def __init__(self, *, seed: int, work_items: int, now: datetime, token: str, organization: str,
                 malformed: int = 0) -> None:
        self.seed = seed
        self.work_items = work_items
        self.now = now
        self.token = token
        self.organization = organization
        self.malformed = malformed

    def register(self, router: Router) -> None:
        """Routes are added as the endpoints are implemented."""

    def truth(self) -> dict[str, Any]:
        return {"work_items": [], "changes": [], "deployments": [], "builds": [], "rejected": []}

    def add_activity(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        return {}

    def work_item_anchors(self) -> list[tuple[int, datetime, datetime | None]]:
        return []
