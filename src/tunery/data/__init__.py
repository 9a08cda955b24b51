"""Data: read a file, detect its format, turn rows into `Example`s and check the whole set.

    from tunery.data import check_data, load_examples, render_report

    data = load_examples("data/train.jsonl")    # raises DataFileError if the file cannot be read
    report = check_data(data)                   # duplicates, errors, warnings (token lengths need a counter)
    Console().print(render_report(report))

Importing this package is cheap: pandas, pyarrow, datasets, numpy and rich load only
inside the functions that need them.
"""

from tunery.data.check import DataReport, LengthStats, check_data, render_report
from tunery.data.formats import detect_format, load_examples, to_example
from tunery.data.load import read_rows
from tunery.data.types import (
    FORMATS,
    DataFileError,
    Example,
    LoadedData,
    Message,
    RowError,
    TokenCount,
)

__all__ = [
    "FORMATS",
    "DataFileError",
    "DataReport",
    "Example",
    "LengthStats",
    "LoadedData",
    "Message",
    "RowError",
    "TokenCount",
    "check_data",
    "detect_format",
    "load_examples",
    "read_rows",
    "render_report",
    "to_example",
]
