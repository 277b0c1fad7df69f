"""Templates in PostgreSQL: read as a tenant sees them (its override, else the shared one),
changed by their owner only, every change saved as a new version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.db.models import Template, TemplateVersion
from backend.db.repositories.templates import TemplateRepository
from backend.errors import ConflictError, ForbiddenError, NotFoundError
from backend.services import tenants
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor
from backend.services.templates.definitions import (
    TemplateChanges,
    TemplateData,
    content_to_json,
    template_content,
)
from backend.services.templates.validation import validate_content, validate_identity


async def get_template(
    session: AsyncSession,
    *,
    slug: str,
    actor: Principal | None = None,
    tenant_id: str | None = None,
) -> Template:
    """The template sent under ``slug`` for a tenant: its override, else the shared one. The
    tenant is the ``actor``'s when it is bound to one (naming another is FORBIDDEN), else
    ``tenant_id``; none gives the shared template."""
    if actor is not None:
        tenant_id = tenants.named_tenant(actor, tenant_id)
    template = await TemplateRepository(session).effective(slug, tenant_id)
    if template is None:
        raise NotFoundError(f"No template with slug '{slug}'", field="slug")
    return template


async def _owned(
    session: AsyncSession, *, actor: Principal, slug: str, tenant_id: str | None
) -> Template:
    """The template ``actor`` changes: exactly (slug, tenant), locked. A caller bound to a
    tenant changes its own templates only; the shared one it may read but not change."""
    tenant_id = tenants.named_tenant(actor, tenant_id)
    repo = TemplateRepository(session)
    template = await repo.get_by_slug(slug, tenant_id=tenant_id, for_update=True)
    if template is None:
        if tenant_id is not None and await repo.slug_exists(slug):
            raise ForbiddenError(
                f"'{slug}' is a shared template: create an override for your tenant instead",
                field="slug",
            )
        raise NotFoundError(f"No template with slug '{slug}'", field="slug")
    return template


async def list_versions(session: AsyncSession, *, template_id: uuid.UUID) -> list[TemplateVersion]:
    """Every version of a template, newest first (the current one included)."""
    return await TemplateRepository(session).versions([template_id])


async def list_templates(
    session: AsyncSession,
    *,
    first: int,
    after: str | None,
    search: str | None = None,
    actor: Principal | None = None,
    tenant_id: str | None = None,
) -> Page[Template]:
    """A page of templates ordered by slug, optionally filtered by slug or name: the shared
    ones, or as a tenant sees them (its overrides in place of the shared ones), the tenant
    being the ``actor``'s when it is bound to one, else ``tenant_id``."""
    limit = check_page_size(first)
    after_slug = decode_cursor("template", after)
    if actor is not None:
        tenant_id = tenants.named_tenant(actor, tenant_id)
    rows = await TemplateRepository(session).page(
        after_slug=after_slug, limit=limit + 1, search=search, tenant_id=tenant_id
    )
    items = [(encode_cursor("template", t.slug), t) for t in rows[:limit]]
    return Page(items=items, has_next_page=len(rows) > limit)


async def create_template(
    session: AsyncSession, *, actor: Principal, data: TemplateData
) -> Template:
    """Create a template at version 1. The slug must be new among the shared templates, or
    (for a tenant) among the tenant's: a tenant's template with a shared slug overrides it."""
    validate_identity(data.slug, data.name)
    validate_content(data.content)
    tenant_id = await tenants.tenant_for_write(session, actor=actor, requested=data.tenant_id)
    repo = TemplateRepository(session)
    if await repo.slug_exists(data.slug, tenant_id=tenant_id):
        raise ConflictError(f"A template with slug '{data.slug}' already exists", field="slug")
    template = Template(
        tenant_id=tenant_id,
        slug=data.slug,
        name=data.name.strip(),
        description=data.description,
        content=content_to_json(data.content),
        version=1,
        created_by=actor.user_id,
        updated_by=actor.user_id,
    )
    await repo.add(template)
    await repo.add_version(template, actor=actor.user_id)
    return template


async def update_template(
    session: AsyncSession,
    *,
    actor: Principal,
    slug: str,
    changes: TemplateChanges,
    tenant_id: str | None = None,
    template: Template | None = None,
) -> Template:
    """Apply changes as a new version; the previous versions stay readable. ``tenant_id``
    names a tenant's template (an unbound caller's choice; a bound caller's is its own)."""
    validate_identity(None, changes.name)
    if changes.content is not None:
        validate_content(changes.content)
    repo = TemplateRepository(session)
    if template is None:
        template = await _owned(session, actor=actor, slug=slug, tenant_id=tenant_id)
    if changes.name is not None:
        template.name = changes.name.strip()
    if changes.description is not None:
        template.description = changes.description
    if changes.content is not None:
        template.content = content_to_json(changes.content)
    template.version += 1
    template.updated_by = actor.user_id
    template.updated_at = datetime.now(UTC)
    await repo.add_version(template, actor=actor.user_id)
    return template


async def restore_template_version(
    session: AsyncSession,
    *,
    actor: Principal,
    slug: str,
    version: int,
    tenant_id: str | None = None,
) -> Template:
    """Make an old version current again, as a new version (history is never rewritten)."""
    repo = TemplateRepository(session)
    template = await _owned(session, actor=actor, slug=slug, tenant_id=tenant_id)
    old = await repo.get_version(template, version)
    if old is None:
        raise NotFoundError(f"Template '{slug}' has no version {version}", field="version")
    return await update_template(
        session,
        actor=actor,
        slug=slug,
        changes=TemplateChanges(
            name=old.name, description=old.description, content=template_content(old)
        ),
        template=template,
    )


async def delete_template(
    session: AsyncSession, *, actor: Principal, slug: str, tenant_id: str | None = None
) -> None:
    """Delete a template and its versions, unless something still sends it. Deleting a
    tenant's override leaves the shared template to be sent for the tenant again."""
    repo = TemplateRepository(session)
    template = await _owned(session, actor=actor, slug=slug, tenant_id=tenant_id)
    # Event types name shared templates; a tenant's override has a fallback.
    users = await repo.users_of(slug) if template.tenant_id is None else []
    if users:
        raise ConflictError(
            f"Template '{slug}' is in use by {', '.join(users)}; change those first", field="slug"
        )
    await repo.delete(template)
