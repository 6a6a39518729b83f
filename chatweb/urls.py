from django.contrib import admin
from django.urls import include, path

from conversations import sso, views

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new", views.conversation_new, name="conversation_new"),
    path("c/<int:conversation_id>/", views.conversation_detail, name="conversation_detail"),
    path("c/<int:conversation_id>/messages", views.conversation_earlier_messages, name="conversation_earlier_messages"),
    path("c/<int:conversation_id>/messages/<int:message_id>", views.message_detail, name="message_detail"),
    path("c/<int:conversation_id>/messages/<int:message_id>.md", views.message_markdown, name="message_markdown"),
    path("c/<int:conversation_id>/rename", views.conversation_rename, name="conversation_rename"),
    path("c/<int:conversation_id>/delete", views.conversation_delete, name="conversation_delete"),
    path("c/<int:conversation_id>/settings", views.conversation_settings, name="conversation_settings"),
    path("presets/", views.presets, name="presets"),
    path("presets/<int:preset_id>", views.preset_edit, name="preset_edit"),
    path("presets/defaults", views.chat_defaults_set, name="chat_defaults_set"),
    path("files/", views.attachment_create, name="attachment_create"),
    path("files/<int:attachment_id>", views.attachment_file, name="attachment_file"),
    path("files/<int:attachment_id>/delete", views.attachment_delete, name="attachment_delete"),
    path("account/theme", views.theme_set, name="theme_set"),
    path("account/keys/", views.api_keys, name="api_keys"),
    path("account/keys/<int:key_id>/revoke", views.api_key_revoke_view, name="api_key_revoke"),
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage_export"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/changed/", views.password_changed, name="password_changed"),
    path("accounts/signup/", views.signup, name="signup"),
    path("oidc/authenticate/", sso.SsoStartView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", sso.SsoCallbackView.as_view(), name="oidc_authentication_callback"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("v1/", include("conversations.api.urls")),
]
