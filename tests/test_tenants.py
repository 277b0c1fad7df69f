"""Tenants through the GraphQL API: admins manage them; tokens bound to a tenant (its claim)
read and change only that tenant's templates and campaigns, find another tenant's missing,
are refused when they name it, and are refused every operation not scoped by tenant.

Events, deliveries, inbox items, live notifications, API keys and rendering through the real
worker are in tests/pipeline/test_tenants.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import jwt
import pytest
from sqlalchemy import text

from tests.conftest import schema_differences
from tests.factories import CREATE_TEMPLATE, UPDATE_TEMPLATE, template_input, token_for

SAVE = """mutation($input: SaveTenantInput!) { saveTenant(input: $input) { __typename
  ... on Tenant { id name logoUrl primaryColor createdBy }
  ... on Error { code message field } } }"""
DELETE = """mutation($id: ID!) { deleteTenant(id: $id) { __typename
  ... on DeletedTenant { id } ... on Error { code message field } } }"""
TENANTS = "{ tenants { id name } }"
TEMPLATES = """query($tenant: String) { templates(first: 50, search: "tenant-", tenantId: $tenant) {
  edges { node { slug tenantId name } } } }"""
TEMPLATE = """query($slug: String!, $tenant: String) { template(slug: $slug, tenantId: $tenant) {
  slug tenantId name } }"""
DELETE_TEMPLATE = """mutation($slug: String!, $tenant: String) {
  deleteTemplate(slug: $slug, tenantId: $tenant) { __typename
  ... on DeletedTemplate { slug } ... on Error { code message field } } }"""
PREVIEW = """mutation($slug: String!, $tenant: String) {
  previewTemplate(slug: $slug, channel: IN_APP, tenantId: $tenant) { __typename
  ... on RenderedMessage { title body } ... on Error { code message field } } }"""
CAMPAIGN_FIELDS = """__typename ... on Campaign { id tenantId name status }
  ... on Error { code message field }"""
CREATE_CAMPAIGN = (
    "mutation($input: CampaignInput!) { createCampaign(input: $input) { " + CAMPAIGN_FIELDS + " } }"
)
CAMPAIGN = "query($id: ID!) { campaign(id: $id) { id tenantId } }"
CAMPAIGNS = "{ campaigns(first: 50) { edges { node { id tenantId } } } }"
CANCEL = "mutation($id: ID!) { cancelCampaign(id: $id) { " + CAMPAIGN_FIELDS + " } }"
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message field } } }"""
VIEWER = "{ viewer { id tenantId } }"


def branded(slug: str, title: str) -> dict[str, Any]:
    """A template whose in-app title is ``title`` (Jinja, may read ``tenant``)."""
    return template_input(
        slug,
        content=[{"channel": "IN_APP", "locale": "en", "title": title, "body": "{{ tenant.id }}"}],
    )


async def save(gql: Any, token: str, **tenant: Any) -> dict[str, Any]:
    body = await gql(SAVE, {"input": tenant}, token=token)
    result: dict[str, Any] = body["data"]["saveTenant"]
    return result


@pytest.fixture
def admin(settings: Any) -> str:
    return token_for(settings, "admin", sub="install-admin")


@pytest.fixture
async def two_tenants(gql: Any, admin: str) -> tuple[str, str]:
    """Tenants ``acme`` and ``globex``, and a shared template ``tenant-hello`` that ``acme``
    overrides and ``globex`` does not."""
    for tenant_id, name in (("acme", "Acme"), ("globex", "Globex")):
        saved = await save(gql, admin, id=tenant_id, name=name, primaryColor="#112233")
        assert saved["__typename"] == "Tenant", saved
    shared = await gql(
        CREATE_TEMPLATE, {"input": branded("tenant-hello", "Shared hi")}, token=admin
    )
    assert shared["data"]["createTemplate"]["__typename"] == "Template", shared
    override = {**branded("tenant-hello", "{{ tenant.name }} hi"), "tenantId": "acme"}
    body = await gql(CREATE_TEMPLATE, {"input": override}, token=admin)
    assert body["data"]["createTemplate"]["__typename"] == "Template", body
    return "acme", "globex"


def manager_of(settings: Any, tenant: str) -> str:
    return token_for(settings, "manager", sub=f"mgr-{tenant}", tenant=tenant)


async def test_admins_create_change_and_list_tenants(gql, admin):
    created = await save(
        gql, admin, id="initech", name="Initech", logoUrl="https://i.example/l.png"
    )
    assert created == {
        "__typename": "Tenant",
        "id": "initech",
        "name": "Initech",
        "logoUrl": "https://i.example/l.png",
        "primaryColor": None,
        "createdBy": "install-admin",
    }
    changed = await save(gql, admin, id="initech", name="Initech Ltd", primaryColor="#AABBCC")
    assert (changed["name"], changed["primaryColor"], changed["logoUrl"]) == (
        "Initech Ltd",
        "#AABBCC",
        None,
    )
    listed = (await gql(TENANTS, token=admin))["data"]["tenants"]
    assert {"id": "initech", "name": "Initech Ltd"} in listed


@pytest.mark.parametrize(
    ("tenant", "field"),
    [
        ({"id": "Acme Corp", "name": "Acme"}, "id"),
        ({"id": "-acme", "name": "Acme"}, "id"),
        ({"id": "acme", "name": " "}, "name"),
        ({"id": "acme", "name": "Acme", "logoUrl": "javascript:alert(1)"}, "logoUrl"),
        ({"id": "acme", "name": "Acme", "primaryColor": "red"}, "primaryColor"),
    ],
)
async def test_a_bad_tenant_is_refused_with_the_field(gql, admin, tenant, field):
    saved = await save(gql, admin, **tenant)
    assert (saved["__typename"], saved["field"]) == ("ValidationError", field)


async def test_a_tenant_with_templates_is_not_deleted(gql, admin, two_tenants, sessionmaker):
    opted = {"userId": "u-deleted-tenant", "tenantId": "acme", "disabledChannels": ["SMS"]}
    made = await gql(SET_PREFERENCES, {"input": opted}, token=admin)
    assert made["data"]["setPreferences"]["tenantId"] == "acme", made
    refused = (await gql(DELETE, {"id": "acme"}, token=admin))["data"]["deleteTenant"]
    assert refused["code"] == "CONFLICT" and "templates" in refused["message"]
    gone = await gql(DELETE_TEMPLATE, {"slug": "tenant-hello", "tenant": "acme"}, token=admin)
    assert gone["data"]["deleteTemplate"]["__typename"] == "DeletedTemplate", gone
    deleted = (await gql(DELETE, {"id": "acme"}, token=admin))["data"]["deleteTenant"]
    assert deleted == {"__typename": "DeletedTenant", "id": "acme"}
    missing = (await gql(DELETE, {"id": "acme"}, token=admin))["data"]["deleteTenant"]
    assert missing["code"] == "NOT_FOUND"
    # The opt-outs made within it went with it: the user id's own are left (none here).
    read = await gql(PREFERENCES, {"user": "u-deleted-tenant"}, token=admin)
    assert read["data"]["preferences"]["disabledChannels"] == []
    async with sessionmaker() as session:
        rows = await session.execute(
            text("SELECT count(*) FROM user_preferences WHERE tenant_id = 'acme'")
        )
        assert rows.scalar_one() == 0


async def test_a_token_is_bound_by_its_tenant_claim(gql, settings):
    bound = await gql(VIEWER, token=token_for(settings, "user", sub="u-1", tenant="acme"))
    assert bound["data"]["viewer"] == {"id": "u-1", "tenantId": "acme"}
    unbound = await gql(VIEWER, token=token_for(settings, "user", sub="u-1"))
    assert unbound["data"]["viewer"] == {"id": "u-1", "tenantId": None}


async def test_a_token_whose_tenant_claim_is_no_tenant_id_is_refused(gql, settings):
    secret = settings.jwt_secret.get_secret_value()
    claims = {"sub": "u-1", "type": "access", "exp": 9_999_999_999, "roles": ["manager"]}
    for claim in (["acme"], "ACME", ""):
        token = jwt.encode({**claims, "tenant": claim}, secret, algorithm="HS256")
        body = await gql(VIEWER, token=token)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", claim


@pytest.mark.parametrize(
    "query",
    [
        TENANTS,
        "{ apiKeys { edges { node { id } } } }",
        "{ eventTypes { name } }",
        "{ topics { edges { node { key } } } }",
        "{ auditLog { edges { node { id } } } }",
    ],
)
async def test_a_bound_caller_is_refused_what_no_tenant_scopes(gql, settings, query):
    token = token_for(settings, "admin", "manager", sub="a-1", tenant="acme")
    body = await gql(query, token=token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body


async def test_a_bound_admin_cannot_make_tenants(gql, settings):
    token = token_for(settings, "admin", sub="a-1", tenant="acme")
    refused = await save(gql, token, id="mine", name="Mine")
    assert refused["code"] == "FORBIDDEN"


async def test_templates_a_bound_manager_sees_are_its_tenants_view(gql, settings, two_tenants):
    acme, globex = (manager_of(settings, t) for t in two_tenants)
    body = await gql(TEMPLATES, token=acme)
    assert {"slug": "tenant-hello", "tenantId": "acme", "name": "Welcome"} in [
        e["node"] for e in body["data"]["templates"]["edges"]
    ]
    assert all(e["node"]["tenantId"] in ("acme", None) for e in body["data"]["templates"]["edges"])
    body = await gql(TEMPLATES, token=globex)
    welcome = [
        e["node"] for e in body["data"]["templates"]["edges"] if e["node"]["slug"] == "tenant-hello"
    ]
    assert welcome == [{"slug": "tenant-hello", "tenantId": None, "name": "Welcome"}]
    # Asking for another tenant's view by name is refused, not answered with the own one.
    body = await gql(TEMPLATE, {"slug": "tenant-hello", "tenant": "acme"}, token=globex)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await gql(TEMPLATE, {"slug": "tenant-hello"}, token=globex)
    assert body["data"]["template"]["tenantId"] is None


async def test_a_bound_manager_changes_its_override_never_the_shared_or_anothers(
    gql, settings, admin, two_tenants
):
    acme, globex = (manager_of(settings, t) for t in two_tenants)
    change = {"slug": "tenant-hello", "input": {"name": "Changed"}}
    body = await gql(UPDATE_TEMPLATE, change, token=acme)
    assert body["data"]["updateTemplate"]["name"] == "Changed"
    refused = (await gql(UPDATE_TEMPLATE, change, token=globex))["data"]["updateTemplate"]
    assert refused["code"] == "FORBIDDEN" and "shared" in refused["message"]
    named = await gql(
        'mutation($slug: String!) { updateTemplate(slug: $slug, tenantId: "acme", '
        'input: {name: "Hijack"}) { __typename ... on Error { code } } }',
        {"slug": "tenant-hello"},
        token=globex,
    )
    assert named["data"]["updateTemplate"]["code"] == "FORBIDDEN"
    deleted = (await gql(DELETE_TEMPLATE, {"slug": "tenant-hello"}, token=globex))["data"]
    assert deleted["deleteTemplate"]["code"] == "FORBIDDEN"
    # Unchanged for everyone else: the shared one and acme's override.
    shared = await gql(TEMPLATE, {"slug": "tenant-hello"}, token=admin)
    assert shared["data"]["template"]["name"] == "Welcome"
    override = await gql(TEMPLATE, {"slug": "tenant-hello", "tenant": "acme"}, token=admin)
    assert override["data"]["template"]["name"] == "Changed"


async def test_a_template_of_one_tenant_alone_is_not_found_by_another(gql, settings, two_tenants):
    acme, globex = (manager_of(settings, t) for t in two_tenants)
    made = await gql(CREATE_TEMPLATE, {"input": branded("acme-only", "Hi")}, token=acme)
    assert made["data"]["createTemplate"]["__typename"] == "Template"
    assert (await gql(TEMPLATE, {"slug": "acme-only"}, token=globex))["data"]["template"] is None
    change = {"slug": "acme-only", "input": {"name": "Mine now"}}
    refused = (await gql(UPDATE_TEMPLATE, change, token=globex))["data"]["updateTemplate"]
    assert refused["code"] == "NOT_FOUND"
    # The slug is free in globex: a template of its own does not collide.
    own = await gql(CREATE_TEMPLATE, {"input": branded("acme-only", "Globex")}, token=globex)
    assert own["data"]["createTemplate"]["__typename"] == "Template"


async def test_a_bound_manager_cannot_create_for_another_tenant(gql, settings, two_tenants):
    made = await gql(
        CREATE_TEMPLATE,
        {"input": {**branded("elsewhere", "Hi"), "tenantId": "globex"}},
        token=manager_of(settings, "acme"),
    )
    assert made["data"]["createTemplate"]["code"] == "FORBIDDEN"


async def test_an_unknown_tenant_is_not_found(gql, admin, settings):
    made = await gql(
        CREATE_TEMPLATE, {"input": {**branded("x", "Hi"), "tenantId": "nobody"}}, token=admin
    )
    assert made["data"]["createTemplate"] | {"message": None} == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "message": None,
        "field": "tenantId",
    }
    sent = await gql(
        SEND,
        {"input": {"type": "user_registered", "userIds": ["u-1"], "tenantId": "nobody"}},
        token=token_for(settings, "service", sub="svc"),
    )
    assert sent["data"]["sendEvent"]["code"] == "NOT_FOUND"
    assert sent["data"]["sendEvent"]["field"] == "tenantId"


async def test_a_bound_service_cannot_send_for_another_tenant(gql, settings, two_tenants):
    sent = await gql(
        SEND,
        {"input": {"type": "user_registered", "userIds": ["u-1"], "tenantId": "globex"}},
        token=token_for(settings, "service", sub="svc", tenant="acme"),
    )
    assert (sent["data"]["sendEvent"]["code"], sent["data"]["sendEvent"]["field"]) == (
        "FORBIDDEN",
        "tenantId",
    )


async def test_previews_render_a_tenants_override_with_its_branding(gql, admin, two_tenants):
    acme = await gql(PREVIEW, {"slug": "tenant-hello", "tenant": "acme"}, token=admin)
    assert acme["data"]["previewTemplate"] == {
        "__typename": "RenderedMessage",
        "title": "Acme hi",
        "body": "acme",
    }
    shared = await gql(PREVIEW, {"slug": "tenant-hello"}, token=admin)
    assert shared["data"]["previewTemplate"]["title"] == "Shared hi"
    # Without a tenant, `tenant` is there and empty (the sandbox's undefined is strict).
    assert shared["data"]["previewTemplate"]["body"] == ""


async def test_campaigns_of_another_tenant_do_not_exist_for_a_bound_manager(
    gql, settings, admin, two_tenants
):
    acme, globex = (manager_of(settings, t) for t in two_tenants)
    draft = {
        "name": "Spring",
        "templateSlug": "tenant-hello",
        "channels": ["IN_APP"],
        "audience": {"userIds": ["u-1"]},
        "draft": True,
    }
    made = (await gql(CREATE_CAMPAIGN, {"input": draft}, token=acme))["data"]["createCampaign"]
    assert (made["__typename"], made["tenantId"]) == ("Campaign", "acme"), made
    assert (await gql(CAMPAIGN, {"id": made["id"]}, token=globex))["data"]["campaign"] is None
    listed = (await gql(CAMPAIGNS, token=globex))["data"]["campaigns"]["edges"]
    assert made["id"] not in [e["node"]["id"] for e in listed]
    cancel = (await gql(CANCEL, {"id": made["id"]}, token=globex))["data"]["cancelCampaign"]
    assert cancel["code"] == "NOT_FOUND"
    # The owner and the install's admin still see it, untouched.
    assert (await gql(CAMPAIGN, {"id": made["id"]}, token=acme))["data"]["campaign"]["id"]
    mine = (await gql(CAMPAIGNS, token=acme))["data"]["campaigns"]["edges"]
    assert {e["node"]["tenantId"] for e in mine} == {"acme"}
    everyone = (await gql(CAMPAIGN, {"id": made["id"]}, token=admin))["data"]["campaign"]
    assert everyone["tenantId"] == "acme"
    named = await gql(CREATE_CAMPAIGN, {"input": {**draft, "tenantId": "acme"}}, token=globex)
    assert named["data"]["createCampaign"]["code"] == "FORBIDDEN"


async def test_a_bound_manager_reads_only_its_own_preferences(gql, settings):
    token = token_for(settings, "manager", sub="mgr-acme", tenant="acme")
    own = await gql("{ preferences { userId } }", token=token)
    assert own["data"]["preferences"]["userId"] == "mgr-acme"
    other = await gql('{ preferences(userId: "u-someone") { userId } }', token=token)
    assert other["errors"][0]["extensions"]["code"] == "FORBIDDEN"


PREFERENCES = """query($user: ID, $tenant: String) { preferences(userId: $user, tenantId: $tenant) {
  userId tenantId disabledChannels disabledEventTypes quietHours { start end } } }"""
SET_PREFERENCES = """mutation($input: PreferencesInput!) { setPreferences(input: $input) {
  __typename ... on Preferences { userId tenantId disabledChannels disabledEventTypes
  quietHours { start end } } ... on Error { code message field } } }"""


async def test_a_user_s_opt_outs_within_a_tenant_are_apart_from_their_own(
    gql, settings, admin, two_tenants
):
    user = "u-prefs-acme"
    in_acme = token_for(settings, "user", sub=user, tenant="acme")
    unbound = token_for(settings, "user", sub=user)
    # Within acme (a token bound to it): the opt-outs are acme's; quiet hours are the user's.
    set_in_acme = {
        "disabledChannels": ["EMAIL"],
        "disabledEventTypes": ["digest"],
        "quietHours": {"start": "22:00", "end": "07:00"},
    }
    made = await gql(SET_PREFERENCES, {"input": set_in_acme}, token=in_acme)
    assert made["data"]["setPreferences"] == {
        "__typename": "Preferences",
        "userId": user,
        "tenantId": "acme",
        "disabledChannels": ["EMAIL"],
        "disabledEventTypes": ["digest"],
        "quietHours": {"start": "22:00", "end": "07:00"},
    }
    own = (await gql(PREFERENCES, token=unbound))["data"]["preferences"]
    assert own["tenantId"] is None and own["disabledChannels"] == []
    assert own["disabledEventTypes"] == [] and own["quietHours"] == {
        "start": "22:00",
        "end": "07:00",
    }
    # Globex has none of them; the install's admin reads each tenant's apart.
    globex = await gql(PREFERENCES, {"user": user, "tenant": "globex"}, token=admin)
    assert globex["data"]["preferences"]["disabledChannels"] == []
    acme = await gql(PREFERENCES, {"user": user, "tenant": "acme"}, token=admin)
    assert acme["data"]["preferences"]["disabledChannels"] == ["EMAIL"]
    # A bound caller names no other tenant; an unknown tenant is not found.
    other = await gql(
        SET_PREFERENCES, {"input": {"tenantId": "globex", "disabledChannels": []}}, token=in_acme
    )
    assert other["data"]["setPreferences"]["code"] == "FORBIDDEN"
    unknown = await gql(
        SET_PREFERENCES, {"input": {"userId": user, "tenantId": "nope"}}, token=admin
    )
    assert unknown["data"]["setPreferences"]["code"] == "NOT_FOUND"
    assert unknown["data"]["setPreferences"]["field"] == "tenantId"


async def test_an_event_of_a_tenant_honours_the_user_s_own_opt_outs_and_those_made_in_it(engine):
    from backend.db.models import UserPreferences
    from backend.db.repositories.preferences import preferences_of
    from backend.db.session import create_sessionmaker

    both, only_there = f"u-layered-{uuid.uuid4()}", f"u-only-in-acme-{uuid.uuid4()}"
    async with create_sessionmaker(engine)() as session:
        session.add_all(
            [
                UserPreferences(
                    user_id=both,
                    disabled_channels=["sms"],
                    disabled_event_types=["news"],
                    timezone="Europe/Paris",
                ),
                UserPreferences(user_id=both, tenant_id="acme", disabled_channels=["email", "sms"]),
                UserPreferences(user_id=only_there, tenant_id="acme", disabled_topics=["deals"]),
            ]
        )
        await session.commit()
    for_acme = await preferences_of(engine, [both, only_there, "u-none"], "acme")
    assert set(for_acme) == {both, only_there}
    assert for_acme[both].disabled_channels == ["sms", "email"]
    assert for_acme[both].disabled_event_types == ["news"]
    assert for_acme[both].timezone == "Europe/Paris"
    assert for_acme[only_there].disabled_topics == ["deals"]
    assert for_acme[only_there].disabled_channels == [] and for_acme[only_there].timezone is None
    for tenant in ("globex", None):
        elsewhere = await preferences_of(engine, [both, only_there], tenant)
        assert set(elsewhere) == {both}
        assert elsewhere[both].disabled_channels == ["sms"]


async def test_without_tenants_templates_and_events_are_as_before(gql, admin):
    made = await gql(CREATE_TEMPLATE, {"input": branded("plain", "Hi")}, token=admin)
    assert made["data"]["createTemplate"]["__typename"] == "Template"
    body = await gql(TEMPLATE, {"slug": "plain"}, token=admin)
    assert body["data"]["template"] == {"slug": "plain", "tenantId": None, "name": "Welcome"}
    again = await gql(CREATE_TEMPLATE, {"input": branded("plain", "Hi")}, token=admin)
    assert again["data"]["createTemplate"]["code"] == "CONFLICT"


async def test_the_migration_creates_the_tables_of_the_models(engine):
    # inbox_items is left out: its partial index ix_inbox_items_unread has no model (as before).
    tables = {"tenants", "templates", "campaigns", "api_keys", "user_preferences"}
    assert await schema_differences(engine, tables) == []
