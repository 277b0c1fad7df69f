"""Queries on templates and their versions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on

from backend.db.models import EventType, Template, TemplateVersion
from backend.db.repositories.base import Repository


def _owned_by(tenant_id: str | None) -> ColumnElement[bool]:
    return Template.tenant_id.is_(None) if tenant_id is None else Template.tenant_id == tenant_id


def _seen_by(tenant_id: str) -> ColumnElement[bool]:
    return or_(Template.tenant_id == tenant_id, Template.tenant_id.is_(None))


class TemplateRepository(Repository):
    async def get_by_slug(
        self, slug: str, *, tenant_id: str | None = None, for_update: bool = False
    ) -> Template | None:
        """The template with exactly this slug and tenant (None: the shared one)."""
        stmt = select(Template).where(Template.slug == slug, _owned_by(tenant_id))
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def effective(self, slug: str, tenant_id: str | None) -> Template | None:
        """What is sent for ``tenant_id`` under ``slug``: its override, else the shared one."""
        if tenant_id is None:
            return await self.get_by_slug(slug)
        stmt = (
            select(Template)
            .where(Template.slug == slug, _seen_by(tenant_id))
            .order_by(Template.tenant_id.nulls_last())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def slug_exists(self, slug: str, *, tenant_id: str | None = None) -> bool:
        stmt = (
            select(func.count())
            .select_from(Template)
            .where(Template.slug == slug, _owned_by(tenant_id))
        )
        return bool((await self.session.execute(stmt)).scalar_one())

    async def page(
        self,
        *,
        after_slug: str | None,
        limit: int,
        search: str | None,
        tenant_id: str | None = None,
    ) -> list[Template]:
        """Shared templates by slug; with ``tenant_id``, the templates as that tenant sees
        them: one per slug, its override where it has one."""
        if tenant_id is None:
            stmt = select(Template).where(Template.tenant_id.is_(None))
        else:
            stmt = (
                select(Template)
                .where(_seen_by(tenant_id))
                .ext(distinct_on(Template.slug))
                .order_by(Template.slug, Template.tenant_id.nulls_last())
            )
        stmt = stmt.order_by(Template.slug).limit(limit)
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
