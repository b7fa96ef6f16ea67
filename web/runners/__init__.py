"""Who runs jobs: in this process, or on Celery workers through a broker."""
