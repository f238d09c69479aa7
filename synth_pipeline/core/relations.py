"""Anchors from parent tables, for rules that tie a row to its person, visit and periods.

A child table never reads the destination: the parent's synthetic rows are regenerated here
from the parent's approved config with the same seed and scale, which gives exactly the rows
the parent's own synthetic table holds. Only the few columns the rules need are kept, as NumPy
arrays of days since 1970-01-01 indexed by the parent's dense key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from .config import TableConfig
from .config_files import ProjectFiles
from .files import folder_stamp
from .generators.base import days

NO_DEATH = np.iinfo(np.int64).max // 4
NO_BIRTH = np.iinfo(np.int64).min // 4


@dataclass
class Persons:
    birth: np.ndarray  # by person_id - 1
    death: np.ndarray  # NO_DEATH where the person has no death row


@dataclass
class Periods:
    person: np.ndarray  # sorted by person, then start
    start: np.ndarray
    end: np.ndarray
    first: np.ndarray  # by person_id - 1: index of the person's first period
    count: np.ndarray  # by person_id - 1: number of periods

    def containing(self, person: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Index of the period of ``person`` that contains ``day`` (-1 where none does)."""
        shift = np.int64(1) << 32
        keys = self.person.astype(np.int64) * shift + (self.start - np.int64(-(1 << 31)))
        probe = person.astype(np.int64) * shift + (day - np.int64(-(1 << 31)))
        idx = np.searchsorted(keys, probe, side="right") - 1
        ok = (
            (idx >= 0)
            & (self.person[np.maximum(idx, 0)] == person)
            & (self.end[np.maximum(idx, 0)] >= day)
        )
        return np.where(ok, idx, -1)


@dataclass
class Visits:
    person: np.ndarray  # by visit_occurrence_id - 1
    start: np.ndarray
    end: np.ndarray


@dataclass
class RowIndex:
    """Rows of a table (dense ids 1..n) sorted by a key and, within a key, by a date."""

    keys: np.ndarray  # int64, sorted
    days: np.ndarray  # int64 days, sorted within each key (all 0 without an order)
    ids: np.ndarray  # int64 row ids in the same order
    ends: np.ndarray | None = None  # int64 days each row lasts until, when asked for

    @classmethod
    def build(
        cls, frame: pl.DataFrame, key: str, order: str | None, until: str | None = None
    ) -> RowIndex:
        keys = frame[key].fill_null(0).cast(pl.Int64).to_numpy()
        day = (
            days(frame[order])
            if order and order in frame.columns
            else np.zeros(len(keys), dtype=np.int64)
        )
        ids = np.arange(1, len(keys) + 1, dtype=np.int64)
        sort = np.lexsort((ids, day, keys))
        keep = keys[sort] != 0
        ends = None
        if until and until in frame.columns:
            last = days(frame[until])
            ends = np.where(last == np.iinfo(np.int64).min, day, np.maximum(last, day))
            ends = ends[sort][keep]
        return cls(keys[sort][keep], day[sort][keep], ids[sort][keep], ends)

    def _packed(self, key: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # keys are dense synthetic ids (below 2**31) and days fit 32 bits: one sorted int64
        shift, offset = np.int64(1) << 32, np.int64(1) << 31
        mine = self.keys * shift + (np.clip(self.days, -offset, offset - 1) + offset)
        probe = key.astype(np.int64) * shift + (np.clip(day, -offset, offset - 1) + offset)
        return mine, probe

    def containing(self, key: np.ndarray, day: np.ndarray) -> np.ndarray:
        """For each (key, day), the key's latest row that starts on or before the day and lasts
        until it (0 where none does)."""
        if not len(self.ids) or self.ends is None:
            return np.zeros(len(key), dtype=np.int64)
        mine, probe = self._packed(key, day)
        j = np.maximum(np.searchsorted(mine, probe, side="right") - 1, 0)
        ok = (self.keys[j] == key) & (self.days[j] <= day) & (self.ends[j] >= day)
        return np.where(ok, self.ids[j], 0)

    def pick(self, key: np.ndarray, u: np.ndarray) -> np.ndarray:
        """For each key, one of its rows chosen by ``u`` in [0, 1) (0 where the key has none)."""
        lo = np.searchsorted(self.keys, key, side="left")
        hi = np.searchsorted(self.keys, key, side="right")
        n = hi - lo
        at = np.minimum(lo + np.floor(u * n).astype(np.int64), max(len(self.ids) - 1, 0))
        return np.where(n > 0, self.ids[at] if len(self.ids) else 0, 0)

    def before(self, key: np.ndarray, day: np.ndarray) -> np.ndarray:
        """For each (key, day), the id of the key's last row that starts strictly earlier
        (0 where there is none)."""
        if not len(self.ids):
            return np.zeros(len(key), dtype=np.int64)
        mine, probe = self._packed(key, day)
        j = np.searchsorted(mine, probe, side="left") - 1
        ok = (j >= 0) & (self.keys[np.maximum(j, 0)] == key)
        return np.where(ok, self.ids[np.maximum(j, 0)], 0)


class ParentTables(ABC):
    """Parent tables regenerated on demand for one run (seed, scale) of one project, and the
    anchors read from them. How a table is regenerated is the subclass's
    (:class:`.synthesise.Relations`): generation reads these anchors in turn."""

    _shared: dict[tuple, ParentTables] = {}

    @classmethod
    def shared(cls, files: ProjectFiles, seed: int, scale: float) -> ParentTables:
        """One instance per project, seed, scale and version of the project's table files, so the
        tables of one process (a CLI run, the UI's run worker) regenerate each parent once."""
        stamp = folder_stamp(files.folder)
        key = (str(files.folder.resolve()), seed, scale, stamp)
        if key not in cls._shared:
            cls._shared.clear()  # keep one: arrays of big parents are not small
            cls._shared[key] = cls(files, seed, scale)
        return cls._shared[key]

    def __init__(
        self,
        files: ProjectFiles,
        seed: int,
        scale: float,
        chunk_rows: int = 1 << 20,
        deaths: bool = True,
    ):
        self.files, self.seed, self.scale, self.chunk_rows = files, seed, scale, chunk_rows
        self.deaths = deaths  # False: persons live on (the periods deaths are placed in)
        self._before_deaths: ParentTables | None = None
        self._frames: dict[str, pl.DataFrame | None] = {}
        self._persons: Persons | None | bool = False
        self._periods: Periods | None | bool = False
        self._visits: Visits | None | bool = False
        self._indexes: dict[tuple, RowIndex | None] = {}
        self._building: set[str] = set()

    @abstractmethod
    def regenerate(self, cfg: TableConfig) -> Iterator[pl.DataFrame]:
        """The synthetic rows of an approved table, in chunks of ``chunk_rows``."""

    def _config(self, table: str) -> TableConfig | None:
        if not self.files.has_table(table):
            return None
        cfg = self.files.load_table(table)
        return cfg if cfg.kind == "synthetic" else None

    def building(self, table: str) -> bool:
        """Whether ``table`` is being regenerated right now (its own rows are not known yet)."""
        return table in self._building

    def frame(self, table: str, columns: list[str]) -> pl.DataFrame | None:
        """The parent's synthetic rows (``columns``, those it has), or None if it has none in this
        project or is being regenerated itself."""
        if table in self._building:
            return None
        cached = self._frames.get(table, False)
        if cached is None or (cached is not False and all(c in cached.columns for c in columns)):
            return cached  # type: ignore[return-value]
        cfg = self._config(table)
        if cfg is None or cfg.rows == 0:
            self._frames[table] = None
            return None
        wanted = list(dict.fromkeys([*(cached.columns if cached is not False else []), *columns]))
        keep = [c for c in wanted if c in cfg.columns]
        self._building.add(table)
        try:
            parts = [df.select(keep) for df in self.regenerate(cfg)]
        finally:
            self._building.discard(table)
        frame = pl.concat(parts) if parts else None
        self._frames[table] = frame
        return frame

    def index(
        self, table: str, key: str, order: str | None = None, until: str | None = None
    ) -> RowIndex | None:
        """The synthetic rows of ``table`` (their dense ids) by the value of ``key`` (a person or
        visit id), in the order of ``order`` (a date) within a key, each lasting ``until``."""
        wanted = (table, key, order, until)
        if wanted not in self._indexes:
            frame = self.frame(table, [c for c in (key, order, until) if c])
            self._indexes[wanted] = (
                RowIndex.build(frame, key, order, until)
                if frame is not None and key in frame.columns
                else None
            )
        return self._indexes[wanted]

    def persons(self) -> Persons | None:
        if self._persons is not False:
            return self._persons  # type: ignore[return-value]
        person = self.frame(
            "person", ["birth_datetime", "year_of_birth", "month_of_birth", "day_of_birth"]
        )
        if person is None:
            self._persons = None
            return None
        birth = birth_days(person)
        death = np.full(len(birth), NO_DEATH, dtype=np.int64)
        dead = self.frame("death", ["person_id", "death_date"]) if self.deaths else None
        if dead is not None and "person_id" in dead.columns and "death_date" in dead.columns:
            ok = dead.filter(pl.col("person_id").is_not_null() & pl.col("death_date").is_not_null())
            ids = ok["person_id"].to_numpy() - 1
            np.minimum.at(death, ids, days(ok["death_date"]))
        self._persons = Persons(birth, death)
        return self._persons

    def periods_before_deaths(self) -> Periods | None:
        """The observation periods as drawn before deaths end them: a death is placed in the
        last of them, and then ends that period (which still holds it). Deaths depend on these,
        never on the periods deaths have cut, so the two never wait on each other."""
        if not self.deaths:
            return self.periods()
        if self._before_deaths is None:
            self._before_deaths = type(self)(
                self.files, self.seed, self.scale, self.chunk_rows, deaths=False
            )
        return self._before_deaths.periods()

    def periods(self) -> Periods | None:
        if self._periods is not False:
            return self._periods  # type: ignore[return-value]
        op = self.frame(
            "observation_period",
            ["person_id", "observation_period_start_date", "observation_period_end_date"],
        )
        persons = self.persons()
        if op is None or persons is None or "person_id" not in op.columns:
            self._periods = None
            return None
        op = op.drop_nulls().sort(["person_id", "observation_period_start_date"])
        person = op["person_id"].to_numpy().astype(np.int64)
        start = days(op["observation_period_start_date"])
        end = (
            days(op["observation_period_end_date"])
            if "observation_period_end_date" in op.columns
            else start
        )
        n = len(persons.birth)
        count = np.bincount(person - 1, minlength=n)[:n]
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        self._periods = Periods(person, start, end, first, count)
        return self._periods

    def visits(self) -> Visits | None:
        if self._visits is not False:
            return self._visits  # type: ignore[return-value]
        v = self.frame("visit_occurrence", ["person_id", "visit_start_date", "visit_end_date"])
        if v is None or "person_id" not in v.columns or "visit_start_date" not in v.columns:
            self._visits = None
            return None
        start = days(v["visit_start_date"])
        end = days(v["visit_end_date"]) if "visit_end_date" in v.columns else start
        person = v["person_id"].fill_null(0).to_numpy().astype(np.int64)
        self._visits = Visits(person, start, np.maximum(end, start))
        return self._visits


def birth_days(person: pl.DataFrame) -> np.ndarray:
    """Each person's date of birth in days: birth_datetime, else year/month/day of birth."""
    n = person.height
    out = np.full(n, NO_BIRTH, dtype=np.int64)
    if "year_of_birth" in person.columns:
        y = person["year_of_birth"].fill_null(1970).to_numpy()
        m = (
            person["month_of_birth"].fill_null(1).to_numpy()
            if "month_of_birth" in person.columns
            else np.ones(n)
        )
        d = (
            person["day_of_birth"].fill_null(1).to_numpy()
            if "day_of_birth" in person.columns
            else np.ones(n)
        )
        months = (
            (np.asarray(y, dtype=np.int64) - 1970) * 12
            + np.clip(np.asarray(m, dtype=np.int64), 1, 12)
            - 1
        )
        first = (np.datetime64("1970-01", "M") + months.astype("timedelta64[M]")).astype(
            "datetime64[D]"
        )
        out = (
            (first - np.datetime64("1970-01-01", "D")).astype(np.int64)
            + np.clip(np.asarray(d, dtype=np.int64), 1, 28)
            - 1
        )
        if "year_of_birth" in person.columns:
            out = np.where(person["year_of_birth"].is_null().to_numpy(), NO_BIRTH, out)
    if "birth_datetime" in person.columns:
        b = days(person["birth_datetime"])
        out = np.where(b == np.iinfo(np.int64).min, out, b)
    return out
