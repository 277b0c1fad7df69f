"""Recipients: what Herald keeps of each user, and the addresses Herald owns for them.

A recipient row (PostgreSQL) holds the profile fields Herald uses. The auth service stays the
source of truth for what it holds: a recipient is filled from it on first use and fetched again
once older than ``HERALD_RECIPIENT_MAX_AGE_SECONDS`` (:class:`RecipientStore`, the layer the
:class:`~backend.services.users.UserDirectory` reads between its Redis cache and the auth
service), or imported in bulk by a sync (``herald recipients sync``, the ``syncRecipients``
mutation). Services may also identify recipients the auth service does not know, and clients
register their own addresses: Web Push subscriptions, mobile device tokens, chat ids.

The package: ``profiles`` (the profile store, reading recipients, identifying them),
``addresses`` (checking, registering, disabling and showing addresses) and ``sync`` (the
import of the auth service's user list, as a resumable job).
"""

from backend.services.recipients.addresses import (
    AddressInput,
    AddressKind,
    chat_address,
    disable_addresses,
    disable_web_push,
    display_value,
    mark_web_push_used,
    mobile_push_address,
    register_address,
    remove_address,
    web_push_address,
    webhook_address,
)
from backend.services.recipients.profiles import (
    READERS,
    WRITERS,
    ProfileInput,
    RecipientStore,
    RecipientView,
    get_recipient,
    identify_recipient,
    list_recipients,
    profile_of,
)
from backend.services.recipients.sync import (
    SyncStatus,
    fail_sync,
    get_sync,
    is_stalled,
    queue_sync,
    request_sync,
    resume_stalled,
    run_sync,
    start_sync,
    sync_now,
)

__all__ = [
    "READERS",
    "WRITERS",
    "AddressInput",
    "AddressKind",
    "ProfileInput",
    "RecipientStore",
    "RecipientView",
    "SyncStatus",
    "chat_address",
    "disable_addresses",
    "disable_web_push",
    "display_value",
    "fail_sync",
    "get_recipient",
    "get_sync",
    "identify_recipient",
    "is_stalled",
    "list_recipients",
    "mark_web_push_used",
    "mobile_push_address",
    "profile_of",
    "queue_sync",
    "register_address",
    "remove_address",
    "request_sync",
    "resume_stalled",
    "run_sync",
    "start_sync",
    "sync_now",
    "web_push_address",
    "webhook_address",
]
