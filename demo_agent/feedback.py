"""The feedback sink's log: one JSON line per received record, in arrival order.

A real feedback model's payloads land in the endpoint's inference table; here they land in a
JSONL file that tests and people can read back. All access goes through one asyncio lock, and
each post is written with one write + flush, so concurrent posts never interleave or get lost.
"""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class FeedbackLog:
    def __init__(self, path: Path):
        self.path = path
        self._lock = asyncio.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    async def append(
        self, endpoint: str, records: list[dict[str, Any]], idempotency_key: str | None
    ) -> None:
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = "".join(
            json.dumps(
                {
                    "endpoint": endpoint,
                    "received_at": received_at,
                    "idempotency_key": idempotency_key,
                    "record": record,
                },
                ensure_ascii=False,
            )
            + "\n"
            for record in records
        )
        async with self._lock:
            # Small synchronous writes: far quicker than a thread hop, and the lock orders them.
            with self.path.open("a", encoding="utf-8") as log:
                log.write(lines)
                log.flush()

    async def entries(self, endpoint: str) -> list[dict[str, Any]]:
        async with self._lock:
            text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [e for e in entries if e.get("endpoint") == endpoint]

    async def clear(self) -> None:
        async with self._lock:
            self.path.write_text("", encoding="utf-8")
