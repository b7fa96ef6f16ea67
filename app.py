"""Remaster's web app. ``python app.py`` serves it with waitress on $HOST:$PORT (127.0.0.1:5000)."""

from __future__ import annotations

import logging
import os

from web import create_app

app = create_app()

if __name__ == "__main__":
    from waitress import serve

    host = os.environ.get("HOST", app.config["HOST"])
    port = int(os.environ.get("PORT", app.config["PORT"]))
    logging.getLogger("remaster").info("serving on http://%s:%d", host, port)
    print(f"Remaster: http://{host}:{port}/", flush=True)
    serve(app, host=host, port=port, threads=8, channel_timeout=120)
