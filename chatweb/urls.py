from django.contrib import admin
from django.urls import include, path

from conversations import library_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new", views.conversation_new, name="conversation_new"),
    path("c/<int:conversation_id>/", views.conversation_detail, name="conversation_detail"),
    path("c/<int:conversation_id>/messages", views.conversation_earlier_messages, name="conversation_earlier_messages"),
    path("c/<int:conversation_id>/messages/<int:message_id>", views.message_detail, name="message_detail"),
    path("c/<int:conversation_id>/rename", views.conversation_rename, name="conversation_rename"),
    path("c/<int:conversation_id>/delete", views.conversation_delete, name="conversation_delete"),
    path("c/<int:conversation_id>/pin", library_views.conversation_pin, name="conversation_pin"),
    path("c/<int:conversation_id>/archive", library_views.conversation_archive, name="conversation_archive"),
    path("c/<int:conversation_id>/move", library_views.conversation_move, name="conversation_move"),
    path("c/<int:conversation_id>/at/<int:message_id>", library_views.conversation_open_at, name="conversation_open_at"),
    path("c/bulk", library_views.conversations_bulk, name="conversations_bulk"),
    path("chats", library_views.sidebar_page, name="sidebar_page"),
    path("search/", library_views.search, name="search"),
    path("archived/", library_views.archived, name="archived"),
    path("folders/", library_views.folder_create, name="folder_create"),
    path("folders/<int:folder_id>/delete", library_views.folder_delete, name="folder_delete"),
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
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("v1/", include("conversations.api.urls")),
]
