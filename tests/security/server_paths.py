"""A check for any answer of the service: it names no folder of the server.

    assert_no_server_path(response.json(), server_roots(settings), allowed=[str(model_dir)])

`server_roots` lists what an answer must never contain: the artifact root (every project's files,
runs and models), the data folder, the temporary folder, the home folder and the working folder.
`allowed` holds strings the caller itself sent (a model folder under the server's model roots),
which the service echoes as sent. Works on parsed JSON, text and bytes alike.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def server_roots(settings: Any = None, *extra: str | Path) -> list[str]:
    """The server's folders: the settings' artifact root and data folder, tmp, home and cwd."""
    roots: list[str | Path] = [tempfile.gettempdir(), Path.home(), os.getcwd(), *extra]
    if settings is not None:
        roots += [settings.artifacts, settings.data_dir]
    found = {str(root) for root in roots} | {str(Path(root).resolve()) for root in roots}
    return sorted(root.rstrip("/") for root in found if root.rstrip("/"))


def strings_of(body: Any) -> Iterator[str]:
    """Every string of a parsed JSON body, keys included."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        yield body
    elif isinstance(body, dict):
        for key, value in body.items():
            yield str(key)
            yield from strings_of(value)
    elif isinstance(body, list | tuple):
        for item in body:
            yield from strings_of(item)


def assert_no_server_path(body: Any, roots: Iterable[str], allowed: Iterable[str] = ()) -> None:
    """Fail, naming the string and the folder, when any string of `body` contains a server folder."""
    allowed = sorted(allowed, key=len, reverse=True)
    for text in strings_of(body):
        for echoed in allowed:
            text = text.replace(echoed, "")
        for root in roots:
            if root + "/" in text or text == root or text.endswith(root):
                shown = json.dumps(text)[:300]
                raise AssertionError(f"a response shows the server folder {root}: {shown}")
