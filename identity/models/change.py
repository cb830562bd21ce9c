"""Change generations: one counter per cache topic, bumped by every change to what it
caches, so that every process and host can tell that its copy is stale (identity.changes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from identity.models.base import Base, utcnow


class ChangeGeneration(Base):
    __tablename__ = "change_generations"

    topic: Mapped[str] = mapped_column(String(32), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
