"""The stored completion admin's form: its metadata edited as indented JSON and checked as /v1 checks it."""

import json
from typing import Any

from django import forms
from django.forms.fields import InvalidJSONInput

from conversations.core.errors import InvalidInput
from conversations.core.metadata import metadata_check
from conversations.models import StoredCompletion


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value: Any) -> str:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class StoredCompletionForm(forms.ModelForm):
    metadata = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 60, "class": "vLargeTextField"}),
        help_text="A JSON object of up to 16 string pairs (keys up to 64 characters, values up to 512).",
    )

    class Meta:
        model = StoredCompletion
        fields = ["metadata"]

    def clean_metadata(self) -> dict[str, str]:
        try:
            return metadata_check(self.cleaned_data.get("metadata")) or {}
        except InvalidInput as error:
            raise forms.ValidationError(error.message) from error
