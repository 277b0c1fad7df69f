"""Delivery history: one record per recipient x channel x notification, with its timeline.

Two stores behind :class:`HistoryStore`: PostgreSQL (the embedded default) and MongoDB.
"""
