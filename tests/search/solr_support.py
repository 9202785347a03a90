"""What the solr engine's tests do to a collection behind the engine's back."""

from __future__ import annotations

import httpx


async def empty_collection(url: str, collection: str) -> None:
    """Deletes every document, tombstones included (a delete by query passes the version
    check), and commits, so a test starts from nothing."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            f"/{collection}/update",
            params={"commit": "true", "wt": "json"},
            json={"delete": {"query": "*:*"}},
        )
        response.raise_for_status()
