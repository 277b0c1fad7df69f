"""RabbitMQ queue names and arguments, shared by the API's publisher and the Celery workers.

Both sides declare the same durable queues with the same arguments (RabbitMQ refuses a second
declaration that differs), so either may start first.
"""

from __future__ import annotations

from typing import Any

from backend.channels import Channel

DISPATCH = "herald.dispatch"
MAINTENANCE = "herald.maintenance"
CAMPAIGNS = "herald.campaigns"
WEBHOOKS = "herald.webhooks"
CHANNEL_QUEUES: dict[Channel, str] = {
    Channel.EMAIL: "herald.deliver.email",
    Channel.SMS: "herald.deliver.sms",
    Channel.PUSH: "herald.deliver.push",
    Channel.IN_APP: "herald.deliver.in_app",
    Channel.SLACK: "herald.deliver.slack",
    Channel.TELEGRAM: "herald.deliver.telegram",
    Channel.DISCORD: "herald.deliver.discord",
    Channel.TEAMS: "herald.deliver.teams",
    Channel.WEBHOOK: "herald.deliver.webhook",
    Channel.PUSH_MOBILE: "herald.deliver.push_mobile",
}
DEAD_LETTER_EXCHANGE = "herald.dead"
DEAD_LETTER_QUEUE = "herald.dead_letters"

# Messages a worker rejects (undecodable, unknown task) land in the dead-letter queue instead
# of vanishing; deliveries that fail for good are recorded in PostgreSQL for replay.
WORK_QUEUE_ARGUMENTS: dict[str, Any] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}

WORK_QUEUES = (DISPATCH, MAINTENANCE, CAMPAIGNS, *CHANNEL_QUEUES.values(), WEBHOOKS)

# Celery task names: "<domain>.<verb>".
TASK_DISPATCH = "events.dispatch"
TASK_RELEASE_DUE = "events.release_due"
TASK_SEND = "deliveries.send"
TASK_CAMPAIGN_FIRE = "campaigns.fire"
TASK_CAMPAIGN_FAN_OUT = "campaigns.fan_out"
TASK_WEBHOOK_DELIVER = "webhooks.deliver"
TASK_RECIPIENTS_SYNC = "recipients.sync"
TASK_RETENTION_SWEEP = "retention.sweep"
TASK_WORKFLOW_ADVANCE = "workflows.advance"

# The queue each task's messages go to; a channel batch (``TASK_SEND``) goes to its channel's.
TASK_QUEUES: dict[str, str] = {
    TASK_DISPATCH: DISPATCH,
    TASK_RELEASE_DUE: MAINTENANCE,
    TASK_RETENTION_SWEEP: MAINTENANCE,
    TASK_CAMPAIGN_FIRE: CAMPAIGNS,
    TASK_CAMPAIGN_FAN_OUT: CAMPAIGNS,
    TASK_WEBHOOK_DELIVER: WEBHOOKS,
    TASK_RECIPIENTS_SYNC: MAINTENANCE,
    # A run's steps are dispatch work: the dispatch queue every worker consumes.
    TASK_WORKFLOW_ADVANCE: DISPATCH,
}
