"""Development stand-ins for the services Herald talks to.

These let ``herald dev``, the admin page and the tests run without the real neighbours (the auth
service, an SMTP server). They are development stand-ins only: never started in production, and
the commands that start them refuse to when ``HERALD_ENVIRONMENT=production``.
"""
