"""Remaster's web app. ``python app.py`` serves it with waitress on $HOST:$PORT (127.0.0.1:5000)."""

from __future__ import annotations

import os

from web import create_app
from web.http.serving import waitress_options

app = create_app()

if __name__ == "__main__":
    from waitress import serve

    host = os.environ.get("HOST", app.config["HOST"])
    port = int(os.environ.get("PORT", app.config["PORT"]))
    print(f"Remaster: http://{host}:{port}/", flush=True)
    # Synchronous /upscale requests hold a thread while they wait for their job, so there are
    # enough threads (WSGI_THREADS) for a full queue plus the page, polling and file downloads.
    serve(app, host=host, port=port, **waitress_options(app.config))
