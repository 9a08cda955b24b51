"""Running fine-tuning jobs: one runner (`run_job`) used by the local worker and by Celery.

    worker = LocalWorker(sessions, settings); worker.start()   # inside `tunery serve`
    tunery worker                                              # Celery, with TUNERY_BROKER_URL

A job trains in a child process of its own process group (`tunery.jobs.child`), so a
crash or kill -9 of the training never takes the server or worker down, and cancel
signals the whole group. Nothing here imports torch.
"""
