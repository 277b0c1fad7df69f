"""Template rendering: Herald's sandbox beside plain Jinja2, in the same run.

Every delivery renders its message's fields (an in-app campaign: a title and a body per user)
in Herald's sandbox (backend/services/rendering.py: the immutable sandbox, strict undefined,
and the budget of steps, time and output size). Here the same templates and variables are
rendered by ``render_fields`` and by a plain ``jinja2.Environment`` (no sandbox, no budget):
the ratio is what the sandbox costs.

  campaign message   "Hello {{ user.first_name }}" and "{{ payload.offer }} for you, ..."
  loop of 10         a for loop over 10 items, then a variable
  html email         an autoescaped HTML body with a condition and a filter

Run: python -m bench.rendering   (no servers needed)
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from typing import Any

from jinja2 import Environment, StrictUndefined

from backend.services.rendering import render_fields
from bench.common import table, write_results

CONTEXT: dict[str, Any] = {
    "user": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
    "payload": {"offer": "20% off", "items": list(range(10)), "vip": True},
}
CASES: dict[str, list[tuple[str, str, bool]]] = {
    "campaign message": [
        ("title", "Hello {{ user.first_name }}", False),
        ("body", "{{ payload.offer }} for you, {{ user.first_name }}.", False),
    ],
    "loop of 10": [
        (
            "body",
            "{% for i in payload['items'] %}{{ i }}, {% endfor %}{{ user.first_name }}",
            False,
        ),
    ],
    "html email": [
        ("subject", "{{ payload.offer }}, {{ user.first_name }}!", False),
        (
            "html",
            "<p>Hello {{ user.first_name | title }},</p>"
            "{% if payload.vip %}<p>{{ payload.offer }} this week.</p>{% endif %}"
            "<p>{{ user.email }}</p>",
            True,
        ),
    ],
}


def _median_us(render: Any, number: int, repeat: int) -> float:
    render()  # compiled and cached before timing
    runs = [timeit.timeit(render, number=number) / number * 1e6 for _ in range(repeat)]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=5000, help="renders per timing")
    parser.add_argument("--repeat", type=int, default=7, help="timings per case (median)")
    args = parser.parse_args()
    plain = {
        # The baseline, as Herald's text and HTML environments escape: nothing here is served.
        html: Environment(undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True)  # noqa: S701
        for html in (False, True)
    }
    results: dict[str, dict[str, float]] = {}
    rows = []
    for name, fields in CASES.items():
        templates = [plain[html].from_string(source) for _, source, html in fields]

        def herald(fields: list[tuple[str, str, bool]] = fields) -> list[str]:
            return render_fields(fields, CONTEXT)

        def bare(templates: list[Any] = templates) -> list[str]:
            return [t.render(CONTEXT) for t in templates]

        if herald() != bare():
            raise SystemExit(f"{name}: the sandbox and plain Jinja2 rendered different text")
        herald_us = _median_us(herald, args.number, args.repeat)
        bare_us = _median_us(bare, args.number, args.repeat)
        results[name] = {"herald_us": herald_us, "plain_jinja_us": bare_us}
        rows.append(
            (name, f"{herald_us:.1f}", f"{bare_us:.1f}", f"{herald_us / bare_us:.2f} x plain")
        )
    print(table(rows, ("message", "Herald µs", "plain Jinja2 µs", "ratio")))
    out = write_results("rendering", {"args": vars(args), "results": results})
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
