from django.urls import path, re_path

from . import views

urlpatterns = [
    path("models", views.models_list),
    path("models/<path:model>", views.models_retrieve),
    path("chat/completions", views.chat_completions),
    re_path(r"^(?P<rest>.*)$", views.not_found),
]
