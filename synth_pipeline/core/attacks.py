"""The attacks of the privacy report: singling out, linkability and attribute inference after
Giomi et al. 2022 ("A Unified Framework for Quantifying Privacy Risk in Synthetic Data", the
method of the anonymeter package), and a distance-based membership-inference test. Implemented
here with NumPy on samples; inside the trusted environment, like the rest of the report.

In the paper the source is split before generation: the synthetic rows are made from a
training part, a control part is held out, and the attacker uses the synthetic rows against
targets of both. Success on training targets beyond success on control targets is what the
synthetic rows reveal about the people they were made from. Here the synthetic rows were made
from statistics of the whole source, so no source row is outside them, and the same attack on
a control row would measure a member again (a copy would score the same on both sides). The
construction used instead:

- the source, in an order its values fix, is shuffled by a fixed seed; its first half (at
  most ``attack_reference_rows``) is the *control half*, the rest the *training part*;
- the attacker of a training target holds a sample of the synthetic rows; the attacker of a
  control target holds, in their place, as many real rows of the source that are not control
  targets and that an honest generator could write (values of listed columns among the
  released ones). That is what a generator that knew the population perfectly, but not the
  control targets, could publish. Both hold min(synthetic rows, such rows,
  ``attack_reference_rows``) rows: a nearest row is nearer among more rows;
- the same attack runs on both sides with the same seeds, on ``attack_rows`` targets a side
  (at most a quarter of the source), and the risk is (training rate - control rate) /
  (1 - control rate).

So the risk reads how much more the synthetic rows give away about the people in the source
than real rows of others give away about someone outside it. A copy of the source scores
near 1 on every attack that can tell its people apart; independent draws from released
marginals score 0 or below (they carry less than real rows do). It is not the paper's
guarantee: the baseline is real data, not the same synthetic rows, so a generator that
reveals about source rows only what real rows of others would also reveal passes; a table
whose columns tell few people apart cannot be attacked (both sides succeed alike); and on
samples a copy of a table much larger than ``attack_reference_rows`` is diluted (a target's
copy is among the attacker's rows only that often), which the exact-match check covers.

singling out      predicates built from the attacker's rows, each true of exactly one of them:
                  univariate (a value one row holds; a numeric column's minimum or maximum
                  held by one row) and multivariate (a random row and up to three random
                  columns: equal to its category, at most or at least its number, NULL where
                  NULL); at most ``attack_rows`` of each. Success: true of exactly one row
                  attacked. Training side: predicates from synthetic rows, tried on as many
                  source rows (the whole source where it fits); control side: predicates from
                  rows of the training part, tried on as many rows of the control half.
linkability       the columns are split in two, whole groups each (the quasi-identifiers'
                  groups and the others, or alternate groups where one part would be empty);
                  success: a target's nearest row on the one part and on the other is the same.
inference         each column in turn is the secret; the guess is the value of the nearest row
                  on the columns of the other groups; success: equal (a number or date: within
                  5% of the column's p1..p99 range). The check reads the worst column.
membership        the AUC of telling training targets from control targets by their distance to
                  the nearest of their attacker's rows (closer: member); 0.5 is chance.

A group is a column with the columns derived from it (a datetime from its date, a part of a
date, a value chosen by another column's value): one piece of information, which guessing or
linking within would find for anyone, copied or not.
Distances are Gower's, as for the DCR share (numbers and dates by their p1..p99 range,
categories by equality, NULL equal to NULL). Each target breaks ties at random (fixed seed).
The search for the nearest rows is in attack_nearest.py.
A rate's bound is Wilson's at 99.5% on each side, so the risk's lower bound holds with 99%
confidence; the AUC's is Hanley and McNeil's standard error at one-sided 99%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from .attack_nearest import _Side
from .config import TableConfig
from .generators import CATALOGUE
from .privacy import CONFIDENCE_Z, SPLIT_SEED, AttackResult, Attacks, Rate, wilson_low
from .privacy_distance import TablePair, features, is_categorical

# each of the two rates of a risk bounded at one-sided 99.5%: both hold with 99% confidence
PAIR_Z = 2.576
INFERENCE_TOLERANCE = 0.05  # of the column's p1..p99 range
PREDICATE_COLUMNS = 3
ATTEMPTS_PER_PREDICATE = 10
CELLS_PER_CHUNK = 4_000_000  # predicate x row tests held in memory at once
EQ, LE, GE = 0, 1, 2


@dataclass
class _Draw:
    """The rows the attacks use, drawn in one sequence from the fixed seed: targets of each
    side, the control attacker's stand-in rows, the synthetic rows drawn, and the rows the
    singling-out predicates are built from and tried on, for each side."""

    targets: int  # targets a side
    training_targets: np.ndarray
    control_targets: np.ndarray
    stand_in: np.ndarray  # real rows in the control attacker's hands
    drawn: np.ndarray  # synthetic rows in the training attacker's hands
    predicates: tuple[np.ndarray, np.ndarray]  # training side: synthetic rows, source rows
    control_predicates: tuple[np.ndarray, np.ndarray]  # control side: training, control rows

    def samples(self) -> dict[str, int]:
        return {
            "targets": self.targets,
            "reference": len(self.drawn),
            "predicates_from": len(self.predicates[0]),
            "control_predicates_from": len(self.control_predicates[0]),
        }


def _draw(pair: TablePair, source_writable: np.ndarray) -> _Draw | None:
    """The attacks' rows (see the module's text), or None when there are too few."""
    n, synthetic_rows = pair.source.height, pair.synthetic.height
    cap = pair.thresholds.attack_reference_rows
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(n)
    half = min(n // 2, cap)
    control, training = order[:half], order[half:]  # random orders: ties go to a random row
    targets = min(pair.thresholds.attack_rows, n // 4)
    control_targets, training_targets = control[:targets], training[:targets]
    # the control's attacker: real rows a generator could write, none of them a control target
    candidates = np.setdiff1d(np.nonzero(source_writable)[0], control_targets)
    size = min(synthetic_rows, len(candidates), cap)
    if not pair.columns or n < 4 * pair.k or size < pair.k:
        return None
    stand_in = rng.permutation(candidates)[:size]
    drawn = rng.permutation(synthetic_rows)[:size]
    # singling out: as many predicates' rows as rows they are tried on, on each side; the
    # training side on the whole source (capped), the control side on the control half
    so_main = min(synthetic_rows, n, cap)
    so_rows = training[source_writable[training]][:half]
    so_control = min(len(so_rows), half)
    predicates = (rng.permutation(synthetic_rows)[:so_main], rng.permutation(n)[:so_main])
    control_predicates = (so_rows[:so_control], control[:so_control])
    return _Draw(
        targets, training_targets, control_targets, stand_in, drawn, predicates, control_predicates
    )


def run_attacks(
    pair: TablePair, quasi_identifiers: list[str], source_writable: np.ndarray
) -> Attacks:
    """The four attacks on one table (``pair.columns``: the informative columns compared)."""
    columns, cfg, k = pair.columns, pair.cfg, pair.k
    draw = _draw(pair, source_writable)
    if draw is None:
        return Attacks(note="too few rows for the attacks")
    codes: dict[str, dict] = {}
    src = _encode(pair.source, cfg, columns, codes)
    syn = _encode(pair.synthetic, cfg, columns, codes)
    categorical = np.array([is_categorical(cfg, c) for c in columns])
    scale = _scale(src, categorical)

    main = _Side(src[draw.training_targets], syn[draw.drawn])
    ctrl = _Side(src[draw.control_targets], src[draw.stand_in])
    groups = column_groups(cfg, columns)
    split = _split(columns, quasi_identifiers, groups)
    main.nearest(categorical, scale, groups, split)
    ctrl.nearest(categorical, scale, groups, split)

    out = Attacks(samples=draw.samples())
    pairs = [
        (syn[draw.predicates[0]], src[draw.predicates[1]]),
        (src[draw.control_predicates[0]], src[draw.control_predicates[1]]),
    ]
    for kind, build in (("univariate", _univariate), ("multivariate", _multivariate)):
        if kind == "multivariate" and len(columns) < 2:
            continue
        a = _singling_out(build, pairs, categorical, pair.thresholds.attack_rows)
        out.singling_out.append(_judged(f"{kind} predicates", *a, k))
    if split is None:
        out.linkability = AttackResult(note="one group of columns: nothing to link")
    else:
        on = f"{', '.join(columns[i] for i in split[0])} vs {', '.join(columns[i] for i in split[1])}"
        hits = main.linked.sum(), ctrl.linked.sum()
        out.linkability = _judged(on, *hits, draw.targets, draw.targets, k)
    if len(set(groups)) >= 2:
        for j, c in enumerate(columns):
            main_hits = _guessed(main, j, categorical[j], scale[j]).sum()
            ctrl_hits = _guessed(ctrl, j, categorical[j], scale[j]).sum()
            out.inference.append(_judged(c, main_hits, ctrl_hits, draw.targets, draw.targets, k))
    out.membership = _membership(main.distance, ctrl.distance)
    return out


# ---------------------------------------------------------------------------------------------
# Rows as numbers


def _encode(frame: pl.DataFrame, cfg: TableConfig, columns: list[str], codes: dict) -> np.ndarray:
    """Rows x columns, float: numbers and dates (in days) as they are, categories as codes
    shared through ``codes``; NaN for NULL."""
    out = np.empty((frame.height, len(columns)))
    for j, c in enumerate(columns):
        num, cat = features(frame, cfg, [c], codes)
        if cat.shape[1]:
            out[:, j] = np.where(cat[:, 0] < 0, np.nan, cat[:, 0])
        else:
            out[:, j] = num[:, 0]
    return out


def _scale(rows: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Per column, the p1..p99 range a numeric difference is measured by (1 where empty)."""
    scale = np.ones(rows.shape[1])
    for j in np.nonzero(~categorical)[0]:
        x = rows[:, j][~np.isnan(rows[:, j])]
        if len(x):
            spread = np.percentile(x, 99) - np.percentile(x, 1)
            scale[j] = spread if spread > 0 else 1.0
    return scale


# generators whose column repeats another column's information: a datetime from its date, a
# part of a date, a value chosen by another column's value (a source value by its concept)
DERIVED = {"datetime_from_date", "date_part", "conditional_choice"}


def column_groups(cfg: TableConfig, columns: list[str]) -> list[int]:
    """Per column, its group: columns derived from one another (DERIVED generators and the
    columns they are drawn from) share one. Guessing a column from its own group, or linking
    one group member to another, tells nothing about anyone."""
    parent = {c: c for c in columns}

    def root(c: str) -> str:
        while parent[c] != c:
            c = parent[c]
        return c

    for c in columns:
        col = cfg.columns[c]
        if col.generator in DERIVED:
            gen = CATALOGUE[col.generator]
            for dep in gen.depends_on(gen.Params.model_validate(col.params)):
                if dep in parent:
                    parent[root(c)] = root(dep)
    roots = [root(c) for c in columns]
    first = {r: i for i, r in reversed(list(enumerate(roots)))}
    ids = {r: n for n, r in enumerate(sorted(set(roots), key=first.get))}
    return [ids[r] for r in roots]


def _split(
    columns: list[str], quasi_identifiers: list[str], groups: list[int]
) -> tuple[list[int], list[int]] | None:
    """The two parts linkability links, whole groups each: the quasi-identifiers' groups and
    the others, or alternate groups where one part would be empty; None with one group."""
    count = len(set(groups))
    if count < 2:
        return None
    known = {g for c, g in zip(columns, groups, strict=True) if c in quasi_identifiers}
    if not known or len(known) == count:
        known = set(range(0, count, 2))
    first = [i for i, g in enumerate(groups) if g in known]
    return first, [i for i, g in enumerate(groups) if g not in known]


def _guessed(side: _Side, j: int, categorical: bool, scale: float) -> np.ndarray:
    """Per target, whether the nearest row on the columns outside column j's group holds its
    value in column j."""
    guess = side.reference[side.leave_one_out[:, j], j]
    truth = side.targets[:, j]
    both = np.isnan(guess) & np.isnan(truth)
    if categorical:
        return both | (guess == truth)
    return both | (np.abs(guess - truth) <= INFERENCE_TOLERANCE * scale)


# ---------------------------------------------------------------------------------------------
# Singling out


class _Predicates:
    """Conjunctions of conditions: column, operator (EQ: equal or both NULL; LE; GE), value."""

    def __init__(self, cols: np.ndarray, ops: np.ndarray, values: np.ndarray):
        self.cols, self.ops, self.values = cols, ops, values

    def __len__(self) -> int:
        return len(self.cols)

    def take(self, keep: np.ndarray) -> _Predicates:
        return _Predicates(self.cols[keep], self.ops[keep], self.values[keep])

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """How many of ``rows`` each predicate is true of."""
        out = np.zeros(len(self), dtype=np.int64)
        batch = max(1, CELLS_PER_CHUNK // max(1, len(rows)))
        columns = np.ascontiguousarray(rows.T)  # a column's values side by side: fast to compare
        null = np.isnan(columns)
        for b in range(0, len(self), batch):
            cols, ops = self.cols[b : b + batch], self.ops[b : b + batch]
            values = self.values[b : b + batch]
            mask = np.ones((len(cols), len(rows)), dtype=bool)
            for slot in range(cols.shape[1]):
                for j in np.unique(cols[:, slot]):
                    x = columns[j][None, :]
                    here = cols[:, slot] == j
                    for op in (EQ, LE, GE):
                        at = np.nonzero(here & (ops[:, slot] == op))[0]
                        if not len(at):
                            continue
                        v = values[at, slot][:, None]
                        with np.errstate(invalid="ignore"):
                            if op == LE:
                                mask[at] &= x <= v
                            elif op == GE:
                                mask[at] &= x >= v
                            elif np.isnan(v).any():
                                mask[at] &= (x == v) | (null[j][None, :] & np.isnan(v))
                            else:
                                mask[at] &= x == v
            out[b : b + batch] = mask.sum(axis=1)
        return out


def _univariate(rows: np.ndarray, categorical: np.ndarray, count: int, rng) -> _Predicates:
    """Values one row holds; a numeric column's minimum or maximum where one row holds it."""
    cols, ops, values = [], [], []
    for j in range(rows.shape[1]):
        x = rows[:, j]
        if np.isnan(x).sum() == 1:
            cols.append(j), ops.append(EQ), values.append(np.nan)
        present = x[~np.isnan(x)]
        if not len(present):
            continue
        uniq, n = np.unique(present, return_counts=True)
        for v in uniq[n == 1]:
            cols.append(j), ops.append(EQ), values.append(v)
        if not categorical[j]:
            if n[0] == 1:
                cols.append(j), ops.append(LE), values.append(uniq[0])
            if n[-1] == 1 and len(uniq) > 1:
                cols.append(j), ops.append(GE), values.append(uniq[-1])
    found = _Predicates(
        np.array(cols, dtype=np.int64).reshape(-1, 1),
        np.array(ops, dtype=np.int64).reshape(-1, 1),
        np.array(values, dtype=float).reshape(-1, 1),
    )
    if len(found) > count:
        found = found.take(np.sort(rng.choice(len(found), count, replace=False)))
    return found


def _multivariate(rows: np.ndarray, categorical: np.ndarray, count: int, rng) -> _Predicates:
    """A random row and up to three random columns: its category, at most or at least its
    number, NULL where NULL; kept when true of that row alone (duplicates dropped)."""
    n, width = rows.shape
    q = min(PREDICATE_COLUMNS, width)
    kept: list[_Predicates] = []
    seen: set = set()
    found, attempts, batch = 0, 0, 256
    while found < count and attempts < ATTEMPTS_PER_PREDICATE * count:
        at = rng.integers(n, size=batch)
        cols = np.argsort(rng.random((batch, width)), axis=1)[:, :q]
        values = rows[at[:, None], cols]
        direction = rng.integers(LE, GE + 1, size=(batch, q))
        ops = np.where(categorical[cols] | np.isnan(values), EQ, direction)
        candidates = _Predicates(cols, ops, values)
        unique = candidates.counts(rows) == 1
        keep = []
        for i in np.nonzero(unique)[0]:
            key = tuple(
                sorted(zip(cols[i], ops[i], np.nan_to_num(values[i], nan=np.inf), strict=True))
            )
            if key not in seen and found < count:
                seen.add(key)
                keep.append(i)
                found += 1
        kept.append(candidates.take(np.array(keep, dtype=np.int64)))
        attempts += batch
    return _Predicates(
        np.concatenate([p.cols for p in kept]),
        np.concatenate([p.ops for p in kept]),
        np.concatenate([p.values for p in kept]),
    )


def _singling_out(build, pairs, categorical, count) -> tuple[int, int, int, int]:
    """(successes, predicates) on the training side and on the control side: each side's
    predicates come from its attacker's rows, drawn with the same seed, and succeed when true
    of exactly one of the rows attacked."""
    out = []
    for reference, attacked in pairs:
        predicates = build(reference, categorical, count, np.random.default_rng(SPLIT_SEED))
        hits = int((predicates.counts(attacked) == 1).sum()) if len(predicates) else 0
        out.append((hits, len(predicates)))
    (a, n_a), (b, n_b) = out
    return a, b, n_a, n_b


# ---------------------------------------------------------------------------------------------
# Judging


def wilson_high(share: float, n: int, z: float) -> float:
    return 1.0 - wilson_low(1.0 - share, n, z)


def _judged(on: str, main: int, control: int, n_main: int, n_control: int, k: int) -> AttackResult:
    """The risk (main - control) / (1 - control) and its lower bound."""
    if n_main < k or n_control < k:
        return AttackResult(on=on, note=f"fewer than k={k} attacks on a side")
    a = Rate(count=int(main), of=n_main)
    c = Rate(count=int(control), of=n_control)
    result = AttackResult(on=on, main=a, control=c)
    if c.value >= 1:
        result.note = "every control attack succeeds: nothing to tell apart"
        return result
    result.risk = (a.value - c.value) / (1 - c.value)
    low, high = wilson_low(a.value, a.of, PAIR_Z), wilson_high(c.value, c.of, PAIR_Z)
    result.risk_low = (low - high) / (1 - high) if high < 1 else -1.0
    return result


def _membership(member: np.ndarray, other: np.ndarray) -> AttackResult:
    """AUC of 'closer is a member' over training (member) and control (other) targets, ties
    counting half, with its lower bound (Hanley and McNeil's standard error)."""
    held = np.sort(other)
    above = len(held) - np.searchsorted(held, member, side="right")
    ties = np.searchsorted(held, member, side="right") - np.searchsorted(held, member, side="left")
    auc = Rate(count=float(((above + 0.5 * ties) / len(held)).sum()), of=len(member))
    a, n1, n2 = auc.value, len(member), len(held)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    return AttackResult(
        on="all compared columns",
        main=auc,
        control=Rate(count=1, of=2, fixed=True),
        risk=a,
        risk_low=a - CONFIDENCE_Z * math.sqrt(max(0.0, var)),
    )
