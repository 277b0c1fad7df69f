"""webhook secrets in the Standard Webhooks form; the deprecated signature header per endpoint

Revision ID: 0009
Revises: 0008

An existing secret ``S`` (the HMAC key was its UTF-8 bytes) becomes ``whsec_`` + base64(UTF-8
of ``S``): the same key, so the ``Herald-Signature`` its receiver checks does not change, and
the ``whsec_`` form is what the Standard Webhooks libraries take. Existing endpoints keep the
deprecated header (``legacy_signature`` true); new ones default to without.
"""

import base64
import binascii

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# The whsec_ form of a former ``secret``. PostgreSQL's base64 breaks lines every 76
# characters: the breaks are removed.
WHSEC_OF_SECRET = "'whsec_' || translate(encode(convert_to(secret, 'UTF8'), 'base64'), E'\\n', '')"


def upgrade() -> None:
    op.alter_column("webhook_endpoints", "secret", type_=sa.Text(), existing_nullable=False)
    op.execute(f"UPDATE webhook_endpoints SET secret = {WHSEC_OF_SECRET}")
    op.add_column(
        "webhook_endpoints",
        sa.Column("legacy_signature", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.alter_column("webhook_endpoints", "legacy_signature", server_default=sa.false())


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "legacy_signature")
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, secret FROM webhook_endpoints")).all()
    for endpoint_id, secret in rows:
        # A key that is not UTF-8 text (made after the upgrade) has no former form: such an
        # endpoint keeps its whsec_ string, which the former code uses as a passphrase.
        try:
            former = base64.b64decode(secret.removeprefix("whsec_"), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        if len(former) <= 200:
            connection.execute(
                sa.text("UPDATE webhook_endpoints SET secret = :secret WHERE id = :id"),
                {"secret": former, "id": endpoint_id},
            )
    op.alter_column("webhook_endpoints", "secret", type_=sa.String(200), existing_nullable=False)
