"""One completion's life, the same for the chat and /v1: route, reserve, call, settle, store, log.

The chat generation (``chat.generation``) and the gateway (``gateway.relay``)
both run a completion through here. A ``Metered`` completion knows its model, its
usage reservation and the deployments to try (``providers.routes``). The call falls
back to the next deployment when one fails before any content reached the caller: it
could not connect or timed out, answered 429, 5xx or another failure that is not the
caller's (400, 413 and 422 are, and are not retried elsewhere), or its stream broke
before its first content. Once content has been passed on, a failure ends the
completion. When every deployment of a model with several failed, the model is
unavailable for now (``DeploymentsExhausted``); with a single one, its own error is
kept, as it always was.

Every completion ends settled (its usage record names the deployment that answered),
optionally stored (with the attempts that failed), and logged as one
``chatweb.completions`` line with one status vocabulary: ``completed``, ``error``,
``stopped``, ``interrupted``.
"""
