"""Observability: Prometheus metrics, structured logs, OpenTelemetry tracing.

- :mod:`backend.observability.metrics`: the ``herald_*`` metrics, the functions that record
  them, the API's ``/metrics`` endpoint and the RabbitMQ queue-depth collector;
- :mod:`backend.observability.workers`: the glue for Celery processes (the worker's
  multiprocess ``/metrics`` server, logging and tracing set-up, task log context);
- :mod:`backend.observability.logs`: ``configure_logging`` (text or one JSON object a line),
  log context (``event_id``, ``delivery_id``) and secret redaction;
- :mod:`backend.observability.tracing`: ``configure_tracing``, off unless an OTLP endpoint is set;
- :mod:`backend.observability.probe`: the container healthchecks.

This package imports nothing on purpose: the worker must set up prometheus_client's
multiprocess directory before the metrics module is first imported.
"""
