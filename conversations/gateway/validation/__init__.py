"""Request checks for /v1, after OpenAI's CreateChatCompletionRequest: a clear 400 instead of an upstream failure.
``request`` checks a whole body; the other modules check its parts, from ``values``' single values up."""
