"""From an accepted event to sent messages: dispatch (fan-out into deliveries) and sending.

Exactly-once rests on three things: a delivery's id is derived from (event, user, channel), so a
re-run dispatch inserts nothing new (``dispatch``); a sender first moves the delivery from
``queued`` to ``sending`` with a compare-and-set, so a duplicated task message sends nothing
(``claims``); and a message that RabbitMQ redelivers after a worker died (or a task that is
resumed after a crash) may take over deliveries left in ``sending`` once their lease ran out.

The event arrives as an ``Envelope`` (``backend.services.envelope``). Modules: ``context`` (the
per-process clients and the task queue), ``records`` (delivery ids, the history as a batch
sees it, announcing status changes), ``dispatch``, ``claims``, ``sending``, ``in_app``.
"""

from backend.services.deliveries.context import (
    BrokerDeliveryQueue,
    DeliveryContext,
    DeliveryQueue,
    StatusWebhooks,
)
from backend.services.deliveries.dispatch import DispatchSummary, dispatch_event
from backend.services.deliveries.records import announce, delivery_id
from backend.services.deliveries.sending import BatchOutcome, send_batch
from backend.services.envelope import Envelope

__all__ = [
    "BatchOutcome",
    "BrokerDeliveryQueue",
    "DeliveryContext",
    "DeliveryQueue",
    "DispatchSummary",
    "Envelope",
    "StatusWebhooks",
    "announce",
    "delivery_id",
    "dispatch_event",
    "send_batch",
]
