"""The Celery application: RabbitMQ broker, RedBeat schedules in Redis."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from backend.config import Settings, get_settings
from backend.observability.logs import quiet_periodic_tasks
from backend.queues import (
    MAINTENANCE,
    TASK_QUEUES,
    TASK_RELEASE_DUE,
    WORK_QUEUE_ARGUMENTS,
    WORK_QUEUES,
)
from backend.services import task_messages

# Periodic housekeeping run by beat every second: their routine lines are logged at DEBUG.
HOUSEKEEPING_TASKS = frozenset({TASK_RELEASE_DUE})


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    quiet_periodic_tasks(HOUSEKEEPING_TASKS)
    release_due = task_messages.release_due()
    retention_sweep = task_messages.retention_sweep()
    app = Celery(
        "herald",
        broker=settings.rabbitmq_url,
        include=["backend.workers.tasks", "backend.workers.webhook_tasks"],
    )
    app.conf.update(
        task_queues=[
            Queue(
                name,
                Exchange(name, type="direct", durable=True),
                routing_key=name,
                durable=True,
                queue_arguments=WORK_QUEUE_ARGUMENTS,
            )
            for name in WORK_QUEUES
        ],
        task_default_queue=MAINTENANCE,
        task_create_missing_queues=False,
        task_routes={
            task: {"queue": queue, "routing_key": queue} for task, queue in TASK_QUEUES.items()
        },
        # A message is acknowledged only after its task ran; a worker that dies mid-task
        # leaves it to be redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Each task carries a batch of up to delivery_batch_size deliveries sent concurrently,
        # so a small prefetch keeps batches spread over processes.
        worker_prefetch_multiplier=2,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_heartbeat=30,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_scheduler="backend.workers.schedules.HeraldScheduler",
        redbeat_redis_url=settings.redis_url,
        redbeat_key_prefix="herald:redbeat",
        redbeat_lock_timeout=30,
        beat_max_loop_interval=1,
        beat_schedule={
            "release-due-events": {
                "task": release_due.task,
                "schedule": 1.0,
                "options": {"queue": release_due.queue, "expires": 5},
            },
            # A RedBeat entry like the one above; a sweep that overlaps the next one only
            # finds fewer rows (each batch is its own transaction).
            "retention-sweep": {
                "task": retention_sweep.task,
                "schedule": settings.retention_sweep_seconds,
                "options": {
                    "queue": retention_sweep.queue,
                    "expires": settings.retention_sweep_seconds,
                },
            },
        },
        timezone="UTC",
        enable_utc=True,
    )
    return app


celery_app = create_celery()
