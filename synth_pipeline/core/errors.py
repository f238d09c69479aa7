"""Errors that tell a data engineer exactly what is at fault."""

from __future__ import annotations


class SynthPipelineError(Exception):
    """Base class: every error we raise on purpose."""


class ConfigError(SynthPipelineError):
    """A configuration file or setting is wrong. The message names the file, table, column and
    setting at fault."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        table: str | None = None,
        column: str | None = None,
        setting: str | None = None,
        line: int | None = None,
    ):
        self.file, self.table, self.column, self.setting, self.line = (
            file,
            table,
            column,
            setting,
            line,
        )
        where = []
        if file:
            where.append(f"{file}:{line}" if line else file)
        if table:
            where.append(f"table {table}")
        if column:
            where.append(f"column {column}")
        if setting:
            where.append(f"setting {setting}")
        self.reason = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class DatabaseError(SynthPipelineError):
    """A database could not be reached or used. The URL in the message has its password hidden."""


class ReviewGateError(SynthPipelineError):
    """A table's configuration is not approved for generation, or the approval no longer holds."""

    def __init__(self, table: str, reason: str):
        self.table, self.reason = table, reason
        super().__init__(f"table {table}: generation refused: {reason}")
