"""What a template is: its content per channel and locale, what each channel needs, the
limits, and the content as it is stored (JSON) and walked (every string a template)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.channels import Channel
from backend.db.models import Template, TemplateVersion

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


MAX_ACTIONS = 2
MAX_ACTION_LABEL_CHARS = 100
MAX_ACTION_URL_CHARS = 2000
ACTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
# What an action's URL may start with, before and after rendering: a web page, or a path on the
# app's own origin. (``javascript:`` or ``data:`` in a button would run in the app's page.)
ACTION_URL_PREFIXES = ("https://", "http://", "/")
ACTION_URL_TEMPLATE_PREFIXES = (*ACTION_URL_PREFIXES, "{{")


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


def content_to_json(content: Sequence[ContentData]) -> list[dict[str, Any]]:
    """The content as a template row stores it: the fields that are set."""
    return [
        {
            k: (v.value if isinstance(v, Channel) else v)
            for k, v in asdict(c).items()
            if v is not None
        }
        for c in content
    ]


def leaves(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string in a JSON value, with its path (``blocks[0].text.text``)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}.{k}")]
    return []


def action_leaves(actions: list[dict[str, str]] | None) -> list[tuple[str, str]]:
    """The templates of the actions: each label and url (a name is not rendered)."""
    return [
        (f"actions[{index}].{key}", action[key])
        for index, action in enumerate(actions or ())
        for key in ("label", "url")
        if action.get(key) is not None
    ]
