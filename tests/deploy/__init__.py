"""Deployment: compose file, image, nginx, and observability."""
