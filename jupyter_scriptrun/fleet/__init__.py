"""Celery: the app, the task, the worker process with its housekeeping, the embedded
broker and the local worker of the zero-config default."""
