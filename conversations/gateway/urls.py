from django.urls import path, re_path

from conversations.gateway import stored, views

urlpatterns = [
    path("models", views.models_list),
    path("models/<path:model>", views.models_retrieve),
    path("chat/completions", stored.chat_completions),
    path("chat/completions/<str:completion_id>", stored.completion_detail),
    path("chat/completions/<str:completion_id>/messages", stored.completion_messages),
    re_path(r"^(?P<rest>.*)$", views.not_found),
]
