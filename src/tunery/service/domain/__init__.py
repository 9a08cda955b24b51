"""The service's domain layer: what the API and the dashboard do, as plain functions over a session.

    job = jobs.create_job(session, project, JobCreate(...), settings, dispatcher)
    file = files.store_upload(session, project, settings, handle, "orders.jsonl", "fine-tune")
    version = datasets.get_version(session, project, "orders", 2)

The REST routes (`tunery.service.api.routes`) parse a request, call one of these and shape
the answer; the dashboard (`tunery.web`) calls the same functions, so both refuse alike.
Refusals are `ApiError`s (OpenAI's error shape, no FastAPI needed); nothing here imports FastAPI.
"""
