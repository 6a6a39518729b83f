"""Full-text search indexes (conversations.library.searchindex): PostgreSQL tsvector columns with GIN
indexes, or SQLite FTS5 tables with triggers."""

from django.db import migrations


def forwards(apps, schema_editor) -> None:
    from conversations.library.searchindex import searchindex_ensure

    searchindex_ensure(connection=schema_editor.connection)


def backwards(apps, schema_editor) -> None:
    from conversations.library.searchindex import INDEXED, fts_table

    with schema_editor.connection.cursor() as cursor:
        for table, _column in INDEXED:
            if schema_editor.connection.vendor == "postgresql":
                cursor.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
            elif schema_editor.connection.vendor == "sqlite":
                for suffix in ("insert", "delete", "update"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {fts_table(table)}_{suffix}")
                cursor.execute(f"DROP TABLE IF EXISTS {fts_table(table)}")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0019_library")]
    operations = [migrations.RunPython(forwards, backwards)]
