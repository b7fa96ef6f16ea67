"""``python -m web.worker``: start one Celery worker (see `web.worker.main`)."""

from web.worker.main import main

raise SystemExit(main())
