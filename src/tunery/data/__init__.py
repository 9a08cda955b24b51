"""Data: read a file, detect its format, turn rows into `Example`s and check the whole set.

    from tunery.data import check_data, load_examples

    data = load_examples("data/train.jsonl")    # raises DataFileError if the file cannot be read
    report = check_data(data)                   # duplicates, errors, warnings (token lengths need a counter)
    report.to_dict()                            # for --json, the API and the dashboard

The reports are plain objects; `tunery.cli.render_data` draws them in a terminal.
Importing this package is cheap: pandas, pyarrow, datasets and numpy load only
inside the functions that need them.
"""

from tunery.data.check import DataReport, LengthStats, check_data
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
    "to_example",
]
