"""Standard idempotency keys (the same text as the SQL functions ``governance.*_key``).

Each part is escaped (``%`` -> ``%25``, ``:`` -> ``%3A``) before the parts are joined with ``:``,
so different inputs never give the same key.
"""

from __future__ import annotations

from typing import Any


def key_part(value: Any) -> str:
    """Escape one part of a composite key (None becomes the empty part)."""
    text = "" if value is None else str(value)
    return text.replace("%", "%25").replace(":", "%3A")


def composite(prefix: str, *parts: Any) -> str:
    """``prefix:part:part...`` with every part escaped."""
    return ":".join([prefix, *(key_part(p) for p in parts)])


def journal_entry(app: Any, model: Any, object_id: Any, action: Any) -> str:
    """The key of the journal entry that ``action`` on ``app.model`` #object_id posts."""
    return composite("JE", app, model, object_id, action)


def stock_movement(product_id: Any, warehouse_id: Any, movement_type: Any, reference: Any) -> str:
    """The key of one stock movement of a product in a warehouse."""
    return composite("SM", product_id, warehouse_id, movement_type, reference)


__all__ = ["composite", "journal_entry", "key_part", "stock_movement"]
