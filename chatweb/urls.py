from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from conversations import views

urlpatterns = [
    path("", views.home, name="home"),
    path("c/new", views.conversation_new, name="conversation_new"),
    path("c/<int:conversation_id>/", views.conversation_detail, name="conversation_detail"),
    path("c/<int:conversation_id>/rename", views.conversation_rename, name="conversation_rename"),
    path("c/<int:conversation_id>/delete", views.conversation_delete, name="conversation_delete"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("admin/", admin.site.urls),
]
