"""Message templates: per-channel, per-locale content with versions, validation and preview."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.db.models import Template, TemplateVersion
from backend.db.repositories.templates import TemplateRepository
from backend.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TemplateRenderError,
    ValidationError,
)
from backend.services import payloads, rendering, tenants
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z][A-Za-z]{1,3})?$")
DEFAULT_LOCALE = "en"
MAX_FIELD_CHARS = 100_000
TEXT_FIELDS = ("subject", "title", "body")

# What each channel needs to produce a message.
REQUIRED_FIELDS: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("subject",),
    Channel.SMS: ("body",),
    Channel.PUSH: ("title", "body"),
    Channel.IN_APP: ("title", "body"),
    # Slack: the text is the notification and the fallback of the blocks.
    Channel.SLACK: ("body",),
    Channel.TELEGRAM: ("body",),
    Channel.DISCORD: ("body",),
    Channel.TEAMS: ("body",),
    Channel.WEBHOOK: ("body",),
    Channel.PUSH_MOBILE: ("title", "body"),
}
# Mobile push: data keys FCM reserves (and Herald's own), and how many a template may set.
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type", "delivery_id"})
MAX_DATA_KEYS = 50
MAX_BADGE = 1_000_000
# Slack's Block Kit: at most 50 blocks a message; a template's blocks as JSON at most this big.
MAX_BLOCKS = 50
MAX_BLOCKS_CHARS = 100_000

SAMPLE_USER = {
    "id": "00000000-0000-0000-0000-000000000001",
    "email": "ada@example.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "login": "ada",
    "locale": "en",
    "timezone": "UTC",
}


@dataclass(frozen=True, slots=True)
class ContentData:
    channel: Channel
    locale: str = DEFAULT_LOCALE
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    html: str | None = None
    # Slack only: Block Kit blocks, every string in them a template.
    blocks: list[dict[str, Any]] | None = None
    # Mobile push only: the data (string values, each a template), badge and sound.
    data: dict[str, str] | None = None
    badge: int | None = None
    sound: str | None = None
    # In-app only: up to two actions (primary, secondary), each ``{label, url}`` (templates)
    # or ``{label, name}`` (a name the app handles).
    actions: list[dict[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class TemplateData:
    slug: str
    name: str
    description: str = ""
    content: list[ContentData] = field(default_factory=list)
    # The tenant it is for: an override of the shared template with this slug, or a template
    # of that tenant alone. None: shared (a caller bound to a tenant always makes its own).
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateChanges:
    """A partial update; ``None`` leaves a value as it is."""

    name: str | None = None
    description: str | None = None
    content: list[ContentData] | None = None


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    channel: Channel
    locale: str
    subject: str | None
    title: str | None
    body: str | None
    html: str | None
    blocks: list[dict[str, Any]] | None = None
    data: dict[str, str] | None = None
    badge: int | None = None
    sound: str | None = None
    actions: list[dict[str, str]] | None = None


def _content_from_json(items: Sequence[Mapping[str, Any]]) -> list[ContentData]:
    return [
        ContentData(
            channel=Channel(item["channel"]),
            locale=item.get("locale", DEFAULT_LOCALE),
            subject=item.get("subject"),
            title=item.get("title"),
            body=item.get("body"),
            html=item.get("html"),
            blocks=item.get("blocks"),
            data=item.get("data"),
            badge=item.get("badge"),
            sound=item.get("sound"),
            actions=item.get("actions"),
        )
        for item in items
    ]


def template_content(template: Template | TemplateVersion) -> list[ContentData]:
    return _content_from_json(template.content)


def _content_to_json(content: Sequence[ContentData]) -> list[dict[str, Any]]:
    return [
        {
            k: (v.value if isinstance(v, Channel) else v)
            for k, v in asdict(c).items()
            if v is not None
        }
        for c in content
    ]


def validate_content(content: Sequence[ContentData]) -> None:
    """Check shape and Jinja syntax of every field; errors name the field (``content[1].body``)."""
    if not content:
        raise ValidationError("A template needs content for at least one channel", field="content")
    seen: set[tuple[Channel, str]] = set()
    for index, item in enumerate(content):
        prefix = f"content[{index}]"
        if not LOCALE_RE.match(item.locale):
            raise ValidationError(
                f"'{item.locale}' is not a locale like 'en' or 'pt-BR'", field=f"{prefix}.locale"
            )
        key = (item.channel, item.locale)
        if key in seen:
            raise ValidationError(
                f"Content for {item.channel.value}/{item.locale} is given twice", field=prefix
            )
        seen.add(key)
        for name in REQUIRED_FIELDS[item.channel]:
            if not (getattr(item, name) or "").strip():
                raise ValidationError(
                    f"{item.channel.value} content needs a {name}", field=f"{prefix}.{name}"
                )
        if item.channel is Channel.EMAIL and not (item.body or item.html):
            raise ValidationError("email content needs a body or html", field=f"{prefix}.body")
        if item.blocks is not None:
            _validate_blocks(item, prefix)
        _validate_push_fields(item, prefix)
        if item.actions is not None:
            _validate_actions(item, prefix)
        for name in (*TEXT_FIELDS, "html"):
            value = getattr(item, name)
            if value is None:
                continue
            if len(value) > MAX_FIELD_CHARS:
                raise ValidationError(
                    f"{name} is longer than {MAX_FIELD_CHARS} characters", field=f"{prefix}.{name}"
                )
            rendering.check_syntax(value, field=f"{prefix}.{name}", html=name == "html")


def _validate_blocks(item: ContentData, prefix: str) -> None:
    """Slack's blocks: a list of at most 50 objects, each with a ``type``, every string a
    template of valid syntax."""
    field_name = f"{prefix}.blocks"
    if item.channel is not Channel.SLACK:
        raise ValidationError("only slack content has blocks", field=field_name)
    blocks = item.blocks
    if not isinstance(blocks, list) or not blocks:
        raise ValidationError("blocks is a non-empty list of Block Kit blocks", field=field_name)
    if len(blocks) > MAX_BLOCKS:
        raise ValidationError(f"Slack takes at most {MAX_BLOCKS} blocks", field=field_name)
    if len(json.dumps(blocks)) > MAX_BLOCKS_CHARS:
        raise ValidationError(
            f"the blocks are longer than {MAX_BLOCKS_CHARS} characters", field=field_name
        )
    for index, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise ValidationError(
                "a block is an object with a type", field=f"{field_name}[{index}]"
            )
    for path, value in _leaves(blocks, field_name):
        rendering.check_syntax(value, field=path)


MAX_ACTIONS = 2
MAX_ACTION_LABEL_CHARS = 100
MAX_ACTION_URL_CHARS = 2000
ACTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
# What an action's URL may start with, before and after rendering: a web page, or a path on the
# app's own origin. (``javascript:`` or ``data:`` in a button would run in the app's page.)
ACTION_URL_PREFIXES = ("https://", "http://", "/")
ACTION_URL_TEMPLATE_PREFIXES = (*ACTION_URL_PREFIXES, "{{")


def _validate_actions(item: ContentData, prefix: str) -> None:
    """In-app actions: at most two, each a label and either a URL or a name."""
    field_name = f"{prefix}.actions"
    if item.channel is not Channel.IN_APP:
        raise ValidationError("only in_app content has actions", field=field_name)
    actions = item.actions
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_ACTIONS:
        raise ValidationError(
            f"actions is a list of 1 to {MAX_ACTIONS} actions (primary, secondary)",
            field=field_name,
        )
    for index, action in enumerate(actions):
        at = f"{field_name}[{index}]"
        if not isinstance(action, dict):
            raise ValidationError("an action is an object", field=at)
        label, url, name = action.get("label"), action.get("url"), action.get("name")
        if not isinstance(label, str) or not 0 < len(label.strip()) <= MAX_ACTION_LABEL_CHARS:
            raise ValidationError(
                f"an action's label is 1 to {MAX_ACTION_LABEL_CHARS} characters",
                field=f"{at}.label",
            )
        rendering.check_syntax(label, field=f"{at}.label")
        if (url is None) == (name is None):
            raise ValidationError("an action has a url or a name, not both", field=at)
        if url is not None:
            if (
                not isinstance(url, str)
                or len(url) > MAX_ACTION_URL_CHARS
                or not url.startswith(ACTION_URL_TEMPLATE_PREFIXES)
                or url.startswith("//")
            ):
                raise ValidationError(
                    "an action's url starts with https://, http:// or / (a path of the app)",
                    field=f"{at}.url",
                )
            rendering.check_syntax(url, field=f"{at}.url")
        if name is not None and not (isinstance(name, str) and ACTION_NAME_RE.match(name)):
            raise ValidationError(
                "an action's name is 1-64 lowercase letters, digits and . _ : -, "
                "starting with a letter",
                field=f"{at}.name",
            )


def _action_leaves(actions: list[dict[str, str]] | None) -> list[tuple[str, str]]:
    """The templates of the actions: each label and url (a name is not rendered)."""
    return [
        (f"actions[{index}].{key}", action[key])
        for index, action in enumerate(actions or ())
        for key in ("label", "url")
        if action.get(key) is not None
    ]


def _rendered_actions(
    actions: list[dict[str, str]] | None, rendered: Mapping[str, str]
) -> list[dict[str, str]] | None:
    if not actions:
        return None
    out = []
    for index, action in enumerate(actions):
        done = {"label": rendered[f"actions[{index}].label"]}
        if action.get("url") is not None:
            url = rendered[f"actions[{index}].url"].strip()
            if not url.startswith(ACTION_URL_PREFIXES) or url.startswith("//"):
                raise TemplateRenderError(
                    "an action's url rendered to something other than an http(s) URL or a "
                    f"path: {url[:100]!r}",
                    field=f"actions[{index}].url",
                )
            done["url"] = url
        else:
            done["name"] = action["name"]
        out.append(done)
    return out


def _validate_push_fields(item: ContentData, prefix: str) -> None:
    """Mobile push's data (an object of string templates), badge and sound."""
    for name in ("data", "badge", "sound"):
        if getattr(item, name) is not None and item.channel is not Channel.PUSH_MOBILE:
            raise ValidationError(f"only push_mobile content has {name}", field=f"{prefix}.{name}")
    if item.data is not None:
        field_name = f"{prefix}.data"
        if not isinstance(item.data, dict) or len(item.data) > MAX_DATA_KEYS:
            raise ValidationError(
                f"data is an object of at most {MAX_DATA_KEYS} string values", field=field_name
            )
        for key, value in item.data.items():
            if not isinstance(value, str) or not key or len(key) > 100:
                raise ValidationError(
                    "data values are strings (FCM carries only strings), keys 1-100 characters",
                    field=f"{field_name}.{key}",
                )
            if key in RESERVED_DATA_KEYS or key.startswith(("google.", "gcm.")):
                raise ValidationError(
                    f"'{key}' is a reserved data key", field=f"{field_name}.{key}"
                )
            rendering.check_syntax(value, field=f"{field_name}.{key}")
    if item.badge is not None and (
        isinstance(item.badge, bool)
        or not isinstance(item.badge, int)
        or not 0 <= item.badge <= MAX_BADGE
    ):
        raise ValidationError(
            f"badge is a whole number from 0 to {MAX_BADGE}", field=f"{prefix}.badge"
        )
    if item.sound is not None and not (
        isinstance(item.sound, str) and 0 < len(item.sound.strip()) <= 100
    ):
        raise ValidationError(
            "sound is a sound file name (1-100 characters)", field=f"{prefix}.sound"
        )


def _leaves(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string in a JSON value, with its path (``blocks[0].text.text``)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    return []


def _replace_leaves(value: Any, path: str, rendered: Mapping[str, str]) -> Any:
    """``value`` with each string replaced by its rendering (as :func:`_leaves` names it)."""
    if isinstance(value, str):
        return rendered[path]
    if isinstance(value, list):
        return [_replace_leaves(v, f"{path}[{i}]", rendered) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _replace_leaves(v, f"{path}.{k}", rendered) for k, v in value.items()}
    return value


def _validate_identity(slug: str | None, name: str | None) -> None:
    if slug is not None and not SLUG_RE.match(slug):
        raise ValidationError(
            "A slug is 1-100 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit",
            field="slug",
        )
    if name is not None and not (1 <= len(name.strip()) <= 200):
        raise ValidationError("A name is 1-200 characters", field="name")


def content_variables(content: Sequence[ContentData]) -> list[str]:
    """Every context variable the content reads, as sorted dotted paths."""
    found: set[str] = set()
    for item in content:
        for name in (*TEXT_FIELDS, "html"):
            value = getattr(item, name)
            if value:
                found |= rendering.variables_in(value, html=name == "html")
        for _, leaf in [
            *_leaves(item.blocks, "blocks"),
            *_leaves(item.data, "data"),
            *_action_leaves(item.actions),
        ]:
            found |= rendering.variables_in(leaf)
    return sorted(p for p in found if not any(o != p and o.startswith(p + ".") for o in found))


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
    _validate_identity(data.slug, data.name)
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
        content=_content_to_json(data.content),
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
    _validate_identity(None, changes.name)
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
        template.content = _content_to_json(changes.content)
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


def select_content(
    content: Sequence[ContentData], *, channel: Channel, locale: str | None
) -> ContentData:
    """Pick content by locale fallback: the locale, then its language (pt-BR → pt), then en."""
    candidates: list[str] = []
    if locale:
        candidates.append(locale)
        language = locale.split("-")[0]
        if language != locale:
            candidates.append(language)
    candidates.append(DEFAULT_LOCALE)
    by_locale = {c.locale: c for c in content if c.channel is channel}
    for candidate in candidates:
        if candidate in by_locale:
            return by_locale[candidate]
    raise NotFoundError(
        f"The template has no {channel.value} content for locale "
        f"{locale or DEFAULT_LOCALE} (nor a fallback)",
        field="channel",
    )


_FIELDS = (("subject", False), ("title", False), ("body", False), ("html", True))


def _fields(item: ContentData) -> list[tuple[str, str, bool]]:
    # Telegram's body is HTML (parse_mode HTML): its variables are escaped as in email HTML.
    fields = [
        (name, value, html or (item.channel is Channel.TELEGRAM and name == "body"))
        for name, html in _FIELDS
        if (value := getattr(item, name)) is not None
    ]
    fields.extend((path, leaf, False) for path, leaf in _leaves(item.blocks, "blocks"))
    fields.extend((path, leaf, False) for path, leaf in _leaves(item.data, "data"))
    fields.extend((path, leaf, False) for path, leaf in _action_leaves(item.actions))
    return fields


def _message(
    item: ContentData, fields: list[tuple[str, str, bool]], texts: list[str]
) -> RenderedMessage:
    rendered = {name: text for (name, _, _), text in zip(fields, texts, strict=True)}
    return RenderedMessage(
        channel=item.channel,
        locale=item.locale,
        subject=rendered.get("subject"),
        title=rendered.get("title"),
        body=rendered.get("body"),
        html=rendered.get("html"),
        blocks=_replace_leaves(item.blocks, "blocks", rendered) if item.blocks else None,
        data=_replace_leaves(item.data, "data", rendered) if item.data else None,
        badge=item.badge,
        sound=item.sound,
        actions=_rendered_actions(item.actions, rendered),
    )


def slack_escape(text: str) -> str:
    """Slack's escaping of text (mrkdwn and plain): only ``&``, ``<`` and ``>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escaped(value: Any, escape: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {k: _escaped(v, escape) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v, escape) for v in value]
    return value


def channel_context(channel: Channel, context: Mapping[str, Any]) -> Mapping[str, Any]:
    """The render context as ``channel`` needs it: for Slack every string escaped as Slack
    wants (a user named ``<!channel>`` must not ping the channel); the template's own markup
    (``<https://x|link>``) stays."""
    if channel is Channel.SLACK:
        escaped: Mapping[str, Any] = _escaped(context, slack_escape)
        return escaped
    return context


def render_content(item: ContentData, context: Mapping[str, Any]) -> RenderedMessage:
    """Render one content item, its fields under one budget (backend/services/rendering.py)."""
    fields = _fields(item)
    texts = rendering.render_fields(fields, channel_context(item.channel, context))
    return _message(item, fields, texts)


async def render_content_isolated(item: ContentData, context: Mapping[str, Any]) -> RenderedMessage:
    """:func:`render_content` in the render process: what the API uses, so that no template
    holds its event loop and the budget holds whatever the template does."""
    fields = _fields(item)
    texts = await rendering.render_fields_isolated(fields, channel_context(item.channel, context))
    return _message(item, fields, texts)


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
