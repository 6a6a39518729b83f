"""Importing conversations from the exports people have: ChatGPT's ``conversations.json``, chatweb's
own JSON, and Open WebUI's chat export. All three are a JSON array of conversations.

The file is read twice, streamed (ijson), never loaded whole: a first pass checks that it is one
valid JSON array and counts its entries (so a truncated or malformed file imports nothing, and
progress can say "n of N"); the second converts each entry to a tree of messages and writes them
``IMPORT_BATCH`` conversations per transaction, saving the run's progress after each batch.

Branches stay branches: every message keeps its parent, and the conversation the node that was
current. A conversation imported before (the export's id for it, ``import_key``) is skipped and
counted, so importing the same file twice adds nothing. Imported messages are marked ``imported``:
they have no usage record and no stored completion, so they are never billed nor listed by /v1.
"""
