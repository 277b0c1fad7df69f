"""The Celery application: RabbitMQ broker, RedBeat schedules in Redis."""

from __future__ import annotations

from celery import Celery

from backend.config import Settings, get_settings


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("herald", broker=settings.rabbitmq_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=settings.redis_url,
        redbeat_key_prefix="herald:redbeat",
        redbeat_lock_timeout=30,
        beat_max_loop_interval=1,
        timezone="UTC",
        enable_utc=True,
    )
    return app


celery_app = create_celery()
