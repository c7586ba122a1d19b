"""Integrations with web frameworks and other libraries; each loads its framework lazily.

- ``sessiontrace.integrations.asgi.SessionMiddleware``: Starlette, FastAPI, any ASGI app.
- ``sessiontrace.integrations.wsgi.SessionMiddleware``: Flask, Django (WSGI), any WSGI app.
"""
