"""PostgreSQL's binary COPY format, encoded with NumPy: a chunk of rows becomes a few byte arrays
the COPY stream takes as they are.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from .schema import ColumnDef

# PostgreSQL's binary COPY format: a signature, flags and header extension length, then per row
# a 16-bit field count and per field a 32-bit byte length (-1 for NULL) and the value's bytes,
# all big-endian; a field count of -1 ends the stream.
COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_BINARY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_MICROS = _PG_EPOCH_DAYS * 86_400_000_000
_BATCH_BYTES = 1 << 20  # rows are assembled in batches of about this size, to stay in cache
# Chunks are encoded and sent in pieces of this many rows, up to four pieces ahead of the
# database: small enough for the server to start early, large enough to amortise the calls.
COPY_PIECE_ROWS = 65_536
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_FIXED = {
    "integer": (">i8", 8),
    "float": (">f8", 8),
    "date": (">i4", 4),
    "datetime": (">i8", 8),
    "boolean": (">u1", 1),
}


def _big_endian(values: np.ndarray, code: str, width: int) -> np.ndarray:
    """Values as big-endian bytes, seen as native unsigned integers of the same width."""
    return np.ascontiguousarray(values.astype(code)).view(_UINT[width])


def _strided(buf: np.ndarray, pos: int, row_bytes: int, rows: int, dtype) -> np.ndarray:
    """A view of one field in every row of a row-major byte buffer (unaligned is fine)."""
    return np.ndarray(shape=(rows,), dtype=dtype, buffer=buf, offset=pos, strides=(row_bytes,))


class _FixedField:
    """A fixed-width column: 4 length bytes, then the value (or only length -1 for NULL)."""

    def __init__(self, s: pl.Series, logical: str):
        code, self.width = _FIXED[logical]
        if logical == "date":
            v = s.cast(pl.Date).cast(pl.Int32).fill_null(0).to_numpy() - _PG_EPOCH_DAYS
        elif logical == "datetime":
            v = s.cast(pl.Datetime("us")).cast(pl.Int64).fill_null(0).to_numpy() - _PG_EPOCH_MICROS
        elif logical == "boolean":
            v = s.cast(pl.Boolean).cast(pl.UInt8).fill_null(0).to_numpy()
        elif logical == "integer":
            v = s.cast(pl.Int64).fill_null(0).to_numpy()
        else:
            v = s.cast(pl.Float64).fill_null(0).to_numpy()
        self.values = _big_endian(v, code, self.width)
        self.length = _big_endian(np.array([self.width]), ">i4", 4)[0]
        self.lengths = self.keep = None
        if s.null_count():
            valid = s.is_not_null().to_numpy()
            self.lengths = _big_endian(np.where(valid, self.width, -1), ">i4", 4)
            # every byte of a value is kept (1) or dropped (0) with its row's validity
            ones = _UINT[self.width](int.from_bytes(b"\x01" * self.width, "little"))
            self.keep = valid.astype(_UINT[self.width]) * ones

    def slot(self, a: int, b: int) -> int:
        return self.width

    def fill(self, out, keep, row_bytes: int, pos: int, a: int, b: int, width: int) -> None:
        n = b - a
        lengths = self.length if self.lengths is None else self.lengths[a:b]
        _strided(out, pos, row_bytes, n, np.uint32)[...] = lengths
        _strided(out, pos + 4, row_bytes, n, _UINT[self.width])[...] = self.values[a:b]
        if self.keep is not None:
            _strided(keep, pos + 4, row_bytes, n, _UINT[self.width])[...] = self.keep[a:b]


class _TextField:
    """A string column: 4 length bytes, then its UTF-8 bytes (or only length -1 for NULL)."""

    def __init__(self, s: pl.Series):
        n = len(s)
        arr = s.cast(pl.Utf8).to_arrow(compat_level=pl.CompatLevel.oldest())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.type != pa.large_utf8():
            arr = arr.cast(pa.large_utf8())
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
        data = arr.buffers()[2]
        data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        lens = np.diff(offsets)
        valid = s.is_not_null().to_numpy() if s.null_count() else None
        if valid is not None:
            lens = np.where(valid, lens, 0)
        widest = int(lens.max()) if n else 0
        # rows of the data buffer as overlapping windows, so a batch's values are one gather
        padded = np.concatenate([data, np.zeros(widest + 1, np.uint8)])
        self.windows = np.lib.stride_tricks.sliding_window_view(padded, max(widest, 1))
        self.starts = offsets[:-1]
        self.lens = lens
        self.lengths = _big_endian(lens if valid is None else np.where(valid, lens, -1), ">i4", 4)

    def slot(self, a: int, b: int) -> int:
        return int(self.lens[a:b].max()) if b > a else 0

    def fill(self, out, keep, row_bytes: int, pos: int, a: int, b: int, width: int) -> None:
        n = b - a
        _strided(out, pos, row_bytes, n, np.uint32)[...] = self.lengths[a:b]
        if not width:
            return
        body = np.ascontiguousarray(self.windows[self.starts[a:b], :width])
        _strided(out, pos + 4, row_bytes, n, f"V{width}")[...] = body.view(f"V{width}").ravel()
        inside = (np.arange(width) < self.lens[a:b, None]).view(np.uint8)
        _strided(keep, pos + 4, row_bytes, n, f"V{width}")[...] = inside.view(f"V{width}").ravel()


def binary_copy_rows(df: pl.DataFrame, columns: list[ColumnDef]) -> list[np.ndarray]:
    """The rows of ``df`` in PostgreSQL's binary COPY format (without header and trailer).

    Vectorised: each batch of rows is laid out in a row-major buffer with every field at its
    widest, filled column by column through strided views, and the unused bytes (NULL values,
    short strings) are then dropped in one filter.
    """
    n = df.height
    fields: list[_FixedField | _TextField] = [
        _TextField(df[c.name])
        if c.logical_type == "string"
        else _FixedField(df[c.name], c.logical_type)
        for c in columns
    ]
    fixed = 2 + sum(4 + f.width for f in fields if isinstance(f, _FixedField))
    texts = sum(1 for f in fields if isinstance(f, _TextField))
    masked = texts > 0 or any(f.keep is not None for f in fields if isinstance(f, _FixedField))
    count = _big_endian(np.array([len(fields)]), ">i2", 2)[0]
    step = max(16, _BATCH_BYTES // (fixed + 24 * texts))
    out = []
    for a in range(0, n, step):
        b = min(n, a + step)
        widths = [f.slot(a, b) for f in fields]
        row_bytes = 2 + sum(4 + w for w in widths)
        buf = np.empty((b - a) * row_bytes, np.uint8)
        keep = np.ones((b - a) * row_bytes, np.uint8) if masked else None
        _strided(buf, 0, row_bytes, b - a, np.uint16)[...] = count
        pos = 2
        for f, w in zip(fields, widths, strict=True):
            f.fill(buf, keep, row_bytes, pos, a, b, w)
            pos += 4 + w
        out.append(buf if keep is None else pl.Series(buf).filter(pl.Series(keep) != 0).to_numpy())
    return out
