"""From an accepted event to sent messages: dispatch (fan-out into deliveries) and sending.

Exactly-once rests on three things: a delivery's id is derived from (event, user, channel), so a
re-run dispatch inserts nothing new (``dispatch``); a sender first moves the delivery from
``queued`` to ``sending`` with a compare-and-set, so a duplicated task message sends nothing
(``claims``); and a message that RabbitMQ redelivers after a worker died (or a task that is
resumed after a crash) may take over deliveries left in ``sending`` once their lease ran out.

Nothing here commits: the workers' units of work (``backend.workers.units``) run the steps,
each in its own transaction where the protocol needs it durable before the next.

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
from backend.services.deliveries.dispatch import (
    Dispatched,
    DispatchSummary,
    record_dispatch,
    record_together,
    send_dispatched,
    send_together,
    together,
)
from backend.services.deliveries.records import announce, delivery_id
from backend.services.deliveries.sending import (
    BatchOutcome,
    ClaimedBatch,
    claim_batch,
    hand_on,
    save_outcome,
    send_batch,
)
from backend.services.envelope import Envelope

__all__ = [
    "BatchOutcome",
    "BrokerDeliveryQueue",
    "ClaimedBatch",
    "DeliveryContext",
    "DeliveryQueue",
    "DispatchSummary",
    "Dispatched",
    "Envelope",
    "StatusWebhooks",
    "announce",
    "claim_batch",
    "delivery_id",
    "hand_on",
    "record_dispatch",
    "record_together",
    "save_outcome",
    "send_batch",
    "send_dispatched",
    "send_together",
    "together",
]
