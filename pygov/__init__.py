"""pygov: a governance layer that keeps business databases from being corrupted.

The logic lives in PostgreSQL (schema ``governance``); this package is a thin wrapper around it,
with an SQLite fallback that offers the same API.
"""

from __future__ import annotations

from pygov import errors, keys
from pygov.context import GovernanceContext, current_context, governance_context
from pygov.errors import (
    AuthorityViolationError,
    ConcurrencyError,
    ConfigurationError,
    GatewayError,
    GovernanceError,
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyPayloadMismatchError,
    QuarantineError,
    RepairError,
    SignalError,
    ValidationError,
)
from pygov.governance import Governance, connect
from pygov.idempotency import Claim, IdempotencyRecord, IdempotencyResult, IdempotencyStats

context = governance_context

__version__ = "0.1.0"

__all__ = [
    "AuthorityViolationError",
    "Claim",
    "ConcurrencyError",
    "ConfigurationError",
    "GatewayError",
    "Governance",
    "GovernanceContext",
    "GovernanceError",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyPayloadMismatchError",
    "IdempotencyRecord",
    "IdempotencyResult",
    "IdempotencyStats",
    "QuarantineError",
    "RepairError",
    "SignalError",
    "ValidationError",
    "__version__",
    "connect",
    "context",
    "current_context",
    "errors",
    "keys",
]
