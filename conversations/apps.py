from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"
    verbose_name = "Chat"

    def ready(self) -> None:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.core.signals import setting_changed
        from django.db.models.signals import (
            m2m_changed,
            post_delete,
            post_migrate,
            post_save,
        )

        from conversations.core.rowcache import rowcache_clear
        from conversations.models import (
            ApiKey,
            ChatModel,
            Deployment,
            GroupPolicy,
            ModelAlias,
            ModelGrant,
            ModelPrice,
            Provider,
            SiteSettings,
            UserLimits,
        )

        cached = (
            ApiKey,
            ChatModel,
            Deployment,
            ModelAlias,
            ModelPrice,
            Provider,
            UserLimits,
            GroupPolicy,
            ModelGrant,
            SiteSettings,
            Group,
            settings.AUTH_USER_MODEL,
        )
        for model in cached:
            post_save.connect(rowcache_clear, sender=model, dispatch_uid=f"rowcache-save-{model}")
            post_delete.connect(rowcache_clear, sender=model, dispatch_uid=f"rowcache-delete-{model}")
        # Who is in which group, and which models a group or key allows: access and limits follow them.
        for through in (
            get_user_model().groups.through,
            GroupPolicy.allowed_models.through,
            ApiKey.allowed_models.through,
        ):
            m2m_changed.connect(rowcache_clear, sender=through, dispatch_uid=f"rowcache-m2m-{through}")
        setting_changed.connect(rowcache_clear, dispatch_uid="rowcache-settings")  # tests' site-wide limits
        post_migrate.connect(_search_index_check, sender=self, dispatch_uid="searchindex-ensure")


def _search_index_check(*, using: str, **kwargs) -> None:
    """After every migrate: SQLite rebuilds a table for some schema changes and drops its triggers with it."""
    from django.db import connections

    from conversations.library.searchindex import INDEXED, searchindex_ensure

    connection = connections[using]
    if connection.vendor == "sqlite" and INDEXED[0][0] in connection.introspection.table_names():
        searchindex_ensure(connection=connection)
