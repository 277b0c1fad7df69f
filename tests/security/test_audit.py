"""The audit log: admin and manager mutations recorded in one place, queryable by admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from backend.db.models import Base
from tests.factories import CREATE_TEMPLATE, template_input, token_for

AUDIT = """
query($filter: AuditFilter, $first: Int!, $after: String) {
  auditLog(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id at actor actorRoles operation arguments outcome error } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def _log(sgql: Any, settings: Any, **variables: Any) -> list[dict[str, Any]]:
    variables.setdefault("first", 100)
    result = await sgql(AUDIT, variables, token=token_for(settings, "admin", sub="auditor"))
    assert "errors" not in result, result
    return [e["node"] for e in result["data"]["auditLog"]["edges"]]


async def test_a_manager_mutation_is_recorded_without_message_content(sgql, sec_settings):
    manager = token_for(sec_settings, "manager", sub="mgr-audit")
    created = await sgql(CREATE_TEMPLATE, {"input": template_input("audited")}, token=manager)
    assert created["data"]["createTemplate"]["__typename"] == "Template"

    [entry] = await _log(sgql, sec_settings, filter={"actor": "mgr-audit"})
    assert entry["operation"] == "createTemplate"
    assert entry["actorRoles"] == ["manager"]
    assert entry["outcome"] == "ok"
    assert entry["error"] is None
    arguments = entry["arguments"]["input"]
    assert arguments["slug"] == "audited"
    email = arguments["content"][0]
    assert email["channel"].upper() == "EMAIL"
    assert email["subject"].endswith("characters]")
    assert email["body"].endswith("characters]")
    text = str(entry["arguments"])
    assert "thanks for joining" not in text and "Hello" not in text
    assert datetime.fromisoformat(entry["at"]) > datetime.now(UTC) - timedelta(minutes=1)


async def test_a_failed_mutation_is_recorded_with_its_error(sgql, sec_settings):
    admin = token_for(sec_settings, "admin", sub="adm-fail")
    result = await sgql('mutation { deleteTemplate(slug: "no-such") { __typename } }', token=admin)
    assert result["data"]["deleteTemplate"]["__typename"] == "NotFoundError"
    [entry] = await _log(sgql, sec_settings, filter={"actor": "adm-fail"})
    assert entry["operation"] == "deleteTemplate"
    assert entry["outcome"] == "NOT_FOUND"
    assert "no-such" in entry["error"]
    assert entry["arguments"] == {"slug": "no-such"}


async def test_refused_attempts_at_manager_mutations_are_recorded(sgql, sec_settings):
    user = token_for(sec_settings, "user", sub="intruder")
    result = await sgql(CREATE_TEMPLATE, {"input": template_input("not-mine")}, token=user)
    assert result["data"]["createTemplate"]["__typename"] == "ForbiddenError"
    [entry] = await _log(sgql, sec_settings, filter={"actor": "intruder"})
    assert (entry["operation"], entry["outcome"]) == ("createTemplate", "FORBIDDEN")


async def test_secrets_are_redacted(sgql, sec_settings):
    admin = token_for(sec_settings, "admin", sub="adm-push")
    await sgql(
        "mutation($i: PushSubscriptionInput!) { registerPushSubscription(input: $i) "
        "{ __typename } }",
        {
            "i": {
                "endpoint": "https://push.example/abc",
                "keys": {"p256dh": "PUBLIC-KEY-MATERIAL", "auth": "AUTH-SECRET"},
            }
        },
        token=admin,
    )
    [entry] = await _log(sgql, sec_settings, filter={"actor": "adm-push"})
    assert entry["arguments"]["input"]["keys"] == "[redacted]"
    assert "AUTH-SECRET" not in str(entry) and "PUBLIC-KEY" not in str(entry)


async def test_ordinary_callers_are_not_recorded(sgql, sec_settings):
    service = token_for(sec_settings, "service", sub="svc-quiet")
    user = token_for(sec_settings, "user", sub="user-quiet")
    await sgql(
        'mutation { sendEvent(input: {type: "x", userIds: ["u"]}) { __typename } }', token=service
    )
    await sgql("mutation { markAllRead { __typename } }", token=user)
    assert await _log(sgql, sec_settings, filter={"actor": "svc-quiet"}) == []
    assert await _log(sgql, sec_settings, filter={"actor": "user-quiet"}) == []


async def test_filters_and_paging(sgql, sec_settings):
    admin = token_for(sec_settings, "admin", sub="adm-pages")
    for slug in ("p-1", "p-2", "p-3"):
        await sgql(f'mutation {{ deleteTemplate(slug: "{slug}") {{ __typename }} }}', token=admin)
    await sgql(CREATE_TEMPLATE, {"input": template_input("p-created")}, token=admin)

    mine = {"actor": "adm-pages"}
    everything = await _log(sgql, sec_settings, filter=mine)
    assert [e["operation"] for e in everything] == ["createTemplate"] + ["deleteTemplate"] * 3

    deletes = await _log(sgql, sec_settings, filter={**mine, "operation": "deleteTemplate"})
    assert [e["arguments"]["slug"] for e in deletes] == ["p-3", "p-2", "p-1"]

    seen: list[str] = []
    after = None
    while True:
        result = await sgql(
            AUDIT,
            {"filter": mine, "first": 1, "after": after},
            token=token_for(sec_settings, "admin"),
        )
        page = result["data"]["auditLog"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [e["id"] for e in everything]

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await _log(sgql, sec_settings, filter={**mine, "since": future}) == []
    assert len(await _log(sgql, sec_settings, filter={**mine, "until": future})) == 4


async def test_only_admins_read_the_audit_log(sgql, sec_settings):
    for role in ("manager", "service", "user"):
        result = await sgql(AUDIT, {"first": 5}, token=token_for(sec_settings, role))
        assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    bad_cursor = await sgql(
        AUDIT, {"first": 5, "after": "bm9wZQ"}, token=token_for(sec_settings, "admin")
    )
    assert bad_cursor["errors"][0]["extensions"]["code"] == "VALIDATION"


async def test_the_migration_matches_the_model(engine):
    def compare(connection: object) -> list[object]:
        context = MigrationContext.configure(
            connection,  # type: ignore[arg-type]
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, reflected, other: (
                    getattr(obj if type_ == "table" else getattr(obj, "table", None), "name", None)
                    == "audit_log"
                ),
            },
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(compare) == []
