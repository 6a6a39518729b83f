"""An import run from start to end: created, its file kept, imported in a background thread batch by
batch, and finished or failed. Its own module because it is the only one that holds a run's state."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from conversations.library.imports.checks import import_entries, import_file_check, json_error, rewind
from conversations.library.imports.entries import entry_read
from conversations.library.imports.imported import ImportedConversation, UnreadableEntry
from conversations.library.imports.write import batch_write
from conversations.models import ImportRun

log = logging.getLogger(__name__)

NOTES_KEPT = 5


def import_run_create(*, user: User, filename: str, sha256: str, total: int) -> tuple[ImportRun, ImportRun | None]:
    """A new run, and the last finished run of the same file by this user if there is one (to say so)."""
    before = ImportRun.objects.filter(user=user, sha256=sha256, status=ImportRun.Status.DONE).first()
    run = ImportRun.objects.create(user=user, filename=filename[:255], sha256=sha256, total=total)
    return run, before


def import_run_process(*, run: ImportRun, source: IO[bytes]) -> ImportRun:
    """Import every conversation of ``source`` for the run's user, a batch per transaction.

    A failure part-way (the database, a crash) leaves the batches before it imported and says so in
    ``run.error``; importing the file again adds only what is missing.
    """
    user = run.user
    batch: list[ImportedConversation] = []
    rewind(source)
    try:
        for entry in import_entries(source):
            try:
                conversation = entry_read(entry)
            except UnreadableEntry as exc:
                run.skipped += 1
                if run.notes.count("\n") < NOTES_KEPT:
                    run.notes += f"Entry {run.imported + run.duplicates + run.skipped}: {exc}\n"
                continue
            run.format = run.format or conversation.format
            batch.append(conversation)
            if len(batch) >= settings.IMPORT_BATCH:
                batch_write(run=run, user=user, batch=batch)
                batch = []
        if batch:
            batch_write(run=run, user=user, batch=batch)
    except Exception as exc:  # the run must end, whatever stopped it; what was written stays and is counted
        log.exception("import %s stopped", run.pk)
        run.status = ImportRun.Status.FAILED
        run.error = f"The import stopped: {json_error(exc)}."
    else:
        run.status = ImportRun.Status.DONE
    run.finished_at = timezone.now()
    run.save()
    return run


def import_path(run: ImportRun) -> Path:
    return Path(settings.DATA_DIR) / "imports" / f"{run.pk}.json"


def import_start(*, user: User, upload: IO[bytes], size: int, filename: str) -> tuple[ImportRun, ImportRun | None]:
    """Check the uploaded file, keep it, and import it in a thread of its own (the request returns at once).

    Returns the run (its page shows the progress) and an earlier finished run of the same file, if any.
    """
    sha256, total = import_file_check(upload=upload, size=size)
    run, before = import_run_create(user=user, filename=filename, sha256=sha256, total=total)
    path = import_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as kept:
        for chunk in iter(lambda: upload.read(1 << 20), b""):
            kept.write(chunk)
    transaction.on_commit(
        lambda: threading.Thread(target=_import_work, args=(run.pk,), daemon=True, name=f"import-{run.pk}").start()
    )
    return run, before


def _import_work(run_id: int) -> None:
    run = ImportRun.objects.select_related("user").get(pk=run_id)
    path = import_path(run)
    try:
        with path.open("rb") as source:
            import_run_process(run=run, source=source)
    finally:
        path.unlink(missing_ok=True)
        db_connection.close()
