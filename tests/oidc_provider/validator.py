"""The provider's claims: the user's name, email and groups; and two clients that misbehave on purpose.

``chatweb-expired`` is issued ID tokens that expired two minutes ago, ``chatweb-elsewhere``
tokens naming another issuer: both signed with the provider's real key, as a clock
skewed provider or a token replayed from another provider would be.
"""

import time

from oauth2_provider.oauth2_validators import OAuth2Validator

EXPIRED_CLIENT = "chatweb-expired"
ELSEWHERE_CLIENT = "chatweb-elsewhere"
OTHER_ISSUER = "http://127.0.0.1:9/another-issuer"


class Validator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "groups"}

    def get_additional_claims(self, request):
        user = request.user
        return {
            "preferred_username": user.username,
            "name": user.get_full_name(),
            "given_name": user.first_name,
            "family_name": user.last_name,
            "email": user.email,
            "email_verified": True,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        if request.client_id == EXPIRED_CLIENT:
            claims["exp"] = int(time.time()) - 120
        elif request.client_id == ELSEWHERE_CLIENT:
            claims["iss"] = OTHER_ISSUER
        return claims, expiration
