"""The platform service: an OpenAI-compatible fine-tuning API plus native `/api/` endpoints.

    tunery serve                      # SQLite + artifacts under $TUNERY_HOME/service, a local worker
    TUNERY_DATABASE_URL=postgresql+psycopg://… TUNERY_BROKER_URL=redis://… tunery serve
    tunery worker                     # with a broker: a Celery worker that runs jobs

See docs/service.md. Nothing here imports torch: training runs in child processes.
"""
