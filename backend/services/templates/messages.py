"""Content rendered into a message: the content for a channel and locale, each field
rendered in the sandbox under one budget, the context escaped as the channel needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backend.channels import Channel
from backend.errors import NotFoundError, TemplateRenderError
from backend.services import rendering
from backend.services.templates.definitions import (
    ACTION_URL_PREFIXES,
    DEFAULT_LOCALE,
    ContentData,
    RenderedMessage,
    action_leaves,
    leaves,
)


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
    fields.extend((path, leaf, False) for path, leaf in leaves(item.blocks, "blocks"))
    fields.extend((path, leaf, False) for path, leaf in leaves(item.data, "data"))
    fields.extend((path, leaf, False) for path, leaf in action_leaves(item.actions))
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


def _replace_leaves(value: Any, path: str, rendered: Mapping[str, str]) -> Any:
    """``value`` with each string replaced by its rendering (as :func:`leaves` names it)."""
    if isinstance(value, str):
        return rendered[path]
    if isinstance(value, list):
        return [_replace_leaves(v, f"{path}[{i}]", rendered) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _replace_leaves(v, f"{path}.{k}", rendered) for k, v in value.items()}
    return value


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
