"""Column statistics by aggregate SQL pushed down to the source, released through disclosure control.

A table costs a fixed number of statements, whatever its width:

1. one scan counts rows and, per column, non-null values, zeros in references, over-long
   strings and start/end pairs;
2. one statement counts the distinct values of the value columns, in the table or, above
   ``PROBE_ROWS``, in a repeatable sample of that many rows, to tell the high-cardinality
   columns (more than the listing limit there means more in the table);
3. one grouped statement counts every value of the other columns and of derived expressions
   (year, month, hour, string length, days from a start date) and, in the same statement,
   reduces them inside the database to what is needed: distinct counts, the frequencies of
   listable columns, the values at the ranks the quantile windows need, and children per parent
   of references. On PostgreSQL it is one scan (``GROUPING SETS``); SQLite, which has no
   grouping sets, reads the table once per expression inside that statement, so there the
   columns are read once (before step 2, whose distinct counts then come from that read when
   it is not sampled) and counted in Python wherever that is known to give the same numbers
   (:mod:`.local`), the statement keeping only the rest;
4. one statement ranks the high-cardinality columns (a sort each) for their quantiles and, when
   step 2 was sampled, their exact distinct counts (SQLite ranks in a second statement). Above
   ``sample_rows`` it runs on a repeatable sample instead (PostgreSQL ``TABLESAMPLE SYSTEM``,
   SQLite every n-th rowid); those columns' distinct counts are then not released and the
   table's findings say so. Every count, listed value and histogram stays exact.

Per-group statistics (``conditional``) add one or two grouped queries per configured pair, and
a never-listed string a small ``LIMIT`` sample whose shape alone is kept. Only aggregates cross
the connection. Raw aggregates stay inside :func:`summarise_table`; what it returns has passed
:mod:`..disclosure`.

The modules, in the order a table goes through them:

- :mod:`.table`: :func:`summarise_table`, which runs the steps and hands each column on;
- :mod:`.passes`: steps 1 and 3 (the first scan, the grouped pass, per dialect);
- :mod:`.local`: step 3 on SQLite for clean columns, counted in Python from one read;
- :mod:`.plan`: step 2 and what step 3 groups by (which columns, which expressions, which ranks);
- :mod:`.ranks`: step 4 and the rank queries (PostgreSQL ``percentile_disc``, SQLite
  ``ROW_NUMBER``), and the repeatable samples;
- :mod:`.release`: disclosure rules on the raw results: counts, quantile windows;
- :mod:`.values`, :mod:`.dates`, :mod:`.references`: each kind of column's released statistics;
- :mod:`.groups`: per-group statistics (conditional pairs, twin columns);
- :mod:`.context`: what the summaries of one table's columns share; :mod:`.scalars`: database
  scalars as Python values.
"""

from .plan import PROBE_ROWS, SAMPLE_ROWS
from .table import summarise_table

__all__ = ["PROBE_ROWS", "SAMPLE_ROWS", "summarise_table"]
