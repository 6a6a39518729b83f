from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conversations"
    verbose_name = "Chat"

    def ready(self) -> None:
        from django.conf import settings
        from django.core.signals import setting_changed
        from django.db.models.signals import post_delete, post_save

        from .models import ApiKey, ChatModel, Deployment, ModelAlias, ModelPrice, Provider, UserLimits
        from .services.rowcache import rowcache_clear

        cached = (ApiKey, ChatModel, Deployment, ModelAlias, ModelPrice, Provider, UserLimits, settings.AUTH_USER_MODEL)
        for model in cached:
            post_save.connect(rowcache_clear, sender=model, dispatch_uid=f"rowcache-save-{model}")
            post_delete.connect(rowcache_clear, sender=model, dispatch_uid=f"rowcache-delete-{model}")
        setting_changed.connect(rowcache_clear, dispatch_uid="rowcache-settings")  # tests' site-wide limits
