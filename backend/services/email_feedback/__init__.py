"""What email providers say back about sent mail: bounces and complaints.

Each source turns its own format into :class:`Feedback` items after checking that the
provider sent it:

- ``ses``: Amazon SES notifications delivered by SNS (SNS message signatures, versions 1 and 2);
- ``sendgrid``: the SendGrid Event Webhook (ECDSA P-256 signature over timestamp + body);
- ``postmark``: Postmark bounce and spam-complaint webhooks (HTTP basic auth: Postmark signs
  nothing);
- ``mailgun``: Mailgun webhooks (HMAC-SHA256 of timestamp + token, each token once);
- ``dsn``: delivery status notifications (RFC 3464) and complaint reports (ARF, RFC 5965)
  received over SMTP by ``herald bounces``.

``recording`` applies them: the delivery moves to ``bounced`` or ``complained`` (a soft bounce
only adds a timeline entry), a hard bounce or a complaint suppresses the address
(``backend.services.suppressions``), and the change is announced like any other.
"""

from backend.services.email_feedback.recording import (
    Feedback,
    FeedbackKind,
    FeedbackRecorder,
    FeedbackSummary,
    delivery_id_from_message_id,
    delivery_id_from_verp,
)

__all__ = [
    "Feedback",
    "FeedbackKind",
    "FeedbackRecorder",
    "FeedbackSummary",
    "delivery_id_from_message_id",
    "delivery_id_from_verp",
]
