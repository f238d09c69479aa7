"""Render benchmarks/results.jsonl as the Markdown tables of BENCHMARKS.md.

python -m benchmarks.report > /tmp/tables.md
"""

from __future__ import annotations

import json
import statistics as stats_
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.jsonl"


def fmt(n: float) -> str:
    return f"{n:,.0f}"


def main() -> None:
    rows = [json.loads(ln) for ln in RESULTS.read_text().splitlines() if ln.strip()]
    out = []
    for r in rows:
        f = r["figure"]
        cmd = f"`{r['command']}`"
        if f == "postgres_write":
            rps = r["rows_per_second"]
            out.append(
                f"| PostgreSQL write, {fmt(r['rows'])} rows x {r['columns']} cols "
                f"(median of {r['repeat']}) | pipeline {fmt(rps['pipeline'])} rows/s | raw binary "
                f"COPY {fmt(rps['raw_binary'])} / raw CSV COPY {fmt(rps['raw_csv'])} rows/s | "
                f"**{r['pipeline_vs_raw_binary']:.0%}** of raw binary, "
                f"{r['pipeline_vs_raw_csv']:.0%} of raw CSV | {cmd} |"
            )
        elif f == "sqlite_and_csv":
            rps = r["rows_per_second"]
            out.append(
                f"| SQLite write, {fmt(r['rows'])} rows (median of {r['repeat']}) | pipeline "
                f"{fmt(rps['sqlite_pipeline'])} rows/s | raw executemany of prepared tuples "
                f"{fmt(rps['sqlite_raw_executemany'])} rows/s | "
                f"**{r['sqlite_pipeline_vs_raw_executemany']:.0%}** | {cmd} |"
            )
            out.append(
                f"| CSV bundle export, {fmt(r['rows'])} rows | from SQLite "
                f"{fmt(rps['csv_bundle_export'])} rows/s, from PostgreSQL "
                f"{fmt(rps['csv_bundle_export_postgres'])} rows/s (byte-identical files: "
                f"{r['bundle_from_postgres_and_sqlite_identical']}) | Polars `write_csv` from "
                f"memory {fmt(rps['polars_write_csv'])} rows/s (`write_parquet` "
                f"{fmt(rps['polars_write_parquet'])}) | **{r['bundle_vs_polars_write_csv']:.0%}** "
                f"(SQLite), {rps['csv_bundle_export_postgres'] / rps['polars_write_csv']:.0%} "
                f"(PostgreSQL) | {cmd} |"
            )
        elif f == "statistics_postgres" and "summarise_table_exact" in r["seconds"]:
            s, reads = r["seconds"], r["statements_reading_the_table"]
            out.append(
                f"| Statistics of a {fmt(r['rows'])}-row, {r['columns']}-column PostgreSQL table "
                f"(median of {r['repeat']}) | `summarise_table` {stats_.median(s['summarise_table']):.1f} s "
                f"in {reads['summarise_table']} statements (high-cardinality columns from a sample); "
                f"exact {stats_.median(s['summarise_table_exact']):.1f} s in "
                f"{reads['summarise_table_exact']} statements | one `SELECT count(*)` "
                f"{stats_.median(s['count_star']):.2f} s | **{r['summarise_in_count_star_scans']}x** "
                f"a count(*) scan; exact {r['exact_in_count_star_scans']}x | {cmd} |"
            )
        elif f == "statistics_postgres":
            s = r["seconds"]
            out.append(
                f"| Statistics of a {fmt(r['rows'])}-row, {r['columns']}-column PostgreSQL table "
                f"| `summarise_table` {s['summarise_table'][0]:.1f} s | one `SELECT count(*)` "
                f"{s['count_star'][0]:.2f} s | **{r['summarise_in_count_star_scans']}x** a "
                f"count(*) scan | {cmd} |"
            )
        elif f == "peak_memory":
            out.append(
                f"| Peak RSS, {fmt(r['rows'])} rows generated, sink {r['sink']} | "
                f"**{r['peak_rss_mib']} MiB** | {r['seconds']} s, {fmt(r['rows_per_second'])} "
                f"rows/s | | {cmd} |"
            )
        elif f == "demo_end_to_end":
            out.append(
                f"| `synth-pipeline demo`, all {r['tables']} tables through Dagster ({r['code']}) "
                f"| **{r['seconds']} s** | {fmt(r['bundle_rows'])} bundle rows, peak RSS "
                f"{r['peak_rss_mib']} MiB, exit {r['exit_status']} | | {cmd} |"
            )
        elif f == "machine":
            out.append(
                f"| machine at {r['at']} | nproc {r['nproc']}, {r['memory_gib']} GiB, {r['cpu']}, "
                f"load {r['load_average_1min']:.2f} | Python {r['python']}, PostgreSQL "
                f"{r['postgresql']}, SQLite {r['sqlite']}, polars {r['polars']}, pyarrow "
                f"{r['pyarrow']}, numpy {r['numpy']}, psycopg {r['psycopg']}, SQLAlchemy "
                f"{r['sqlalchemy']}, dagster {r['dagster']} | | {cmd} |"
            )
    print("| what | ours | the limit / reference | ratio | command |")
    print("|---|---|---|---|---|")
    print("\n".join(out))


if __name__ == "__main__":
    main()
