"""The HTTP surface: routes (pages, API, downloads), forms, views, limits and the WSGI server's options."""
