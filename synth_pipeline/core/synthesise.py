"""Turning an approved table config into synthetic rows, chunk by chunk.

Columns are generated column-wise with NumPy/Polars, a block of 65,536 rows at a time, each
block from its own random stream. Chunks are whole blocks, so the same seed gives the same rows
whatever the chunk size, and memory is bounded by the chunk, not the table.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .config import ColumnConfig, ConfigError, TableConfig
from .config_files import ProjectFiles
from .files import folder_stamp
from .generators import BLOCK_ROWS, CATALOGUE, POLARS_TYPES, ColumnContext
from .relations import ParentTables
from .rules import align_twins, order_pairs, place_anchors, settle_required_references


def scaled_rows(rows: int, scale: float) -> int:
    """Rows a run generates for a table: the approved count times the scale factor."""
    if scale <= 0:
        raise ConfigError(f"scale must be above 0, got {scale}", setting="scale")
    return int(round(rows * scale))


# A writer's first chunk: one random-stream block, so the database starts taking rows while
# the rest of the first full chunk is still being generated (10% faster at 1M rows).
FIRST_CHUNK_ROWS = BLOCK_ROWS


def chunk_size(chunk_rows: int) -> int:
    """Chunk rows rounded up to whole random-stream blocks."""
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows}", setting="chunk_rows")
    return max(1, math.ceil(chunk_rows / BLOCK_ROWS)) * BLOCK_ROWS


@dataclass
class TableRun:
    """One table's generation: its config and the facts of the run it belongs to.

    With ``relations`` (a project's other tables, regenerated on demand) the table's
    consistency rules tie each row to its person, visit and observation period; without,
    only the rules inside a row (end after start, twins, birth parts) apply.
    """

    config: TableConfig
    seed: int
    scale: float
    parent_rows: Callable[[str], int]
    parent_source_rows: Callable[[str], int | None]
    relations: ParentTables | None = None
    warnings: list[str] = field(default_factory=list)
    window: tuple[int, int] | None = None  # the extract's dates, in days since 1970-01-01

    @classmethod
    def for_project(
        cls,
        files: ProjectFiles,
        cfg: TableConfig,
        seed: int,
        scale: float,
        relations: ParentTables | None = None,
    ) -> TableRun:
        """A run whose parents are the project's other approved tables (same seed and scale)."""
        rows, source_rows, warnings = parent_facts(files, cfg, scale)
        return cls(
            cfg,
            seed,
            scale,
            parent_rows=lambda p: rows.get(p, 0),
            parent_source_rows=lambda p: source_rows.get(p),
            relations=relations or Relations.shared(files, seed, scale),
            warnings=warnings,
            window=extract_window(files),
        )

    def rules_rng(self, block: int, purpose: str = "") -> np.random.Generator:
        key = [
            self.seed & 0xFFFFFFFF,
            zlib.crc32(self.config.table.encode()),
            zlib.crc32(b"|rules" + purpose.encode()),
            block,
        ]
        return np.random.default_rng(np.random.SeedSequence(key))

    @property
    def rows(self) -> int:
        return scaled_rows(self.config.rows, self.scale)

    def schema(self) -> dict[str, pl.DataType]:
        return {name: POLARS_TYPES[c.type] for name, c in self.config.columns.items()}

    def contexts(self) -> dict[str, ColumnContext]:
        out = {}
        for name, col in self.config.columns.items():
            gen = CATALOGUE[col.generator]  # type: ignore[index]
            out[name] = ColumnContext(
                table=self.config.table,
                column=name,
                logical_type=col.type,
                nullable=col.nullable,
                max_length=col.max_length,
                stats=col.stats,
                params=gen.Params.model_validate(col.params),
                rows=self.rows,
                seed=self.seed,
                parent_rows=self.parent_rows,
                parent_source_rows=self.parent_source_rows,
                rules=self.config.rules,
                relations=self.relations,
                columns=self.config.columns,
                window=self.window,
            )
        return out

    def chunks(
        self,
        chunk_rows: int,
        first_rows: int | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[pl.DataFrame]:
        """DataFrames of at most ``chunk_rows`` (rounded to whole blocks) in table column order.

        ``first_rows`` makes the first chunk smaller (whole blocks again), so that a writer can
        start while the rest is generated. The rows are the same however they are chunked.
        ``start`` and ``stop`` (row offsets on block boundaries, ``stop`` also the table's end)
        give only the rows of that block range, the same rows the whole table has there: a
        range can be generated by another process (core/distributed.py).
        """
        if self.config.kind != "synthetic":
            raise ConfigError(
                f"table kind is {self.config.kind}: it is not generated",
                table=self.config.table,
                setting="kind",
            )
        total = self.rows
        stop = total if stop is None else min(stop, total)
        if start % BLOCK_ROWS or (stop % BLOCK_ROWS and stop != total) or start < 0:
            raise ValueError(
                f"{self.config.table}: rows {start}..{stop} are not whole blocks of {BLOCK_ROWS}"
            )
        size = chunk_size(chunk_rows)
        order = self.config.generation_order()
        contexts = self.contexts()
        generators = {name: CATALOGUE[self.config.columns[name].generator]() for name in order}  # type: ignore[index]
        dependencies = {name: generators[name].depends_on(contexts[name].params) for name in order}
        columns = list(self.config.columns)
        schema = self.schema()
        first = min(size, chunk_size(first_rows)) if first_rows else size
        bounds = [start, *range(start + first, stop, size), stop] if stop > start else []
        for chunk_start, chunk_end in itertools.pairwise(bounds):
            blocks = []
            for block_start in range(chunk_start, chunk_end, BLOCK_ROWS):
                count = min(BLOCK_ROWS, total - block_start)
                block = block_start // BLOCK_ROWS
                done: dict[str, pl.Series] = {}

                def generate(
                    name: str, start=block_start, count=count, block=block, done=done
                ) -> None:
                    series = generators[name].block(contexts[name], start, count, block, done)
                    done[name] = series.cast(schema[name]).alias(name)

                for name in order:
                    generate(name)
                changed = place_anchors(
                    self.config, done, self.relations, self.rules_rng(block), self.window
                )
                if changed:  # regenerate what derives from a moved anchor, from the same streams
                    for name in order:
                        if name not in changed and set(dependencies[name]) & changed:
                            generate(name)
                            changed.add(name)
                align_twins(self.config, done)
                order_pairs(self.config, done, self.rules_rng(block, "|order"))
                settle_required_references(
                    self.config, done, contexts, self.rules_rng(block, "|settle")
                )
                blocks.append(pl.DataFrame([done[c].cast(schema[c]).alias(c) for c in columns]))
            yield pl.concat(blocks) if len(blocks) > 1 else blocks[0]


class Relations(ParentTables):
    """A project's other tables, regenerated on demand by a :class:`TableRun` of each (same
    seed and scale), whose own rules read this instance in turn."""

    def regenerate(self, cfg: TableConfig) -> Iterator[pl.DataFrame]:
        run = TableRun.for_project(self.files, cfg, self.seed, self.scale, relations=self)
        return run.chunks(self.chunk_rows)


def written_width(col: ColumnConfig) -> int | None:
    """The width a string column is created with in the destination.

    Its width as the source declares it (None: the source declares none, and the column is
    TEXT; never the CDM's width, which a site's values may exceed), widened to the longest
    value the config itself may write: a dirty source's common values can be longer than its
    declared width (an extract in SQLite does not enforce widths), and cutting them would
    invent values nobody approved.
    """
    if col.type != "string" or not col.max_length:
        return col.max_length
    stats = col.stats
    candidates: list[object] = [col.params.get("value"), col.params.get("other_value")]
    if stats is not None:
        candidates += [v.value for v in stats.values or []]
        groups = [*stats.conditional.groups, stats.conditional.other] if stats.conditional else []
        candidates += [v.value for g in groups if g is not None for v in g.values or []]
    longest = max((len(v) for v in candidates if isinstance(v, str)), default=0)
    return max(col.max_length, longest)


def referenced_tables(cfg: TableConfig) -> dict[str, str]:
    """Column -> parent table, for every column generated as a foreign key."""
    out = {}
    for name, col in cfg.columns.items():
        if col.generator == "foreign_key":
            out[name] = str(col.params.get("table"))
    return out


_WINDOWS: dict[tuple, tuple[int, int] | None] = {}


def extract_window(files: ProjectFiles) -> tuple[int, int] | None:
    """The extract's dates as the project's files release them, in days since 1970-01-01: from
    the earliest to the latest end of the date columns' coded ranges (or, for a column without
    one, its year bins), and no later than the extract's release date (cdm_source, metadata
    about the extract). None when none is released.

    Every date generated lies inside it, so a column too sparse for a range of its own (a few
    deaths in a small extract) still stays among the extract's dates."""
    from .generators.temporal import bins_days, range_days

    stamp = folder_stamp(files.folder)
    key = (str(files.folder.resolve()), stamp)
    if key in _WINDOWS:
        return _WINDOWS[key]
    lows, highs, release = [], [], []
    for table in files.tables():
        try:
            cfg = files.load_table(table, shared=True)  # read only
        except ConfigError:
            continue  # the table's own run reports it
        for col in cfg.columns.values():
            bounds = range_days(col.stats) or bins_days(col.stats)
            if bounds is None:
                continue
            if cfg.kind == "synthetic":
                lows.append(bounds[0])
                highs.append(bounds[1])
            elif table == "cdm_source":
                release.append(bounds[1])
    window = None
    if highs or release:
        high = min([*([max(highs)] if highs else []), *release])
        low = min(lows) if lows else high - 365  # only a release date: the year before it
        window = (min(low, high), high)
    _WINDOWS.clear()
    _WINDOWS[key] = window
    return window


def linked_tables(cfg: TableConfig) -> set[str]:
    """Tables the polymorphic references of a table can point to (from its approved config)."""
    from .generators.references import PolymorphicReference

    out: set[str] = set()
    for col in cfg.columns.values():
        if col.generator == "polymorphic_reference":
            params = PolymorphicReference.Params.model_validate(col.params)
            out.update(PolymorphicReference.target_tables(col.stats, params).values())
    return out


def parent_facts(
    files: ProjectFiles, cfg: TableConfig, scale: float
) -> tuple[dict[str, int], dict[str, int | None], list[str]]:
    """Synthetic and released source row counts of the parents this table references.

    A parent without an approved synthetic table in the project gets 0 rows: references to it
    are NULL, with a warning (or an error for a NOT NULL column).
    """
    rows: dict[str, int] = {}
    source_rows: dict[str, int | None] = {}
    warnings: list[str] = []
    for column, parent in referenced_tables(cfg).items():
        if parent in rows:
            continue
        if scaled_rows(cfg.rows, scale) == 0:  # an empty table references nothing
            rows[parent], source_rows[parent] = 0, None
            continue
        if parent == cfg.table:
            rows[parent], source_rows[parent] = scaled_rows(cfg.rows, scale), cfg.source.row_count
            continue
        if not files.has_table(parent):
            rows[parent], source_rows[parent] = 0, None
        else:
            pcfg = files.load_table(parent, shared=True)
            rows[parent] = scaled_rows(pcfg.rows, scale) if pcfg.kind == "synthetic" else 0
            source_rows[parent] = pcfg.source.row_count
        if rows[parent] == 0:
            if not cfg.columns[column].nullable:
                raise ConfigError(
                    f"references table {parent}, which has no synthetic rows in this project, "
                    "but the column is NOT NULL",
                    table=cfg.table,
                    column=column,
                    setting="params.table",
                )
            warnings.append(
                f"{column}: parent table {parent} has no synthetic rows; references left NULL"
            )
    for table in sorted(linked_tables(cfg) - set(rows)):
        if table == cfg.table:
            rows[table], source_rows[table] = scaled_rows(cfg.rows, scale), cfg.source.row_count
        elif files.has_table(table):
            tcfg = files.load_table(table, shared=True)
            rows[table] = scaled_rows(tcfg.rows, scale) if tcfg.kind == "synthetic" else 0
            source_rows[table] = tcfg.source.row_count
        else:
            rows[table], source_rows[table] = 0, None
    return rows, source_rows, warnings
