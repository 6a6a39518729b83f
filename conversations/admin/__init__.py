"""Admin: providers and models, site settings, every conversation and stored completion for review,
and usage: prices, per-user limits, the ledger and a usage report. Importing registers them all."""

from . import chat, stored, usage  # noqa: F401
