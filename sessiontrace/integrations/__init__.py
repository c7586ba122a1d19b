"""Integrations with web frameworks and other libraries; each loads its framework lazily.

- ``sessiontrace.integrations.asgi.SessionMiddleware``: Starlette, FastAPI, any ASGI app.
- ``sessiontrace.integrations.wsgi.SessionMiddleware``: Flask, Django (WSGI), any WSGI app.
- ``sessiontrace.integrations.celery.instrument()``: tasks run with the sender's session.
- ``sessiontrace.integrations.langchain.instrument()``: sessions named in LangChain and
  LangGraph run config (``thread_id``, ``session_id``, ``conversation_id``).
- ``sessiontrace.integrations.mcp.instrument()``: MCP servers run each request with the
  calling client's session, user and trace (``_meta`` traceparent/baggage).
- ``sessiontrace.integrations.openai_agents.instrument()``: an OpenAI Agents run's
  ``group_id`` is the session of every span it makes.
"""
