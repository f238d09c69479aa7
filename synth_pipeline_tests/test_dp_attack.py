"""An attack on the released statistics: one-person values and outliers, fresh noise keys.

A small extract plants values that one row (or one person) holds: rare concepts, a lone birth
year in a sparse decade, the oldest and youngest persons, a far outlier quantity, a lone long
stay, a person with many times more prescriptions than anyone else, a lone long text. For each
noise key drawn afresh (200 per epsilon) and with differential privacy off, the released
statistics must never list one of them, never put one at a bin edge, and never release one as
a quantile.

The source is read once; each draw runs the release functions of :mod:`.summarise` on what it
read (the same code a full summary runs), so 200 draws take seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pytest
import sqlalchemy as sa

from synth_pipeline.core import disclosure as dc
from synth_pipeline.core import dp
from synth_pipeline.core.database import open_source
from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.schema import read_table_schema
from synth_pipeline.core.summarise import summarise_table
from synth_pipeline.core.summarise.release import dp_candidates as _dp_candidates

KEYS_PER_SETTING = 200

RARE_RACE = 8657  # one person
LONE_YEARS = {1907, 1937, 2003}  # the oldest person, a lone year in a sparse decade, the youngest
RARE_DRUG = 40000001  # one prescription
LONE_START_YEAR = 1998  # one prescription, years before the others
LONE_QUANTITY = 987.65
LONE_DAYS_SUPPLY = 365
LONE_REFILLS = 17
LONE_STAY = 400  # days from start to end
LONE_SIG_LENGTH = 180
HEAVY_USER_ROWS = 97  # prescriptions of the one heavy user


def build_extract(url: str, schema: str | None = None) -> None:
    rng = np.random.default_rng(14)
    engine = sa.create_engine(url)
    if schema:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    md = sa.MetaData(schema=schema)
    person = sa.Table(
        "person",
        md,
        sa.Column("person_id", sa.BigInteger, primary_key=True),
        sa.Column("gender_concept_id", sa.Integer, nullable=False),
        sa.Column("year_of_birth", sa.Integer, nullable=False),
        sa.Column("birth_datetime", sa.DateTime),
        sa.Column("race_concept_id", sa.Integer, nullable=False),
    )
    drugs = sa.Table(
        "drug_exposure",
        md,
        sa.Column("drug_exposure_id", sa.BigInteger, primary_key=True),
        sa.Column("person_id", sa.BigInteger, sa.ForeignKey("person.person_id"), nullable=False),
        sa.Column("drug_concept_id", sa.Integer, nullable=False),
        sa.Column("drug_exposure_start_date", sa.Date, nullable=False),
        sa.Column("drug_exposure_end_date", sa.Date),
        sa.Column("quantity", sa.Float),
        sa.Column("days_supply", sa.Integer),
        sa.Column("refills", sa.Integer),
        sa.Column("sig", sa.String),
    )
    periods = sa.Table(  # dates carried as numbers: days and seconds since 1970
        "observation_period",
        md,
        sa.Column("observation_period_id", sa.BigInteger, primary_key=True),
        sa.Column("person_id", sa.BigInteger, sa.ForeignKey("person.person_id"), nullable=False),
        sa.Column("observation_period_start_date", sa.Integer, nullable=False),
        sa.Column("observation_period_end_date", sa.BigInteger, nullable=False),
        sa.Column("period_type_concept_id", sa.Integer, nullable=False),
    )
    md.create_all(engine)
    persons = 300
    years = [int(y) for y in rng.integers(1945, 1990, persons)]
    # a sparse decade: two persons a year in the 1930s, none in 1937 but one
    years[:18] = [y for y in range(1930, 1940) if y != 1937 for _ in range(2)]
    years[18:21] = sorted(LONE_YEARS)
    people = [
        {
            "person_id": i + 1,
            "gender_concept_id": 8507 if i % 2 else 8532,
            "year_of_birth": y,
            "birth_datetime": dt.datetime(y, 1 + i % 12, 1 + i % 28),
            "race_concept_id": RARE_RACE if i == 30 else (8527 if i % 3 else 8516),
        }
        for i, y in enumerate(years)
    ]
    rows = []
    owners = [1 + int(p) for p in rng.integers(0, persons, 1100)] + [7] * HEAVY_USER_ROWS
    for i, owner in enumerate(owners):
        start = dt.date(2010, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3650)))
        rows.append(
            {
                "drug_exposure_id": i + 1,
                "person_id": owner,
                "drug_concept_id": (1127078, 1112807, 19019073)[i % 3],
                "drug_exposure_start_date": start,
                "drug_exposure_end_date": start + dt.timedelta(days=int(rng.integers(0, 31))),
                "quantity": round(float(rng.uniform(1, 60)), 1),
                "days_supply": int(rng.integers(1, 91)),
                "refills": int(rng.integers(0, 6)),
                "sig": "take " + "x" * int(rng.integers(5, 35)),
            }
        )
    lone = rows[0]
    lone["drug_concept_id"] = RARE_DRUG
    lone["drug_exposure_start_date"] = dt.date(LONE_START_YEAR, 6, 1)
    lone["drug_exposure_end_date"] = dt.date(LONE_START_YEAR, 6, 1) + dt.timedelta(LONE_STAY)
    lone["quantity"] = LONE_QUANTITY
    lone["days_supply"] = LONE_DAYS_SUPPLY
    lone["refills"] = LONE_REFILLS
    lone["sig"] = "s" * LONE_SIG_LENGTH
    epoch = dt.date(1970, 1, 1)
    spans = []
    for i in range(persons):
        start = dt.date(2005, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3000)))
        if i == 0:
            start = dt.date(LONE_START_YEAR, 3, 3)  # one period starts years before the others
        end = start + dt.timedelta(days=int(rng.integers(30, 2000)))
        spans.append(
            {
                "observation_period_id": i + 1,
                "person_id": i + 1,
                "observation_period_start_date": (start - epoch).days,
                "observation_period_end_date": (end - epoch).days * 86400,
                "period_type_concept_id": 44814724,
            }
        )
    with engine.begin() as conn:
        conn.execute(person.insert(), people)
        conn.execute(drugs.insert(), rows)
        conn.execute(periods.insert(), spans)
    engine.dispose()


# --- what the source holds (read once) -------------------------------------------------------

K = DisclosurePolicy().k
SHARING = 3  # patient-level tables of the extract, sharing the budget
EPSILONS = (0.1, 1.0, 10.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("attack") / "source.sqlite"
    build_extract(f"sqlite:///{path}")
    return open_source(f"sqlite:///{path}")


def _pairs(conn, sql: str) -> list[tuple[object, int]]:
    return [(v, int(n)) for v, n in conn.execute(sa.text(sql)) if v is not None]


YEAR = "CAST(strftime('%Y', {c}) AS INTEGER)"
STAY = "CAST(julianday(drug_exposure_end_date) - julianday(drug_exposure_start_date) AS INTEGER)"


@pytest.fixture(scope="module")
def held(source):
    """Exact frequencies of every released expression: (table, column) -> [(value, rows)]."""
    exprs = {
        ("person", "race_concept_id"): "race_concept_id",
        ("person", "year_of_birth"): "year_of_birth",
        ("person", "birth_datetime"): YEAR.format(c="birth_datetime"),
        ("drug_exposure", "drug_concept_id"): "drug_concept_id",
        ("drug_exposure", "drug_exposure_start_date"): YEAR.format(c="drug_exposure_start_date"),
        ("drug_exposure", "quantity"): "quantity",
        ("drug_exposure", "days_supply"): "days_supply",
        ("drug_exposure", "refills"): "refills",
        ("drug_exposure", "drug_exposure_end_date"): YEAR.format(c="drug_exposure_end_date"),
        ("drug_exposure", "drug_exposure_end_date:offset"): STAY,
        ("drug_exposure", "sig"): "LENGTH(sig)",
    }
    with source.connect() as conn:
        out = {
            key: _pairs(conn, f"SELECT {e}, COUNT(*) FROM {key[0]} GROUP BY 1")
            for key, e in exprs.items()
        }
        out[("drug_exposure", "person_id")] = _pairs(
            conn,
            "SELECT n, COUNT(*) FROM (SELECT COUNT(*) AS n FROM drug_exposure GROUP BY person_id) "
            "GROUP BY n",
        )
    return out


def test_the_fixture_plants_what_it_says(held):
    def rows(column, value):
        return dict(held[column]).get(value, 0)

    assert rows(("person", "race_concept_id"), RARE_RACE) == 1
    assert all(rows(("person", "year_of_birth"), y) == 1 for y in LONE_YEARS)
    assert rows(("drug_exposure", "drug_concept_id"), RARE_DRUG) == 1
    assert rows(("drug_exposure", "drug_exposure_start_date"), LONE_START_YEAR) == 1
    assert rows(("drug_exposure", "quantity"), LONE_QUANTITY) == 1
    assert rows(("drug_exposure", "days_supply"), LONE_DAYS_SUPPLY) == 1
    assert rows(("drug_exposure", "refills"), LONE_REFILLS) == 1
    assert rows(("drug_exposure", "drug_exposure_end_date:offset"), LONE_STAY) == 1
    assert rows(("drug_exposure", "sig"), LONE_SIG_LENGTH) == 1
    assert rows(("drug_exposure", "person_id"), HEAVY_USER_ROWS + 2) <= 1  # one heavy user


# --- the releases of one draw ----------------------------------------------------------------


@dataclass
class Release:
    """What one draw released, by (table, column)."""

    listed: dict[tuple[str, str], set] = field(default_factory=dict)
    bins: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    quantiles: dict[tuple[str, str], list[float]] = field(default_factory=dict)


def release_of(stats_by_table, attacked) -> Release:
    """The listed values, bin edges and quantiles of the ``attacked`` (table, column)s of
    summarised tables (days from a start column as (table, "column:offset"))."""
    out = Release()
    for table, stats in stats_by_table.items():
        for name, cs in stats.columns.items():
            key = (table, name)
            if key not in attacked:
                continue
            if cs.values:
                out.listed[key] = {v.value for v in cs.values}
            for bins in (cs.years, cs.fanout):
                if bins:
                    out.bins[key] = [(b.start, b.end) for b in bins]
            if cs.quantiles or cs.length:
                out.quantiles[key] = [float(p.value) for p in cs.quantiles or cs.length or []]
            if cs.conditional is not None:  # per-group quantiles answer to the same rule
                groups = cs.conditional.groups + [cs.conditional.other] * bool(cs.conditional.other)
                out.quantiles[key] += [float(p.value) for g in groups for p in g.quantiles or []]
            if cs.offset is not None and (table, f"{name}:offset") in attacked:
                out.quantiles[(table, f"{name}:offset")] = [
                    float(p.value) for p in cs.offset.quantiles
                ]
    return out


LISTINGS = [
    ("person", "race_concept_id", None),
    ("person", "year_of_birth", "integer"),
    ("drug_exposure", "drug_concept_id", None),
    ("drug_exposure", "days_supply", "integer"),
    ("drug_exposure", "refills", "integer"),
]
QUANTILES = [  # (table, column, what, whole)
    ("person", "year_of_birth", "values", True),
    ("drug_exposure", "quantity", "values", False),
    ("drug_exposure", "days_supply", "values", True),
    ("drug_exposure", "refills", "values", True),
    ("drug_exposure", "drug_exposure_end_date:offset", "offset", True),
    ("drug_exposure", "sig", "length", True),
]


def candidates_of(schemas, table: str, column: str, what: str, policy) -> list[float]:
    return _dp_candidates(schemas[table].column(column), what, policy)


@pytest.fixture(scope="module")
def buckets(source, held):
    """Rows per quantile candidate bucket, as the summary's grouped pass counts them."""
    policy = DisclosurePolicy(epsilon=1.0)
    schemas = {t: read_table_schema(source, None, t) for t in ("person", "drug_exposure")}
    exprs = {
        "values": "{c}",
        "offset": STAY,
        "length": "LENGTH({c})",
    }
    out = {}
    with source.connect() as conn:
        for table, column, what, _whole in QUANTILES:
            name = column.split(":")[0]
            cands = candidates_of(schemas, table, name, what, policy)
            expr = dp.bucket_sql(exprs[what].format(c=name), cands, pg=False)
            out[(table, column)] = (
                cands,
                _pairs(conn, f"SELECT {expr}, COUNT(*) FROM {table} GROUP BY 1"),
            )
    return schemas, out


def draw(key: bytes, epsilon: float, held, buckets) -> Release:
    """One draw of every attacked statistic under differential privacy, by the same functions
    the summary calls (:class:`.dp.Noise`)."""
    schemas, quantile_buckets = buckets
    policy = DisclosurePolicy(epsilon=epsilon)
    noise = {t: dp.Noise(key, t, dp.budget_for(s, policy, SHARING)) for t, s in schemas.items()}
    out = Release()
    for table, column, lt in LISTINGS:
        domain = dp.value_domain(column, lt, policy) if lt else None
        pairs = held[(table, column)]
        released = noise[table].release_values(
            f"{column}:values", pairs, domain, sum(n for _, n in pairs), policy
        )
        out.listed[(table, column)] = {v for v, _ in released.values}
    for table, column in (
        ("person", "birth_datetime"),
        ("drug_exposure", "drug_exposure_start_date"),
    ):
        binned = noise[table].release_years(f"{column}:years", held[(table, column)], policy)
        out.bins[(table, column)] = [(a, b) for a, b, _ in binned.bins]
    fanout = noise["drug_exposure"].release_fanout(
        "person_id:fanout", sorted(held[("drug_exposure", "person_id")]), policy
    )
    out.bins[("drug_exposure", "person_id")] = [(a, b) for a, b, _ in fanout.bins]
    for table, column, what, whole in QUANTILES:
        cands, rows = quantile_buckets[(table, column)]
        label = f"{column.split(':')[0]}:{what}"
        points = noise[table].quantiles(label, rows, cands, whole)
        out.quantiles[(table, column)] = [float(v) for _, v in points]
    return out


# --- the checks ------------------------------------------------------------------------------

LONE_EDGES = {  # planted keys one person holds, off the grids (so only data could put them there)
    ("person", "birth_datetime"): LONE_YEARS,
    ("drug_exposure", "drug_exposure_start_date"): {LONE_START_YEAR},
}


def rare(held, key) -> set:
    """Values fewer than k rows hold."""
    return {v for v, n in held[key] if n < K}


def check(release: Release, held, dp_on: bool) -> None:
    for key, listed in release.listed.items():
        assert not listed & rare(held, key), (key, listed & rare(held, key))
    for key, bins in release.bins.items():
        grid = dc.POWERS_OF_TWO if key[1] == "person_id" else dc.YEARS
        counts = dict(held[key])
        edges = {a for a, _ in bins} | {b for _, b in bins}
        lone = LONE_EDGES.get(key, {max(counts)})  # children per parent: the heavy user
        assert not edges & lone, (key, bins)
        for (_, end), (start, _) in zip(bins, bins[1:], strict=False):
            assert start == end + 1, (key, bins)  # contiguous: no gap shows empty keys
        for start, end in bins:
            # an edge is on the grid, or (exact counts only) between keys k rows hold each
            assert grid.floor(start) == start or (
                not dp_on and counts.get(start - 1, 0) >= K and counts.get(start, 0) >= K
            ), (key, start)
            assert grid.next_above(end) == end + 1 or (
                not dp_on and counts.get(end, 0) >= K and counts.get(end + 1, 0) >= K
            ), (key, end)
    for key, values in release.quantiles.items():
        assert not set(values) & rare(held, key), (key, set(values) & rare(held, key))


def test_the_planted_edges_are_off_the_grids(held):
    assert all(dc.YEARS.floor(y) != y and dc.YEARS.next_above(y) != y + 1 for y in LONE_YEARS)
    assert LONE_START_YEAR % dc.YEAR_GRID not in (0, dc.YEAR_GRID - 1)
    heavy = max(dict(held[("drug_exposure", "person_id")]))
    assert heavy >= HEAVY_USER_ROWS and heavy & (heavy - 1) and (heavy + 1) & heavy


def test_without_differential_privacy_none_is_released(source, held):
    policy = DisclosurePolicy()
    by_drug = {"quantity": "drug_concept_id", "days_supply": "drug_concept_id"}
    stats = {
        t: summarise_table(source, None, read_table_schema(source, None, t), policy, by_drug)
        for t in ("person", "drug_exposure")
    }
    assert stats["drug_exposure"].columns["quantity"].conditional.groups
    release = release_of(stats, held)
    check(release, held, dp_on=False)
    # the attack had something to look at: listings, bins and quantiles of every kind
    assert release.listed[("drug_exposure", "days_supply")]
    assert len(release.bins) == 4 and len(release.quantiles) == 6


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_fresh_noise_keys_never_release_them(epsilon, held, buckets):
    keys = np.random.default_rng(int(epsilon * 100))
    common_listed = 0
    for _ in range(KEYS_PER_SETTING):
        release = draw(keys.bytes(32), epsilon, held, buckets)
        check(release, held, dp_on=True)
        common_listed += len(release.listed[("drug_exposure", "drug_concept_id")]) == 3
        assert all(len(v) == len(dp.DP_PROBABILITIES) for v in release.quantiles.values())
    if epsilon >= 10:  # enough budget for the three common drugs (400 rows each) to show
        assert common_listed >= 0.95 * KEYS_PER_SETTING


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_the_draws_are_what_the_summary_releases(epsilon, source, held, buckets):
    """The harness calls the functions the summary calls, with the same labels and counts: a
    full summary with a given key releases exactly what the draw with that key released."""
    schemas = buckets[0]
    policy = DisclosurePolicy(epsilon=epsilon)
    key = np.random.default_rng(7).bytes(32)
    stats = {
        t: summarise_table(
            source, None, s, policy, None, dp.Noise(key, t, dp.budget_for(s, policy, SHARING))
        )
        for t, s in schemas.items()
    }
    whole, direct = release_of(stats, held), draw(key, epsilon, held, buckets)
    for name in ("listed", "bins", "quantiles"):
        mine, theirs = getattr(whole, name), getattr(direct, name)
        assert {k: v for k, v in theirs.items() if v} == {k: mine[k] for k in theirs if k in mine}


def test_the_attack_finds_what_noise_on_present_values_alone_leaks(held, buckets):
    """The mechanism this replaced: noise on the counts of the values present, then the k rule.
    A value nobody holds can never show, so a listed lone birth year proves someone holds it;
    the same draws catch it in most keys."""
    schema = buckets[0]["person"]
    policy = DisclosurePolicy(epsilon=1.0)
    keys = np.random.default_rng(1)
    leaked = 0
    for _ in range(KEYS_PER_SETTING):
        noise = dp.Noise(keys.bytes(32), "person", dp.budget_for(schema, policy, SHARING))
        pairs = noise.pairs("year_of_birth:values", held[("person", "year_of_birth")])
        listed = {v for v, _ in dc.fold_frequencies(pairs, 300, policy).values}
        leaked += bool(listed & LONE_YEARS)
    assert leaked > KEYS_PER_SETTING // 4


def test_postgresql_releases_what_sqlite_does(source, postgres_database):
    """PostgreSQL counts the quantile buckets with width_bucket and turns day and second
    numbers into dates with its own functions; SQLite with a search of CASEs and date(): with
    the same key, and without differential privacy, both release the same statistics."""
    build_extract(postgres_database, "attack")
    other = open_source(postgres_database)
    key = np.random.default_rng(3).bytes(32)
    for policy in (DisclosurePolicy(epsilon=10.0), DisclosurePolicy()):
        for table in ("person", "drug_exposure", "observation_period"):
            released = []
            for engine, schema in ((source, None), (other, "attack")):
                s = read_table_schema(engine, schema, table)
                budget = dp.budget_for(s, policy, SHARING)
                noise = dp.Noise(key, table, budget) if budget else None
                stats = summarise_table(engine, schema, s, policy, None, noise)
                released.append((stats.model_dump()["columns"], stats.findings))
            assert released[0] == released[1], table


def test_numbers_that_carry_dates_are_released_as_dates(source):
    """Day and second counts since 1970 in columns the CDM calls dates: year bins and months,
    with a finding; never quantiles or listed numbers, which would be single rows' dates."""
    schema = read_table_schema(source, None, "observation_period")
    stats = summarise_table(source, None, schema, DisclosurePolicy())
    for column, unit in (
        ("observation_period_start_date", "days"),
        ("observation_period_end_date", "seconds"),
    ):
        cs = stats.columns[column]
        assert cs.years and cs.months and sum(cs.months) >= 250, column
        assert cs.quantiles is None and cs.values is None and cs.distinct is None, column
        assert cs.years[0].start >= 2005 and cs.years[-1].end <= 2019, (column, cs.years)
        assert any(
            f.startswith(f"{column}: ") and f"{unit} since 1970" in f for f in stats.findings
        )
    # the lone early start is coded away like any date
    starts = stats.columns["observation_period_start_date"].years
    assert all(LONE_START_YEAR not in (b.start, b.end) for b in starts)
    # numbers not named as dates stay numbers, whatever their range
    drugs = summarise_table(
        source, None, read_table_schema(source, None, "drug_exposure"), DisclosurePolicy()
    )
    assert drugs.columns["days_supply"].quantiles and not drugs.columns["days_supply"].years
