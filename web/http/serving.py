"""How the app is served by waitress: bounds on bodies, headers and idle clients, from the config.

Waitress reads a whole request body before the app sees it. Its own cap sits a margin above
the larger of the image and video upload limits (`body_cap`): a body a little over the limit reaches the app and gets
its JSON 413 with the limit in words; a body past the margin is refused by waitress itself, in
plain text, from its Content-Length, before a byte of it is read. Idle or half-sent
connections are closed after WSGI_CHANNEL_TIMEOUT; a connection whose request is being worked on
is never idle (waitress only times out channels without a request in hand). Exposed to the
internet, put a reverse proxy in front (see the README): waitress is no shield against a client
that trickles one byte a minute from many addresses.
"""

from __future__ import annotations

from collections.abc import Mapping

from web.http.video_forms import body_limit

BODY_MARGIN_BYTES = 2**20  # waitress's cap is at least this much above MAX_CONTENT_LENGTH...
BODY_MARGIN_SHARE = 0.05  # ...and at least this share of it


def body_cap(max_content_length: int) -> int:
    """Waitress's body limit for Flask's ``max_content_length``: the larger of +1 MiB and +5%."""
    return max_content_length + max(BODY_MARGIN_BYTES, int(max_content_length * BODY_MARGIN_SHARE))


def waitress_options(config: Mapping) -> dict:
    """Keyword arguments for `waitress.serve` / `waitress.create_server` from the app's config."""
    return {
        "threads": int(config["WSGI_THREADS"]),
        # Waitress answers 413 itself (plain text) when Content-Length passes this, without reading
        # the body; up to it, the app answers with our JSON 413 (each kind against its own limit:
        # images MAX_CONTENT_LENGTH, videos MAX_VIDEO_BYTES, whichever is larger sets this cap).
        "max_request_body_size": body_cap(body_limit(config)),
        "max_request_header_size": int(config["WSGI_MAX_HEADER_BYTES"]),
        "connection_limit": int(config["WSGI_CONNECTION_LIMIT"]),
        "channel_timeout": int(config["WSGI_CHANNEL_TIMEOUT"]),
        "cleanup_interval": max(1, int(config["WSGI_CHANNEL_TIMEOUT"]) // 4),
        # poll() rather than select(): select cannot watch descriptors past 1024.
        "asyncore_use_poll": True,
        "ident": "Remaster",
    }
