"""The GitHub half of the sandbox (REST API v3). Placeholder: the full world is being written."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from collector.sandbox.server import Router


class GitHubWorld:
    """Seeded GitHub organisation; serves nothing yet."""

    def __init__(self, *, seed: int, work_items: int, now: datetime, token: str, organization: str,
                 azure_items: list[tuple[int, datetime, datetime | None]], malformed: int = 0) -> None:
        self.seed, self.work_items, self.now, self.token, self.organization = seed, work_items, now, token, organization
        self.azure_items = azure_items
        self.malformed = malformed

    def register(self, router: Router) -> None:
        pass

    def truth(self) -> dict[str, Any]:
        return {"work_items": [], "changes": [], "deployments": [], "links": [], "repos": {}, "rejected": []}

    def add_activity(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        return {}

    def set_rate_limit(self, limit: int | None = None, remaining: int | None = None,
                       reset_in: int | None = None) -> dict[str, Any]:
        return {}
