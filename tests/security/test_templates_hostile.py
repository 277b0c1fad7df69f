"""Template injection: sandbox escapes, and templates that try to run forever, recurse or
grow without end. Each is refused with a typed error, within a time bound and (rendering
in-process) a memory bound; ordinary templates still render."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from backend.errors import TemplateRenderError, TemplateSyntaxError
from backend.services import rendering
from tests.factories import CREATE_TEMPLATE, template_input, token_for

BOUND_SECONDS = 3.0
MEMORY_BOUND_BYTES = 64 * 1024 * 1024
BIG = "a" * 60_000  # as large as a payload string may be

ESCAPES = {
    "mro": "{{ ''.__class__.__mro__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals via payload": "{{ payload.__init__.__globals__ }}",
    "cycler": "{{ cycler.__init__.__globals__.os }}",
    "joiner": "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "namespace": "{% set ns = namespace() %}{{ ns.__init__.__globals__ }}",
    "lipsum": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "self": "{{ self.__init__.__globals__ }}",
    "self private": "{{ self._TemplateReference__context }}",
    "attr filter": "{{ ''|attr('__class__') }}",
    "format internals": "{{ '{0.__class__}'.format('') }}",
    "getitem dunder": "{{ payload['__class__'] }}",
    "config": "{{ config }}",
    "request": "{{ request.application.__globals__ }}",
    "reserved name": "{% set _herald_loop = range %}{% for i in range(3) %}{% endfor %}",
}

BOMBS = {
    "range 10**9": "{% for i in range(10**9) %}x{% endfor %}",
    "nested loops": (
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    ),
    "recursive macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "branching macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "recursive loop": "{% for x in [1,2] recursive %}{{ loop([1,2]) }}{% endfor %}",
    "doubling with ~": (
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n-1) }}{% else %}{{ s|length }}{% endif %}"
        "{% endmacro %}{{ d('x', 40) }}"
    ),
    "doubling with +": (
        "{% macro d(s, n) %}{% if n %}{{ d(s + s, n-1) }}{% else %}{{ s|length }}{% endif %}"
        "{% endmacro %}{{ d('x', 40) }}"
    ),
    "repetition": "{{ 'x' * 100000000 }}",
    "power": "{{ 10 ** 100000 }}",
    "center filter": "{{ 'x'|center(1000000000) }}",
    "ljust method": "{{ 'x'.ljust(1000000000) }}",
    "printf width": "{{ '%1000000000s' % 'x' }}",
    "printf star": "{{ '%*s' % (1000000000, 'x') }}",
    "format filter width": "{{ '%1000000000s'|format('x') }}",
    "str.format width": "{{ '{:>1000000000}'.format('x') }}",
    "replace filter": "{{ payload.big|replace('a', 'b' * 100000) }}",
    "replace method": "{{ payload.big.replace('a', 'bbbbbbbbbbbbbbbbbbbb') }}",
    "join filter": "{{ range(10000)|join('x' * 100000) }}",
    "join method": "{{ ('x' * 100000).join(range(10000)|map('string')) }}",
    "batch filter": "{{ [1]|batch(1000000000, 'x')|list }}",
    "indent filter": "{{ (payload.big ~ '\\n') * 8 |indent(100000) }}",
    "macro buffer": (
        "{% macro m() %}{% for i in range(10000) %}{{ payload.big }}{% endfor %}{% endmacro %}"
        "{{ m()|length }}"
    ),
    "literal buffer": (
        "{% macro m() %}{% for i in range(10000) %}" + "L" * 5000 + "{% endfor %}{% endmacro %}"
        "{{ m()|length }}"
    ),
    "many ~": "{% set a = 'x' * 400000 %}{{ (a ~ a ~ a ~ a)|length }}",
    "oversized output": "{% for i in range(10000) %}" + "y" * 100 + "{% endfor %}",
}

NESTED = {
    "nested brackets": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
    "nested blocks": "{% if 1 %}" * 1500 + "x" + "{% endif %}" * 1500,
}

PREVIEW = """
mutation($content: [TemplateContentInput!], $channel: Channel!, $variables: JSON) {
  previewTemplate(content: $content, channel: $channel, variables: $variables) {
    __typename
    ... on Error { code message field }
  }
}
"""


async def _preview(sgql, token: str, body: str) -> tuple[dict, float]:
    started = time.monotonic()
    result = await sgql(
        PREVIEW,
        {
            "content": [{"channel": "SMS", "body": body}],
            "channel": "SMS",
            "variables": {"payload": {"big": BIG}},
        },
        token=token,
    )
    return result["data"]["previewTemplate"], time.monotonic() - started


@pytest.mark.parametrize("case", sorted(ESCAPES))
async def test_sandbox_escapes_are_refused(sgql, sec_settings, case):
    result, elapsed = await _preview(sgql, token_for(sec_settings, "manager"), ESCAPES[case])
    assert result["__typename"] in ("TemplateRenderError", "TemplateSyntaxError"), result
    assert result["field"] == "content[0].body"
    assert elapsed < BOUND_SECONDS


@pytest.mark.parametrize("case", sorted(BOMBS))
async def test_resource_bombs_are_refused_in_bounded_time(sgql, sec_settings, case):
    result, elapsed = await _preview(sgql, token_for(sec_settings, "manager"), BOMBS[case])
    assert result["__typename"] == "TemplateRenderError", result
    assert result["code"] == "TEMPLATE_RENDER"
    assert elapsed < BOUND_SECONDS, elapsed


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_resource_bombs_are_refused_in_bounded_memory(case):
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRenderError):
            rendering.render(BOMBS[case], {"payload": {"big": BIG}}, field="body")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND_BYTES, f"{case}: {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("case", sorted(NESTED))
async def test_nesting_too_deep_is_refused_at_save(sgql, sec_settings, case):
    started = time.monotonic()
    content = [{"channel": "SMS", "locale": "en", "body": NESTED[case]}]
    result = await sgql(
        CREATE_TEMPLATE,
        {"input": template_input("too-deep", content=content)},
        token=token_for(sec_settings, "manager"),
    )
    created = result["data"]["createTemplate"]
    assert created["__typename"] == "TemplateSyntaxError", created
    assert created["field"] == "content[0].body"
    assert time.monotonic() - started < BOUND_SECONDS


def test_reserved_names_are_refused_at_save():
    with pytest.raises(TemplateSyntaxError, match="reserved"):
        rendering.check_syntax("{{ _herald_emit }}", field="body")


def test_ordinary_templates_still_render():
    source = (
        "{% macro item(n) %}<{{ n }}>{% endmacro %}"
        "Hi {{ user.first_name ~ '!' }} {% for i in payload.list %}{{ item(i) }}{% endfor %} "
        "{{ payload.list|join(', ') }} {{ '%05.1f'|format(3.14159) }} {{ '{:>4}'.format('x') }} "
        "{{ 'ab'|replace('a', 'c') }} {{ 'x'.center(5) }}|{{ range(3)|sum }}"
    )
    out = rendering.render(
        source, {"user": {"first_name": "Ada"}, "payload": {"list": [1, 2]}}, field="body"
    )
    assert out == "Hi Ada! <1><2> 1, 2 003.1    x cb   x  |3"


def test_a_render_at_the_output_limit_still_passes():
    out = rendering.render(
        "{% for i in range(5000) %}" + "y" * 100 + "{% endfor %}", {}, field="body"
    )
    assert len(out) == 500_000
