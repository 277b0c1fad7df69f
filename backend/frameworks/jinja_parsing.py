"""Jinja2's parse step, where a template's tree can be rewritten before it is compiled."""

from __future__ import annotations

from jinja2 import Environment, nodes


class TransformedParse(Environment):
    """An environment whose every parsed template goes through :meth:`transform` first.

    Written against Jinja2 3.1: ``Environment._parse(source, name, filename)`` is the one
    step every source passes on its way to a tree (``from_string``, ``compile``, ``parse``
    and the loaders all call it); there is no public hook. Herald's sandbox instruments
    templates here, so a Jinja2 that renamed the step would render them uninstrumented:
    tests/test_frameworks.py fails on that first.
    """

    def transform(self, tree: nodes.Template) -> nodes.Template:
        return tree

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return self.transform(super()._parse(source, name, filename))
