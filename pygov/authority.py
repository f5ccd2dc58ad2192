"""gov.authority: authority matrix and delegation (issue 4)."""

from __future__ import annotations

from typing import Any

from pygov._core import Namespace


class AuthorityPlans:
    """Argument building and result mapping for gov.authority, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings


class Authority(Namespace):
    """gov.authority (sync)."""

    _plans_class = AuthorityPlans


class AsyncAuthority(Namespace):
    """gov.authority on AsyncGovernance."""

    _plans_class = AuthorityPlans
