"""The event envelope: what the API (and the campaign, digest and quiet-hours producers) hand
to the worker, and what the worker hands on to its own channel and dispatch tasks.

On the wire it is the ``event`` keyword argument of the ``events.dispatch`` and
``deliveries.send`` Celery task messages (JSON), and it is stored as JSON with scheduled events,
digest items and dead letters. ``from_wire`` reads every shape that has ever been sent or stored
(keys it does not know are ignored, optional keys may be missing), so messages queued or rows
stored before a change still decode.

A leaf module (it imports only ``backend.channels``): the API's event ingestion and the
campaign and digest services build envelopes without loading the delivery path, which itself
imports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.channels import Channel


@dataclass(frozen=True, slots=True)
class Envelope:
    """One accepted event, frozen at acceptance.

    Wire fields, in the order ``to_wire`` writes them:

    - ``id``: the event id (a UUID string); a campaign run's pages share their run's event id,
      and every delivery id is derived from it (``delivery_id``).
    - ``type``: the event type name (a campaign's category for campaign runs).
    - ``user_ids``: the recipients. Left out of channel task messages, dead letters and digest
      items, which do not need the list (``None`` here).
    - ``payload``: the event's JSON payload, given to templates as ``payload`` (``null`` or
      missing: none; left out of stored digest items, which keep it apart).
    - ``template_slug``: the template the rule (or the caller) chose at acceptance.
    - ``channels``: channel names (``email``, ``sms``, ``push``, ``in_app``).
    - ``locale``: a locale forced by the sender, else each user's own.
    - ``critical``: ignores preferences, quiet hours, throttles and digests (also a campaign's
      test send).
    - ``throttle``: ``[count, seconds]`` from the event type's rule, or ``null``.
    - ``digest``: the rule's digest window (``every_seconds`` or ``cron``, ``key``,
      ``template_slug``), or ``null``.
    - ``created_at``: acceptance time, ISO 8601.
    - ``send_at``: the requested send time for a scheduled event, ISO 8601, or ``null``.
    - ``actor``: the user id of the caller (a campaign's creator).
    - ``campaign_id``: the campaign a run's event belongs to, or ``null``.

    Written only when set:

    - ``part``: the number of a broadcast's dispatch part (each part carries some of the users).
    - ``quiet_released``: ``true`` on a part released after the users' quiet hours (not held,
      limited or counted again).
    - ``digest_of``: the ids of the events a digest lists.
    - ``topics``: the topics the event (or campaign) targets besides ``user_ids``.
    - ``via_topics``: ``true`` when ``user_ids`` were reached through ``topics`` (their topic
      opt-outs apply; a delivery to a listed user id ignores them).
    - ``topic_page`` and ``topic_after``: on a message that expands one page of the topics'
      members, the page's number and the last user id before it (``""`` for the first);
      ``user_ids`` there are the event's listed users, left out of the page.
    - ``workflow_id``: the workflow version the event's users each start a run of
      (``backend.services.workflows``) instead of being sent to directly.
    - ``cancel_key``: the event's cancel key: its runs stop when ``cancelWorkflowRuns`` gets it.
    - ``cancels``: event types whose unfinished runs for the event's users (with the same
      cancel key, when the event has one) the event cancels.
    - ``tenant_id``: the tenant the event belongs to (backend.services.tenants): its
      deliveries and inbox items carry it, and its templates are the tenant's overrides.
    """

    id: str
    type: str
    user_ids: tuple[str, ...] | None
    template_slug: str
    channels: tuple[Channel, ...]
    payload: Any = None
    locale: str | None = None
    critical: bool = False
    throttle: tuple[int, int] | None = None
    digest: Mapping[str, Any] | None = None
    created_at: str | None = None
    send_at: str | None = None
    actor: str | None = None
    campaign_id: str | None = None
    part: int | None = None
    quiet_released: bool = False
    digest_of: tuple[str, ...] | None = None
    topics: tuple[str, ...] | None = None
    via_topics: bool = False
    topic_page: int | None = None
    topic_after: str | None = None
    workflow_id: str | None = None
    cancel_key: str | None = None
    cancels: tuple[str, ...] | None = None
    tenant_id: str | None = None

    @property
    def recipients(self) -> tuple[str, ...]:
        """The users this envelope is dispatched to (none on a channel task's envelope)."""
        return self.user_ids or ()

    def for_users(self, user_ids: Sequence[str], **changes: Any) -> Envelope:
        """The same event for some of its users (a part, a quiet-hours release, a digest)."""
        return dataclasses.replace(self, user_ids=tuple(user_ids), **changes)

    def without_recipients(self) -> Envelope:
        """As channel tasks carry it: they do not need the recipient list, which can be long."""
        return dataclasses.replace(self, user_ids=None)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.user_ids is not None:
            wire["user_ids"] = list(self.user_ids)
        wire["payload"] = self.payload
        wire["template_slug"] = self.template_slug
        wire["channels"] = [c.value for c in self.channels]
        wire["locale"] = self.locale
        wire["critical"] = self.critical
        wire["throttle"] = list(self.throttle) if self.throttle is not None else None
        wire["digest"] = dict(self.digest) if self.digest is not None else None
        wire["created_at"] = self.created_at
        wire["send_at"] = self.send_at
        wire["actor"] = self.actor
        wire["campaign_id"] = self.campaign_id
        if self.part is not None:
            wire["part"] = self.part
        if self.quiet_released:
            wire["quiet_released"] = True
        if self.digest_of is not None:
            wire["digest_of"] = list(self.digest_of)
        if self.topics is not None:
            wire["topics"] = list(self.topics)
        if self.via_topics:
            wire["via_topics"] = True
        if self.topic_page is not None:
            wire["topic_page"] = self.topic_page
            wire["topic_after"] = self.topic_after
        if self.workflow_id is not None:
            wire["workflow_id"] = self.workflow_id
        if self.cancel_key is not None:
            wire["cancel_key"] = self.cancel_key
        if self.cancels:
            wire["cancels"] = list(self.cancels)
        if self.tenant_id is not None:
            wire["tenant_id"] = self.tenant_id
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Envelope:
        user_ids = wire.get("user_ids")
        throttle = wire.get("throttle")
        digest_of = wire.get("digest_of")
        part = wire.get("part")
        topics = wire.get("topics")
        topic_page = wire.get("topic_page")
        cancels = wire.get("cancels")
        return cls(
            id=wire["id"],
            type=wire["type"],
            user_ids=tuple(user_ids) if user_ids is not None else None,
            template_slug=wire["template_slug"],
            channels=tuple(Channel(c) for c in wire["channels"]),
            payload=wire.get("payload"),
            locale=wire.get("locale"),
            critical=bool(wire.get("critical")),
            throttle=(int(throttle[0]), int(throttle[1])) if throttle else None,
            digest=wire.get("digest") or None,
            created_at=wire.get("created_at"),
            send_at=wire.get("send_at"),
            actor=wire.get("actor"),
            campaign_id=wire.get("campaign_id"),
            part=int(part) if part is not None else None,
            quiet_released=bool(wire.get("quiet_released")),
            digest_of=tuple(digest_of) if digest_of is not None else None,
            topics=tuple(topics) if topics is not None else None,
            via_topics=bool(wire.get("via_topics")),
            topic_page=int(topic_page) if topic_page is not None else None,
            topic_after=wire.get("topic_after"),
            workflow_id=wire.get("workflow_id"),
            cancel_key=wire.get("cancel_key"),
            cancels=tuple(cancels) if cancels else None,
            tenant_id=wire.get("tenant_id"),
        )
