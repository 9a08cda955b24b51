"""The service's fixtures (PostgreSQL schema, Redis queue, a training file) for the worker tests here."""

from tests.service.conftest import postgres_url, redis_queue, train_file  # noqa: F401
