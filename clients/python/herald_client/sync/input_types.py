from datetime import datetime
from typing import Any, Optional

from pydantic import Field

from .base_model import BaseModel
from .enums import Channel


class AudienceInput(BaseModel):
    """Who receives it: `userIds`, `allUsers: true`, or `topics`."""

    user_ids: Optional[list[str]] = Field(alias="userIds", default=None)
    all_users: bool = Field(alias="allUsers", default=False)
    topics: Optional[list[str]] = None
    "The members of these topics (a user in several gets one delivery)."


class CampaignInput(BaseModel):
    name: str
    template_slug: str = Field(alias="templateSlug")
    channels: list[Channel]
    audience: "AudienceInput"
    payload: Optional[Any] = None
    "Template variables."
    locale: Optional[str] = None
    "Force a locale; otherwise each user's own, then `en`."
    schedule: Optional["ScheduleInput"] = None
    category: str = "campaign"
    "The event type its deliveries carry: users who opted out of it (or of a channel) are skipped."
    draft: bool = False
    "Save without scheduling; start later with resumeCampaign."
    tenant_id: Optional[str] = Field(alias="tenantId", default=None)
    "The tenant it sends for (its template overrides, its branding); fixed once made. A caller bound to a tenant always makes its own tenant's campaigns."


class CreateTemplateInput(BaseModel):
    slug: str
    "Unique, lowercase: letters, digits, '-', '_'."
    name: str
    description: str = ""
    content: list["TemplateContentInput"]
    tenant_id: Optional[str] = Field(alias="tenantId", default=None)
    "Make it for this tenant: it overrides the shared template with its slug for the tenant's events. A caller bound to a tenant always makes its own tenant's."


class EventInput(BaseModel):
    """An event from a service: who, what, and optional overrides."""

    type_: str = Field(alias="type")
    "Event type, e.g. `user_registered`."
    user_ids: list[str] = Field(alias="userIds", default_factory=lambda: [])
    "Recipients (auth-service ids). Give these, `topics`, or both."
    topics: list[str] = Field(default_factory=lambda: [])
    "Send to the members of these topics too (one delivery per user, however many of the topics and `userIds` they are in)."
    payload: Optional[Any] = None
    "Template variables; checked against the type's JSON Schema."
    idempotency_key: Optional[str] = Field(alias="idempotencyKey", default=None)
    "Same key within 24 h: the first eventId comes back with `duplicate: true`."
    template_slug: Optional[str] = Field(alias="templateSlug", default=None)
    "Override the type's template (required for unregistered types)."
    channels: Optional[list[Channel]] = None
    "Override the type's channels (required for unregistered types)."
    send_at: Optional[datetime] = Field(alias="sendAt", default=None)
    "Deliver later, at this time (ISO 8601; UTC if no offset)."
    locale: Optional[str] = None
    "Force a locale; otherwise each user's own, then `en`."
    cancel_key: Optional[str] = Field(alias="cancelKey", default=None)
    "Names the event's workflow runs for `cancelWorkflowRuns` (and for events of types whose workflow cancels this one's), 1-200 characters."
    tenant_id: Optional[str] = Field(alias="tenantId", default=None)
    "The tenant the event is for: its templates override the shared ones, and its deliveries and inbox items carry it. A caller bound to a tenant sends for its own."


class NotificationActionInput(BaseModel):
    """An in-app action: a `label` (a template) and a `url` (a template starting with https://, http:// or /) or a `name` the app handles (`herald-action` on the inbox element)."""

    label: str
    url: Optional[str] = None
    name: Optional[str] = None


class ScheduleInput(BaseModel):
    """When to send: at most one of `at`, `cron` and `everySeconds`; none means now. `endAt` and `maxRuns` bound a recurring schedule."""

    at: Optional[datetime] = None
    "Once, at this time (ISO 8601; UTC if no offset)."
    cron: Optional[str] = None
    "A 5-field cron expression, read in `timezone`."
    timezone: str = "UTC"
    "An IANA zone, e.g. Europe/Moscow."
    every_seconds: Optional[int] = Field(alias="everySeconds", default=None)
    "Every N seconds, counted from when the campaign starts."
    end_at: Optional[datetime] = Field(alias="endAt", default=None)
    "No run after this."
    max_runs: Optional[int] = Field(alias="maxRuns", default=None)
    "At most this many runs."


class TemplateContentInput(BaseModel):
    """Content for one channel and locale."""

    channel: Channel
    locale: str = "en"
    subject: Optional[str] = None
    title: Optional[str] = None
    body: Optional[str] = None
    html: Optional[str] = None
    blocks: Optional[Any] = None
    "Slack only: Block Kit blocks (a list of objects), every string a template."
    data: Optional[Any] = None
    "Mobile push only: an object of string values, each a template."
    badge: Optional[int] = None
    "Mobile push only."
    sound: Optional[str] = None
    "Mobile push only."
    actions: Optional[list["NotificationActionInput"]] = None
    "In-app only: up to two actions (primary, secondary)."


class UpdateTemplateInput(BaseModel):
    """Fields left out stay as they are; `content` replaces all content."""

    name: Optional[str] = None
    description: Optional[str] = None
    content: Optional[list["TemplateContentInput"]] = None


CampaignInput.model_rebuild()
CreateTemplateInput.model_rebuild()
TemplateContentInput.model_rebuild()
UpdateTemplateInput.model_rebuild()
