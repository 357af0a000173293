"""Persistence for core: licenses, accounts and the request log (SQLAlchemy 2, async).

Only core touches the store; the facade reaches it through the admin gRPC API.
"""

from core.store.db import connect, normalize_url
from core.store.journal import Journal
from core.store.repo import RequestEntry, Store

__all__ = ["Journal", "RequestEntry", "Store", "connect", "normalize_url"]
