"""The operator's view: one row per connection (read by `mcsync.connections.connection_status`,
its state with the reason, sql/009), as a table."""

from __future__ import annotations

from typing import Any


def render_status_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no connections"
    columns = [
        ("user_id", "USER"),
        ("audience_name", "AUDIENCE"),
        ("sync_status", "STATUS"),
        ("pending", "PENDING"),
        ("oldest_pending_seconds", "OLDEST_S"),
        ("rejected", "REJECTED"),
        ("warnings", "WARNINGS"),
        ("last_sync_at", "LAST_SYNC"),
        ("last_error", "LAST_ERROR"),
    ]

    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        if key == "last_sync_at":
            return value.strftime("%Y-%m-%d %H:%M:%S")
        if key == "sync_status" and row.get("status_reason"):
            return f"{value} ({row['status_reason']})"  # why it is paused or in error
        return str(value)[:60]

    table = [[title for _, title in columns]] + [[cell(r, k) for k, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in table]
    notices = [f"{r['user_id']}: {r['notice']}" for r in rows if r.get("notice")]
    return "\n".join([*lines, *(["", *notices] if notices else [])])
