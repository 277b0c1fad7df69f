"""Thin adapters: context → service call → schema type."""
