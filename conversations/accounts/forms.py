"""Forms of the pages that are not the chat itself, with help texts in words people read."""

import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.auth.forms import PasswordChangeForm, UserCreationForm
from django.contrib.auth.models import User
from django.utils import timezone

from conversations.accounts.selectors import chat_model_list
from conversations.models import ChatModel

PASSWORD_HELP = "At least 8 characters; not all digits, not a common password, not like your username."

if TYPE_CHECKING:  # Django's forms take no type arguments at run time; django-stubs' do.
    _UserCreationForm = UserCreationForm[User]
    _ModelMultipleChoiceField = forms.ModelMultipleChoiceField[ChatModel]
else:
    _UserCreationForm = UserCreationForm
    _ModelMultipleChoiceField = forms.ModelMultipleChoiceField


class SignupForm(_UserCreationForm):
    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined,misc]  # django-stubs omit UserCreationForm.Meta
        fields = ("username",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].help_text = "Letters, digits and @ . + - _ only."
        self.fields["password1"].help_text = PASSWORD_HELP
        self.fields["password2"].help_text = "The same password again."


class PasswordForm(PasswordChangeForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].help_text = PASSWORD_HELP


class ChatModelChoices(_ModelMultipleChoiceField):
    """Models ticked by their label."""

    def label_from_instance(self, obj: ChatModel) -> str:
        return obj.label


class ApiKeyForm(forms.Form):
    """A new API key's name and scopes; every bad value gets a message next to its field."""

    name = forms.CharField(
        max_length=100,
        help_text="Such as the app that will use it.",
        error_messages={"required": "Give the key a name, such as the app that will use it."},
    )
    expires_on = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. The key works until the end of this day (UTC).",
    )
    models = ChatModelChoices(
        queryset=ChatModel.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every model you may use.",
    )
    monthly_budget = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
        help_text="Optional. USD per calendar month (UTC).",
    )
    requests_per_minute = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1, help_text="Optional.")
    read_only = forms.BooleanField(
        required=False,
        help_text="Can list and read stored completions and models; cannot create completions.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models = self.fields["models"]  # the form's copy of the field above
        assert isinstance(models, ChatModelChoices)
        models.queryset = chat_model_list(user=user)
        self.fields["models"].error_messages["invalid_choice"] = "“%(value)s” is not a model you may use."
        self.fields["models"].error_messages["invalid_pk_value"] = "“%(pk)s” is not a model you may use."

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the key a name, such as the app that will use it.")
        return name

    def clean_expires_on(self) -> datetime.date | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day < timezone.now().date():
            raise forms.ValidationError("This date is in the past. Pick today or later, or leave it empty.")
        return day

    @property
    def expires_at(self) -> datetime.datetime | None:
        """The last moment of the chosen day, UTC."""
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return datetime.datetime.combine(day, datetime.time.max, tzinfo=datetime.UTC)
