"""Domain logic. Services take an explicit session or store, raise ``backend.errors``, and never
import Strawberry or Celery."""
