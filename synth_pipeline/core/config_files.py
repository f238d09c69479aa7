"""Reading and writing the configuration files: YAML in and out (errors naming file and line),
written atomically, and one project's folder of files (:class:`ProjectFiles`).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from .config import (
    PROJECT_FILE,
    ProjectConfig,
    TableConfig,
    table_config_json_schema,
)
from .errors import ConfigError
from .files import atomic_write_text
from .generators import CATALOGUE
from .schema import unusable_name

# ---------------------------------------------------------------------------------------------
# Reading and writing


# libyaml's C loader and dumper when PyYAML has them: ten times faster on these files
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


def _represent_dict(dumper, data: dict) -> yaml.Node:
    small = len(data) <= 3 and all(not isinstance(v, dict | list) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=small)


def _represent_list(dumper, data: list) -> yaml.Node:
    flat = len(data) <= 24 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"YAML syntax error: {_yaml_problem(exc)}", file=str(path), line=_yaml_line(exc)
        ) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened is not None:
        problem += f" ({context.removeprefix('while ')} that starts on line {opened.line + 1})"
    return problem


def _yaml_line(exc: yaml.YAMLError) -> int | None:
    """The line of the break. PyYAML marks where it noticed it: for a bracket or a quote left
    open that is a later line, so the line where the unclosed part starts is given instead."""
    mark = getattr(exc, "problem_mark", None)
    context, opened = getattr(exc, "context", None) or "", getattr(exc, "context_mark", None)
    if opened is not None and ("flow" in context or "quoted" in context):
        return opened.line + 1
    return mark.line + 1 if mark is not None else None


def _raise_validation(exc: ValidationError, path: Path, table: str | None) -> None:
    first = exc.errors()[0]
    loc = [str(x) for x in first["loc"]]
    column = None
    setting = ".".join(loc) if loc else None
    if len(loc) >= 2 and loc[0] == "columns":
        column = loc[1]
        setting = ".".join(loc[2:]) or None
    more = len(exc.errors()) - 1
    msg = first["msg"] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    raise ConfigError(msg, file=str(path), table=table, column=column, setting=setting) from None


def load_project(path: Path) -> ProjectConfig:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings", file=str(path))
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, path, None)
        raise  # unreachable


_LOADED: dict[str, tuple[tuple[int, int], TableConfig, bytes]] = {}


def load_table_config(path: Path, *, shared: bool = False) -> TableConfig:
    """Load and fully validate one table file, generators and their parameters included.

    Parsed files are remembered by path, size and modification time, so the many reads of one
    run (a child reads its parents' files) parse each file once. A copy is handed out (rebuilt
    from a pickle of the parsed file: a few times cheaper than a deep copy of the models);
    ``shared`` hands out the remembered object itself, for callers that only read it.
    """
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    cached = _LOADED.get(str(path))
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1] if shared else pickle.loads(cached[2])
    cfg = _load_table_config(path)
    if stamp is not None:
        kept = pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL)
        _LOADED[str(path)] = (stamp, pickle.loads(kept), kept)
        if shared:
            return _LOADED[str(path)][1]
    return cfg


def _load_table_config(path: Path) -> TableConfig:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with table, kind, rows, columns", file=str(path))
    table = data.get("table") if isinstance(data.get("table"), str) else path.stem
    try:
        cfg = TableConfig.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, path, table)
        raise
    validate_generators(cfg, path)
    return cfg


def validate_generators(cfg: TableConfig, path: Path | str | None = None) -> None:
    file = str(path) if path else None
    if cfg.kind == "synthetic" and cfg.vocabulary_rows is not None:
        raise ConfigError(
            "vocabulary_rows applies to vocabulary tables only (kind: vocabulary); remove it",
            file=file,
            table=cfg.table,
            setting="vocabulary_rows",
        )
    if cfg.kind != "synthetic":
        return
    for name, col in cfg.columns.items():
        if col.generator is None:
            raise ConfigError(
                "a synthetic table needs a generator for every column",
                file=file,
                table=cfg.table,
                column=name,
                setting="generator",
            )
        gen = CATALOGUE[col.generator]
        if col.type not in gen.types:
            raise ConfigError(
                f"generator {col.generator} makes {'/'.join(sorted(gen.types))} values, "
                f"but the column is {col.type}",
                file=file,
                table=cfg.table,
                column=name,
                setting="generator",
            )
        try:
            params = gen.Params.model_validate(col.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ConfigError(
                f"{err['msg']} (generator {col.generator})",
                file=file,
                table=cfg.table,
                column=name,
                setting=f"params.{where}" if where else "params",
            ) from None
        problem = gen.check(col.stats, params, col.type)
        if problem:
            raise ConfigError(
                f"generator {col.generator} {problem}",
                file=file,
                table=cfg.table,
                column=name,
                setting="generator",
            )
        for dep in gen.depends_on(params):
            if dep not in cfg.columns:
                raise ConfigError(
                    f"generator {col.generator} derives from column {dep!r}, which this table does not have",
                    file=file,
                    table=cfg.table,
                    column=name,
                    setting="params",
                )
    cfg.generation_order()


def table_config_to_yaml(cfg: TableConfig, project: str) -> str:
    header = (
        f"# synth_pipeline configuration of table {cfg.table!r}, project {project!r}.\n"
        "# Every statistic below passed disclosure control; `disclosure` says which rule changed what.\n"
        "# Review the generators, then: synth-pipeline approve --project "
        f"{project} --table {cfg.table} --reviewer NAME\n"
    )
    data = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    return header + dump_yaml(data)


class ProjectFiles:
    """The configuration folder of one project."""

    def __init__(self, root: Path | str, project: str):
        self.root = Path(root)
        self.project = project
        self.folder = self.root / project

    @property
    def project_file(self) -> Path:
        return self.folder / PROJECT_FILE

    def table_file(self, table: str) -> Path:
        problem = unusable_name(table)
        if problem:
            raise ConfigError(f"not a usable table: {problem}", table=table, setting="table")
        return self.folder / f"{table}.yaml"

    def exists(self) -> bool:
        return self.project_file.exists()

    def require_exists(self) -> None:
        """Refuse a project that has no folder with a project.yaml: a typo in a project's name
        must not quietly start a new project (only ``init`` creates one)."""
        if self.exists():
            return
        known = sorted(p.parent.name for p in self.root.glob(f"*/{PROJECT_FILE}"))
        raise ConfigError(
            f"no project {self.project!r} in {self.root} (projects: "
            f"{', '.join(known) or 'none'}); create one with synth-pipeline init --project "
            f"{self.project}",
            file=str(self.project_file),
            setting="--project",
        )

    def load_project(self) -> ProjectConfig:
        if not self.project_file.exists():
            return ProjectConfig(project=self.project)
        cfg = load_project(self.project_file)
        if cfg.project != self.project:
            raise ConfigError(
                f"project is {cfg.project!r} but the folder is {self.project!r}",
                file=str(self.project_file),
                setting="project",
            )
        return cfg

    def save_project(self, cfg: ProjectConfig) -> None:
        header = (
            f"# synth_pipeline project {cfg.project!r}: settings shared by every table.\n"
            "# `disclosure` holds the rules every released statistic passed; changing them\n"
            "# changes the statistics, which then need a new review.\n"
        )
        atomic_write_text(self.project_file, header + dump_yaml(cfg.model_dump(mode="json")))

    def tables(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted(p.stem for p in self.folder.glob("*.yaml") if p.name != PROJECT_FILE)

    def has_table(self, table: str) -> bool:
        return self.table_file(table).exists()

    def load_table(self, table: str, *, shared: bool = False) -> TableConfig:
        """The table's validated config; ``shared``: the remembered object itself, which the
        caller must not change (see load_table_config)."""
        path = self.table_file(table)
        cfg = load_table_config(path, shared=shared)
        if cfg.table != table:
            raise ConfigError(
                f"the file is for table {table!r} but says table: {cfg.table!r}",
                file=str(path),
                table=table,
                setting="table",
            )
        return cfg

    def save_table(self, cfg: TableConfig) -> None:
        validate_generators(cfg, self.table_file(cfg.table))
        atomic_write_text(self.table_file(cfg.table), table_config_to_yaml(cfg, self.project))

    def write_json_schema(self) -> Path:
        path = self.root / "table-config.schema.json"
        atomic_write_text(path, json.dumps(table_config_json_schema(), indent=2) + "\n")
        return path
