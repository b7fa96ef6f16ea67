"""How the app is served by waitress: bounds on bodies, headers and idle clients, from the config.

Waitress reads a whole request body before the app sees it, so the body limit must be waitress's
own (refused from Content-Length, before a byte of the body is read). Idle or half-sent
connections are closed after WSGI_CHANNEL_TIMEOUT; a connection whose request is being worked on
is never idle (waitress only times out channels without a request in hand). Exposed to the
internet, put a reverse proxy in front (see the README): waitress is no shield against a client
that trickles one byte a minute from many addresses.
"""

from __future__ import annotations

from collections.abc import Mapping

from web.video_jobs import body_limit

MULTIPART_SLACK = 64 * 1024  # form fields and part headers around the file, within the body limit


def waitress_options(config: Mapping) -> dict:
    """Keyword arguments for `waitress.serve` / `waitress.create_server` from the app's config."""
    return {
        "threads": int(config["WSGI_THREADS"]),
        # Waitress answers 413 itself when Content-Length is at least this, without reading the
        # body; Flask's MAX_CONTENT_LENGTH (with its JSON answer) covers what gets through.
        "max_request_body_size": body_limit(config) + MULTIPART_SLACK,
        "max_request_header_size": int(config["WSGI_MAX_HEADER_BYTES"]),
        "connection_limit": int(config["WSGI_CONNECTION_LIMIT"]),
        "channel_timeout": int(config["WSGI_CHANNEL_TIMEOUT"]),
        "cleanup_interval": max(1, int(config["WSGI_CHANNEL_TIMEOUT"]) // 4),
        # poll() rather than select(): select cannot watch descriptors past 1024.
        "asyncore_use_poll": True,
        "ident": "Remaster",
    }
