"""Checks made before a run writes anything, so bad input stops it at the start.

Every table file and ``project.yaml`` is loaded and validated (YAML syntax, generators and their
parameters, disclosure settings, scale), and a file for a table the source no longer has is
refused. Columns that appeared in or vanished from the source are not refused here: the
``reviewed_config`` step refreshes such a file to a draft, naming the columns, and the review
gate then stops generation until someone approves it.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config_files import ProjectFiles
from .errors import ConfigError
from .vocabulary import check_vocabulary_config


def check_configuration(
    files: ProjectFiles, source_tables: Iterable[str], *, copy_vocabulary: bool = True
) -> None:
    """Raise :class:`ConfigError` (naming file, line, table, column, setting) for the first
    problem in the project's configuration files, or return when there is none."""
    if files.exists():
        files.load_project()
    present = {t.lower() for t in source_tables}
    for table in files.tables():
        cfg = files.load_table(table)
        if cfg.kind == "skip" or (cfg.kind == "vocabulary" and not copy_vocabulary):
            continue
        check_vocabulary_config(files, cfg)
        if table not in present:
            raise ConfigError(
                f"the source has no table {table!r} any more; set kind: skip to keep the file "
                "without generating the table, or delete the file",
                file=str(files.table_file(table)),
                table=table,
                setting="table",
            )
