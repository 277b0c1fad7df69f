"""Message templates: per-channel, per-locale content with versions, validation and preview.

A template is found by its slug; a tenant's template with a shared slug overrides the shared one
for that tenant. Every change is saved as a new version, and an old version is restored as a
new one (history is never rewritten).

The package: ``definitions`` (the content, what each channel needs, the limits, the content as
stored), ``validation`` (the checks before saving, the variables content reads), ``storage``
(reading templates as a tenant sees them, creating, changing, restoring and deleting them),
``messages`` (rendering content into the message a channel sends) and ``previews`` (rendering
with sample variables for the editor).
"""

from backend.services.templates.definitions import (
    LOCALE_RE,
    ContentData,
    RenderedMessage,
    TemplateChanges,
    TemplateData,
    template_content,
)
from backend.services.templates.messages import (
    render_content,
    render_content_isolated,
    select_content,
)
from backend.services.templates.previews import SAMPLE_USER, preview_template
from backend.services.templates.storage import (
    create_template,
    delete_template,
    get_template,
    list_templates,
    list_versions,
    restore_template_version,
    update_template,
)
from backend.services.templates.validation import content_variables, validate_content

__all__ = [
    "LOCALE_RE",
    "SAMPLE_USER",
    "ContentData",
    "RenderedMessage",
    "TemplateChanges",
    "TemplateData",
    "content_variables",
    "create_template",
    "delete_template",
    "get_template",
    "list_templates",
    "list_versions",
    "preview_template",
    "render_content",
    "render_content_isolated",
    "restore_template_version",
    "select_content",
    "template_content",
    "update_template",
    "validate_content",
]
