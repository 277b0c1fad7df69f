"""Queries on templates and their versions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import EventType, Template, TemplateVersion


class TemplateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_slug(self, slug: str, *, for_update: bool = False) -> Template | None:
        stmt = select(Template).where(Template.slug == slug)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def slug_exists(self, slug: str) -> bool:
        stmt = select(func.count()).select_from(Template).where(Template.slug == slug)
        return bool((await self.session.execute(stmt)).scalar_one())

    async def page(
        self, *, after_slug: str | None, limit: int, search: str | None
    ) -> list[Template]:
        stmt = select(Template).order_by(Template.slug).limit(limit)
        if after_slug is not None:
            stmt = stmt.where(Template.slug > after_slug)
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            stmt = stmt.where(
                or_(
                    Template.slug.ilike(pattern, escape="\\"),
                    Template.name.ilike(pattern, escape="\\"),
                )
            )
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, template: Template) -> None:
        self.session.add(template)
        await self.session.flush()

    async def add_version(self, template: Template, *, actor: str | None) -> TemplateVersion:
        version = TemplateVersion(
            template_id=template.id,
            version=template.version,
            name=template.name,
            description=template.description,
            content=template.content,
            created_by=actor,
        )
        self.session.add(version)
        await self.session.flush()
        return version

    async def versions(self, template_ids: Sequence[object]) -> list[TemplateVersion]:
        stmt = (
            select(TemplateVersion)
            .where(TemplateVersion.template_id.in_(template_ids))
            .order_by(TemplateVersion.template_id, TemplateVersion.version.desc())
        )
        return list((await self.session.execute(stmt)).scalars())

    async def get_version(self, template: Template, version: int) -> TemplateVersion | None:
        stmt = select(TemplateVersion).where(
            TemplateVersion.template_id == template.id, TemplateVersion.version == version
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def users_of(self, slug: str) -> list[str]:
        """Names of what refers to this template (event types; campaigns once they exist)."""
        stmt = (
            select(EventType.name).where(EventType.template_slug == slug).order_by(EventType.name)
        )
        return [f"event type '{name}'" for name in (await self.session.execute(stmt)).scalars()]

    async def delete(self, template: Template) -> None:
        await self.session.delete(template)
        await self.session.flush()
