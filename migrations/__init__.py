"""Alembic migrations; every table change is a migration. `target_metadata()` gathers every model."""

from __future__ import annotations

from sqlalchemy import MetaData


def target_metadata() -> MetaData:
    import core.models  # noqa: F401
    import crm.models
    import crm.suppression  # noqa: F401
    import sync.erasure
    import sync.models
    import sync.retention  # noqa: F401
    import token_vault.models  # noqa: F401
    import webhooks.models  # noqa: F401
    from core.db import Base

    return Base.metadata
