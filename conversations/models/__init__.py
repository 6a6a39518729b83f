"""chatweb's data, one module per domain, re-exported so ``from conversations.models import X`` works."""

from conversations.models.access import (
    ApiKey,
    GroupPolicy,
    ModelGrant,
    SiteSettings,
    SsoIdentity,
    UserLimits,
    UserPreferences,
)
from conversations.models.catalog import (
    ChatModel,
    Deployment,
    ModelAlias,
    ModelPrice,
    Provider,
)
from conversations.models.chats import (
    ChatSettings,
    Conversation,
    Message,
    Preset,
    ReasoningEffort,
)
from conversations.models.files import EXTENSIONS, Attachment
from conversations.models.ledger import StoredCompletion, UsageRecord
from conversations.models.library import Folder, ImportRun, SharedLink

__all__ = [
    "EXTENSIONS",
    "ApiKey",
    "Attachment",
    "ChatModel",
    "ChatSettings",
    "Conversation",
    "Deployment",
    "Folder",
    "GroupPolicy",
    "ImportRun",
    "Message",
    "ModelAlias",
    "ModelGrant",
    "ModelPrice",
    "Preset",
    "Provider",
    "ReasoningEffort",
    "SharedLink",
    "SiteSettings",
    "SsoIdentity",
    "StoredCompletion",
    "UsageRecord",
    "UserLimits",
    "UserPreferences",
]
