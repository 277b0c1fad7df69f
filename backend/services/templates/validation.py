"""The checks before a template is saved or previewed: shape, limits and template syntax of
every field, and the variables the content reads."""

from __future__ import annotations

import json
from collections.abc import Sequence

from backend.channels import Channel
from backend.errors import ValidationError
from backend.services import rendering
from backend.services.templates.definitions import (
    ACTION_NAME_RE,
    ACTION_URL_TEMPLATE_PREFIXES,
    LOCALE_RE,
    MAX_ACTION_LABEL_CHARS,
    MAX_ACTION_URL_CHARS,
    MAX_ACTIONS,
    MAX_BADGE,
    MAX_BLOCKS,
    MAX_BLOCKS_CHARS,
    MAX_DATA_KEYS,
    MAX_FIELD_CHARS,
    REQUIRED_FIELDS,
    RESERVED_DATA_KEYS,
    SLUG_RE,
    TEXT_FIELDS,
    ContentData,
    action_leaves,
    leaves,
)


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
    for path, value in leaves(blocks, field_name):
        rendering.check_syntax(value, field=path)


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


def validate_identity(slug: str | None, name: str | None) -> None:
    """Check a template's slug and name (``None``: not given)."""
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
            *leaves(item.blocks, "blocks"),
            *leaves(item.data, "data"),
            *action_leaves(item.actions),
        ]:
            found |= rendering.variables_in(leaf)
    return sorted(p for p in found if not any(o != p and o.startswith(p + ".") for o in found))
