"""Forms of the pages that are not the chat itself, with help texts in words people read."""

from django.contrib.auth.forms import PasswordChangeForm, UserCreationForm

PASSWORD_HELP = "At least 8 characters; not all digits, not a common password, not like your username."


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].help_text = "Letters, digits and @ . + - _ only."
        self.fields["password1"].help_text = PASSWORD_HELP
        self.fields["password2"].help_text = "The same password again."


class PasswordForm(PasswordChangeForm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].help_text = PASSWORD_HELP
