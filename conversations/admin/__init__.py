"""Admin: providers and models, site settings, every conversation and stored completion for review,
usage (prices, per-user limits, the ledger and a usage report), and access (group policies, models
granted to users, API keys). Importing registers them all."""

from conversations.admin import access, chat, stored, usage  # noqa: F401
