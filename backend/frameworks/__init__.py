"""The one place Herald reads frameworks' private APIs, one module per framework.

Each adapter names the library version it was written against and what it reads there;
tests/test_frameworks.py runs each one against the installed library (a real uvicorn server
and WebSocket, a real Strawberry schema, a real SQLAlchemy engine, Jinja2's compiler, a
real process pool, RedBeat's scheduler), so an upgrade that moves one of these internals
fails there, loudly, instead of quietly in production.

The modules are imported one by one, never from here: the services and the workers use the
SQLAlchemy adapter and must not import Strawberry or the ASGI server.
"""
