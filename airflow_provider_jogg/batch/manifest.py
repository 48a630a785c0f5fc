"""The batch's input: its clips, as a list of rows (inline or from XCom) or a CSV/JSONL manifest file.

A row names a clip (unique: it names the result file), its video and its audio (anything
``LipSyncOperator`` takes: an http(s) URL, a local path, a URI, an ``ObjectStoragePath``), and
optionally a ``playback_type`` and an ``output_path``. Every row is checked before the batch sends
any request, and all bad rows are reported together, so a 10,000-row manifest with a typo on three
lines fails once, naming the three lines. Files are checked for form only here (a media name Jogg
takes); whether they exist is the operator's check, made before it uploads anything.

A manifest file is read line by line (bytes, decoded per line), so its size costs memory only for
the rows it yields, and a bad byte is reported on its own line.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.batch.clip_rules import (
    check_row,
    is_path_object,
    key_problems,
    name_key,
    short,
)
from airflow_provider_jogg.media_inputs import to_path
from airflow_provider_jogg.validation import validate_playback_type

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: manifest formats, by file suffix
FORMATS: dict[str, str] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: bad rows quoted in the error; the rest are counted
MAX_REPORTED = 20
#: a longer physical line is not a manifest (a binary file, say): fail instead of buffering it
MAX_LINE_BYTES = 1024 * 1024
#: bytes read from a manifest at a time
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ClipRow:
    """
    One clip of a batch, checked.

    :param clip: the clip's name, unique in the batch; it names the result file
    :param video: the video as given: an http(s) URL, a local path or a URI (an ``ObjectStoragePath``
        is kept as its URI string, which names its connection)
    :param audio: the audio, in the same forms
    :param playback_type: one of :data:`~airflow_provider_jogg.validation.PLAYBACK_TYPES`
    :param output_path: where to save this clip's result, ``None`` for the batch's default
    :param line: the 1-based line of the manifest file the row starts on, or the 1-based position
        of the row in a list
    """

    clip: str
    video: str
    audio: str
    playback_type: str = "normal"
    output_path: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as plain JSON (XCom-safe); ``ClipRow(**row.to_dict())`` rebuilds it."""
        return dataclasses.asdict(self)


def read_clips(source: Any, *, default_playback_type: str = "normal") -> list[ClipRow]:
    """
    The clips of a batch, every row checked before any is returned.

    :param source: a list (or tuple) of dicts with the keys ``clip``, ``video`` (or ``video_url``),
        ``audio`` (or ``audio_url``) and optionally ``playback_type`` and ``output_path``; or the
        location of a manifest file: a path, a ``file://``/``s3://``/... URI, a ``pathlib.Path`` or
        an ``ObjectStoragePath`` of a ``.csv`` (a header row with those keys as columns; blank lines
        and lines starting with ``#`` are skipped) or ``.jsonl``/``.ndjson`` file (one JSON object
        per line; blank lines are skipped), UTF-8 with or without a BOM
    :param default_playback_type: the ``playback_type`` of rows that give none
    :raises JoggConfigError: the source is not a list or a manifest location, the file cannot be
        found or is not a manifest, it lists no clips, or rows are bad: one error lists up to
        :data:`MAX_REPORTED` of them as ``line N (clip 'x'): problem``
    :raises JoggError: the file was found but reading it failed (a retry may succeed)
    """
    try:
        default = validate_playback_type(default_playback_type)
    except exc.JoggConfigError as error:
        raise exc.JoggConfigError(f"default_playback_type: {error}") from None
    if isinstance(source, (str, os.PathLike)) or is_path_object(source):
        return _read_file(source, default)
    if isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
        entries = ((number, raw, None) for number, raw in enumerate(source, start=1))
        return _check_rows(entries, "clips", "row", default)
    raise exc.JoggConfigError(
        "clips must be a list of rows (dicts) or the location of a .csv or .jsonl manifest, "
        f"got {type(source).__name__}."
    )


def manifest_fingerprint(rows: Iterable[ClipRow]) -> str:
    """
    A short, stable hash of the rows' content, in their order (their line numbers are left out, so
    a comment added to the manifest does not change it): the same batch run again has the same
    fingerprint, a changed manifest almost surely another.
    """
    digest = hashlib.sha256(b"jogg-batch-manifest-v1\n")
    for row in rows:
        fields = [row.clip, row.video, row.audio, row.playback_type, row.output_path]
        digest.update(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()[:16]


def _read_file(location: Any, default: str) -> list[ClipRow]:
    if isinstance(location, str) and location.lstrip()[:1] in ("[", "{"):
        # a template that pulled a list renders it as text unless the DAG renders native objects
        raise exc.JoggConfigError(
            "clips is text that looks like a list of rows, not a list: pass the XComArg itself, or "
            "set render_template_as_native_obj=True on the DAG."
        )
    path = to_path(location, "manifest")
    where = f"manifest {short(location.strip() if isinstance(location, str) else str(path), 300)}"
    fmt = FORMATS.get(str(path.suffix).lower())
    if fmt is None:
        raise exc.JoggConfigError(
            f"{where}: cannot tell the manifest's format from its name; use a file ending in "
            f"{', '.join(FORMATS)}."
        )
    try:
        stream = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as error:
        raise exc.JoggConfigError(f"{where} cannot be opened: {error}") from None
    except Exception as error:
        # a storage or network failure: not the manifest's fault, so an Airflow retry may succeed
        raise exc.JoggError(f"{where} cannot be opened: {type(error).__name__}: {error}") from error
    with stream:
        lines = _Lines(stream, where, skip_comments=fmt == "csv")
        entries = _csv_entries(lines, where) if fmt == "csv" else _jsonl_entries(lines)
        return _check_rows(entries, where, "line", default)


class _Lines:
    """
    A manifest's text lines, numbered, read one at a time; blank lines (and, for CSV, ``#`` lines)
    between records are skipped. ``start`` is the line the current record began on: a CSV record
    may span lines inside quotes, and the reader asks for its lines one by one.
    """

    def __init__(self, stream: BinaryIO, where: str, *, skip_comments: bool) -> None:
        self._where = where
        self._skip_comments = skip_comments
        self._raw = self._split(stream)
        self.number = 0
        self.start = 0
        self._between = True

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            text = self._decode(next(self._raw))
            if self._between:
                if not text.strip() or (self._skip_comments and text.startswith("#")):
                    continue
                self.start = self.number
                self._between = False
            return text

    def end_record(self) -> None:
        self._between = True

    def _split(self, stream: BinaryIO) -> Iterator[bytes]:
        # read() in chunks and split here: fsspec's files (s3://, ...) have no readline(limit), and
        # a limit is what keeps a file without line breaks from being read into memory whole
        pending = b""
        while True:
            try:
                chunk = stream.read(READ_CHUNK)
            except Exception as error:
                raise exc.JoggError(
                    f"{self._where} could not be read after line {self.number}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if not chunk:
                break
            pending += chunk
            start = 0
            while (end := pending.find(b"\n", start)) >= 0:
                yield self._bounded(pending[start : end + 1])
                start = end + 1
            pending = self._bounded(pending[start:])
        if pending:  # the last line, without a line break
            yield pending

    def _bounded(self, line: bytes) -> bytes:
        if len(line) > MAX_LINE_BYTES:
            raise exc.JoggConfigError(
                f"{self._where}, line {self.number + 1}: longer than {MAX_LINE_BYTES} bytes; "
                "is it a CSV or JSONL manifest?"
            )
        return line

    def _decode(self, raw: bytes) -> str:
        self.number += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise exc.JoggConfigError(
                f"{self._where}, line {self.number}: not UTF-8 text ({error.reason} at byte {error.start}); "
                "save the manifest as UTF-8."
            ) from None
        # a BOM (Excel's "CSV UTF-8") marks the encoding: it is not part of the first cell
        return text.removeprefix("\ufeff") if self.number == 1 else text


_Entry = tuple[int, Any, "str | None"]  # (line, the raw row or None, a problem of the line itself)


def _csv_entries(lines: _Lines, where: str) -> Iterator[_Entry]:
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        lines.end_record()
        if header is None:
            return
        columns = _csv_columns([cell.strip() for cell in header], f"{where}, line {lines.start}")
        for values in reader:
            line = lines.start
            lines.end_record()
            if len(values) != len(columns):
                yield line, None, f"{len(values)} values, but the header has {len(columns)} columns"
            else:
                yield line, dict(zip(columns, values, strict=True)), None
    except csv.Error as error:
        raise exc.JoggConfigError(f"{where}, line {lines.number}: not valid CSV: {error}") from None


def _csv_columns(columns: list[str], where: str) -> list[str]:
    """The header's columns, checked: a misspelt column is an error, not a silently ignored one."""
    problems = []
    if "" in columns:
        problems.append(f"column {columns.index('') + 1} has no name")
    doubled = sorted({c for c in columns if c and columns.count(c) > 1})
    if doubled:
        problems.append(f"column {', '.join(map(repr, doubled))} appears more than once")
    problems += key_problems([c for c in columns if c], "column", required=True)
    if problems:
        raise exc.JoggConfigError(f"{where}: the header is not usable: {'; '.join(problems)}.")
    return columns


def _jsonl_entries(lines: _Lines) -> Iterator[_Entry]:
    for text in lines:
        line = lines.start
        lines.end_record()
        try:
            row = json.loads(text, object_pairs_hook=_object_without_repeats)
        except _RepeatedKeyError as error:
            yield line, None, str(error)
            continue
        except ValueError as error:
            yield line, None, f"not valid JSON: {getattr(error, 'msg', error)}"
            continue
        if not isinstance(row, dict):
            kind = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
            yield line, None, f"{kind.get(type(row), 'a number')}, not a JSON object"
            continue
        yield line, row, None


class _RepeatedKeyError(ValueError):
    pass


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys: a row that names its video twice is ambiguous
    keys = [key for key, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise _RepeatedKeyError(f"key {', '.join(map(repr, repeated))} appears more than once")
    return dict(pairs)


def _check_rows(entries: Iterable[_Entry], where: str, unit: str, default: str) -> list[ClipRow]:
    rows: list[ClipRow] = []
    bad: list[str] = []
    bad_count = 0
    seen: dict[str, tuple[int, str]] = {}  # a clip name's file-name key -> (line, name as given)
    for line, raw, problem in entries:
        row, clip, problems = None, None, [problem] if problem else []
        if raw is not None:
            values, clip, problems = check_row(raw, default)
            row = ClipRow(**values, line=line) if values is not None else None
        if clip is not None:
            key = name_key(clip)
            if key in seen:
                first_line, first = seen[key]
                problems.append(f"clip name already used on {unit} {first_line}")
                if first != clip:
                    problems[-1] += (
                        f" as {short(first)}: names differing only in case or Unicode form name one "
                        "file on macOS and Windows"
                    )
            else:
                seen[key] = (line, clip)
        if row is not None and not problems:
            rows.append(row)
            continue
        bad_count += 1
        if len(bad) < MAX_REPORTED:
            named = f" (clip {short(clip)})" if clip is not None else ""
            bad.append(f"{unit} {line}{named}: {'; '.join(problems)}")
    if bad_count:
        rows_word = "row" if bad_count == 1 else "rows"
        summary = f"{where}: {bad_count} bad {rows_word}, nothing was sent to Jogg:"
        more = [f"... and {bad_count - len(bad)} more"] if bad_count > len(bad) else []
        raise exc.JoggConfigError("\n".join([summary, *bad, *more]))
    if not rows:
        raise exc.JoggConfigError(f"{where} lists no clips: there is nothing to lip-sync.")
    return rows
