"""Prompt governance: Django project and app in one package.

Celery's app is loaded lazily by governance.celery so that web processes and the CLI do not pay for it.
"""
