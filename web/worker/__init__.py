"""The Celery worker (``python -m web.worker``): its command, idle clean-up and video segment tasks."""
