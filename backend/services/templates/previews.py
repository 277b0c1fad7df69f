"""Previews: a saved template or unsaved content rendered with sample or given variables, as
it is sent for a tenant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.errors import TemplateRenderError, ValidationError
from backend.services import payloads, tenants
from backend.services.templates.definitions import ContentData, RenderedMessage, template_content
from backend.services.templates.messages import render_content_isolated, select_content
from backend.services.templates.storage import get_template
from backend.services.templates.validation import validate_content

SAMPLE_USER = {
    "id": "00000000-0000-0000-0000-000000000001",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "login": "ada",
    "locale": "en",
    "timezone": "UTC",
}


def preview_context(
    variables: Any, branding: tenants.Branding = tenants.NO_BRANDING
) -> dict[str, Any]:
    """The render context of a preview: given user/payload/event, sample values for the rest."""
    if variables is None:
        variables = {}
    if not isinstance(variables, Mapping):
        raise ValidationError("variables must be an object", field="variables")
    # The same bounds as an event's payload (size, nesting), before anything walks it.
    variables = payloads.check_payload(dict(variables), field="variables")
    unknown = set(variables) - {"user", "payload", "event"}
    if unknown:
        raise ValidationError(
            "variables take the keys 'user', 'payload' and 'event'; unknown: "
            + ", ".join(sorted(unknown)),
            field="variables",
        )
    for key in ("user", "payload", "event"):
        if key in variables and not isinstance(variables[key], Mapping):
            raise ValidationError(f"variables.{key} must be an object", field=f"variables.{key}")
    return {
        "user": {**SAMPLE_USER, **variables.get("user", {})},
        "payload": variables.get("payload", {}),
        "event": {
            "id": "preview",
            "type": "preview",
            "created_at": datetime.now(UTC).isoformat(),
            **variables.get("event", {}),
        },
        "tenant": branding.to_context(),
    }


async def preview_template(
    session: AsyncSession,
    *,
    slug: str | None,
    content: Sequence[ContentData] | None,
    channel: Channel,
    locale: str | None,
    variables: Any,
    actor: Principal | None = None,
    tenant_id: str | None = None,
) -> RenderedMessage:
    """Render a saved template (by slug) or unsaved content, with sample or given variables,
    as it is sent for a tenant (``get_template``; its branding as ``tenant``)."""
    if (slug is None) == (content is None):
        raise ValidationError("Give either a template slug or content to preview", field="slug")
    if actor is not None:
        tenant_id = tenants.named_tenant(actor, tenant_id)
    if content is None:
        assert slug is not None
        content = template_content(await get_template(session, slug=slug, tenant_id=tenant_id))
    else:
        validate_content(content)
    item = select_content(content, channel=channel, locale=locale)
    branding = await tenants.TenantCache(ttl=0).branding(session, tenant_id)
    context = preview_context(variables, branding)
    try:
        return await render_content_isolated(item, context)
    except TemplateRenderError as exc:
        index = list(content).index(item)
        exc.field = f"content[{index}].{exc.field}"
        raise
