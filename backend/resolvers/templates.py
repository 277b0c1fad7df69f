"""Template resolvers."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal, Scope
from backend.channels import Channel
from backend.errors import NotFoundError
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.templates import (
    CreateTemplateInput,
    DeletedTemplate,
    DeleteTemplateResult,
    PreviewTemplateResult,
    RenderedMessage,
    Template,
    TemplateConnection,
    TemplateContentInput,
    TemplateResult,
    TemplateVersion,
    UpdateTemplateInput,
)
from backend.services import templates as service

Info = strawberry.Info[Context, Any]


def _versions(info: Info, template_id: uuid.UUID) -> Callable[[], Awaitable[list[TemplateVersion]]]:
    """Loads a template's versions in the operation's read session, when a query asks."""

    async def load() -> list[TemplateVersion]:
        async def work(session: AsyncSession, _: Principal) -> list[TemplateVersion]:
            rows = await service.list_versions(session, template_id=template_id)
            return [TemplateVersion.from_model(v) for v in rows]

        return await read(
            info, MANAGE_TEMPLATES, work, scope=Scope.TEMPLATES_READ, tenant_scoped=True
        )

    return load


_TENANT_VIEW = (
    "With `tenantId`, as that tenant sees them: its overrides in place of the shared "
    "templates (a caller bound to a tenant always sees its own tenant's view)."
)


@strawberry.field(
    description="Templates ordered by slug; `search` matches slug or name. Managers only. "
    + _TENANT_VIEW
)
async def templates(
    info: Info,
    first: int = 20,
    after: str | None = None,
    search: str | None = None,
    tenant_id: str | None = None,
) -> TemplateConnection:
    async def work(session: AsyncSession, actor: Principal) -> TemplateConnection:
        page = await service.list_templates(
            session, first=first, after=after, search=search, actor=actor, tenant_id=tenant_id
        )
        return TemplateConnection.from_page(
            page, lambda t: Template.from_model(t, _versions(info, t.id))
        )

    return await read(info, MANAGE_TEMPLATES, work, scope=Scope.TEMPLATES_READ, tenant_scoped=True)


@strawberry.field(description="One template by slug, or null. Managers only. " + _TENANT_VIEW)
async def template(info: Info, slug: str, tenant_id: str | None = None) -> Template | None:
    async def work(session: AsyncSession, actor: Principal) -> Template | None:
        try:
            model = await service.get_template(session, slug=slug, actor=actor, tenant_id=tenant_id)
        except NotFoundError:
            return None
        return Template.from_model(model, _versions(info, model.id))

    return await read(info, MANAGE_TEMPLATES, work, scope=Scope.TEMPLATES_READ, tenant_scoped=True)


@strawberry.mutation(
    description="Create a template (version 1). Template syntax is checked on save."
)
async def create_template(info: Info, input: CreateTemplateInput) -> TemplateResult:
    data = service.TemplateData(
        slug=input.slug,
        name=input.name,
        description=input.description,
        content=[c.to_data() for c in input.content],
        tenant_id=input.tenant_id,
    )

    async def work(session: AsyncSession, actor: Principal) -> Template:
        model = await service.create_template(session, actor=actor, data=data)
        return Template.from_model(model, _versions(info, model.id))

    return await mutate(info, MANAGE_TEMPLATES, work, tenant_scoped=True)  # type: ignore[return-value]


_TENANT_TARGET = (
    " `tenantId` names a tenant's template (a caller bound to a tenant changes only its own)."
)


@strawberry.mutation(
    description="Change a template; the previous version stays in `versions`." + _TENANT_TARGET
)
async def update_template(
    info: Info, slug: str, input: UpdateTemplateInput, tenant_id: str | None = None
) -> TemplateResult:
    changes = service.TemplateChanges(
        name=input.name,
        description=input.description,
        content=None if input.content is None else [c.to_data() for c in input.content],
    )

    async def work(session: AsyncSession, actor: Principal) -> Template:
        model = await service.update_template(
            session, actor=actor, slug=slug, changes=changes, tenant_id=tenant_id
        )
        return Template.from_model(model, _versions(info, model.id))

    return await mutate(info, MANAGE_TEMPLATES, work, tenant_scoped=True)  # type: ignore[return-value]


@strawberry.mutation(
    description="Make an old version current again, as a new version." + _TENANT_TARGET
)
async def restore_template_version(
    info: Info, slug: str, version: int, tenant_id: str | None = None
) -> TemplateResult:
    async def work(session: AsyncSession, actor: Principal) -> Template:
        model = await service.restore_template_version(
            session, actor=actor, slug=slug, version=version, tenant_id=tenant_id
        )
        return Template.from_model(model, _versions(info, model.id))

    return await mutate(info, MANAGE_TEMPLATES, work, tenant_scoped=True)  # type: ignore[return-value]


@strawberry.mutation(
    description="Delete a template and its versions; refused while something uses it. "
    "Deleting a tenant's override sends the shared template for the tenant again." + _TENANT_TARGET
)
async def delete_template(
    info: Info, slug: str, tenant_id: str | None = None
) -> DeleteTemplateResult:
    async def work(session: AsyncSession, actor: Principal) -> DeletedTemplate:
        await service.delete_template(session, actor=actor, slug=slug, tenant_id=tenant_id)
        return DeletedTemplate(slug=slug)

    return await mutate(info, MANAGE_TEMPLATES, work, tenant_scoped=True)  # type: ignore[return-value]


@strawberry.mutation(
    description=(
        "Render a saved template (`slug`) or unsaved `content` for one channel and locale. "
        "`variables` holds `payload`, and optionally `user` and `event`; sample values fill "
        "what is left out. With `tenantId`, as sent for that tenant (its override, its "
        "branding as `tenant`)."
    )
)
async def preview_template(
    info: Info,
    channel: Channel,
    slug: str | None = None,
    content: list[TemplateContentInput] | None = None,
    locale: str | None = None,
    variables: strawberry.scalars.JSON | None = None,
    tenant_id: str | None = None,
) -> PreviewTemplateResult:
    async def work(session: AsyncSession, actor: Principal) -> RenderedMessage:
        rendered = await service.preview_template(
            session,
            slug=slug,
            content=None if content is None else [c.to_data() for c in content],
            channel=channel,
            locale=locale,
            variables=variables,
            actor=actor,
            tenant_id=tenant_id,
        )
        return RenderedMessage.from_rendered(rendered)

    return await mutate(info, MANAGE_TEMPLATES, work, tenant_scoped=True)  # type: ignore[return-value]


Query = create_type("Query", [templates, template])
Mutation = create_type(
    "Mutation", [create_template, update_template, restore_template_version, delete_template]
)


# Merged last in the root Mutation, where previewTemplate has always been, so that the
# published schema keeps its field order.
PreviewMutation = create_type("PreviewMutation", [preview_template])
