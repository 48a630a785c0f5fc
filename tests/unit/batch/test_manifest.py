"""The batch's input manifest: rows inline or from CSV/JSONL files (local, file://, s3:// on moto)."""

from __future__ import annotations

import csv
import itertools
import json
import unicodedata
from typing import TYPE_CHECKING

import pytest

from airflow_provider_jogg import exceptions as exc
from airflow_provider_jogg.batch import ClipRow, manifest_fingerprint, read_clips
from airflow_provider_jogg.batch.manifest import MAX_LINE_BYTES, MAX_REPORTED, READ_CHUNK

if TYPE_CHECKING:
    from pathlib import Path

V, A = "https://cdn.example/v/1.mp4", "https://cdn.example/a/1.mp3"
_buckets = itertools.count()


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def config_error(source, **kwargs) -> str:
    with pytest.raises(exc.JoggConfigError) as caught:
        read_clips(source, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------------------------------
# what a good manifest gives
# --------------------------------------------------------------------------------------------------
def test_csv_with_bom_comments_blank_lines_aliases_and_optional_columns(tmp_path):
    manifest = write(
        tmp_path / "clips.csv",
        "# the German dubs of week 12\n"
        "clip,video_url,audio,playback_type,output_path\n"
        "\n"
        "interview-de, https://cdn.example/v/interview.mp4 ,/data/dubs/interview.de.m4a,,\n"
        "# teaser: loops the video to the dub's length\n"
        "teaser-de,s3://media/clips/teaser.mp4,s3://media/dubs/teaser.de.mp3,normal_reverse_by_audio,"
        "s3://out/teaser-de.mp4\n"
        '"#1 ceo",/data/ceo.mov,"https://cdn.example/a/ceo.wav?sig=a,b",normal,\n',
        bom=True,
    )
    assert read_clips(manifest) == [
        ClipRow("interview-de", "https://cdn.example/v/interview.mp4", "/data/dubs/interview.de.m4a", line=4),
        ClipRow(
            "teaser-de",
            "s3://media/clips/teaser.mp4",
            "s3://media/dubs/teaser.de.mp3",
            "normal_reverse_by_audio",
            "s3://out/teaser-de.mp4",
            line=6,
        ),
        # a quoted cell starting with # is a value, not a comment
        ClipRow("#1 ceo", "/data/ceo.mov", "https://cdn.example/a/ceo.wav?sig=a,b", line=7),
    ]


def test_a_quoted_cell_over_two_lines_is_reported_on_the_line_its_row_starts(tmp_path):
    manifest = write(
        tmp_path / "m.csv", f'clip,video,audio\nok,{V},{A}\n"two\nlines",{V},{A}\nlast,{V},{A}\n'
    )
    message = config_error(manifest)
    assert "line 3: clip 'two\\nlines' contains a control character" in message
    manifest.write_text(f'clip,video,audio\nok,{V},"{A}"\nlast,{V},{A}\n')
    assert [r.line for r in read_clips(manifest)] == [2, 3]


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".JSONL"])
def test_jsonl(tmp_path, suffix):
    manifest = write(
        tmp_path / f"clips{suffix}",
        json.dumps({"clip": "a", "video_url": V, "audio_url": A})
        + "\n\n"
        + json.dumps(
            {"clip": "b", "video": "/v/b.mp4", "audio": "/a/b.mp3", "playback_type": "normal_reverse"}
        )
        + "\r\n"
        + json.dumps(
            {"clip": "c", "video": V, "audio": A, "playback_type": None, "output_path": "/out/c.mp4"}
        ),
        bom=True,
    )
    assert read_clips(manifest) == [
        ClipRow("a", V, A, line=1),
        ClipRow("b", "/v/b.mp4", "/a/b.mp3", "normal_reverse", line=3),
        ClipRow("c", V, A, output_path="/out/c.mp4", line=4),
    ]


def test_rows_given_as_a_list_or_tuple_with_path_objects_kept_as_strings(tmp_path):
    from airflow.sdk import ObjectStoragePath

    rows = [
        {"clip": "a", "video_url": V, "audio_url": A},
        {
            "clip": "b",
            "video": tmp_path / "b.mp4",
            "audio": ObjectStoragePath("s3://media/b.mp3", conn_id="aws_media"),
            "output_path": ObjectStoragePath((tmp_path / "out" / "b.mp4").as_uri()),
        },
    ]
    clips = read_clips(rows)
    assert clips == [
        ClipRow("a", V, A, line=1),
        ClipRow(
            "b",
            str(tmp_path / "b.mp4"),
            # the URI keeps the connection id: the operator opens the same store with it
            "s3://aws_media@media/b.mp3",
            output_path=(tmp_path / "out" / "b.mp4").as_uri(),
            line=2,
        ),
    ]
    assert read_clips(tuple(rows)) == clips


def test_default_playback_type(tmp_path):
    rows = [
        {"clip": "a", "video": V, "audio": A},
        {"clip": "b", "video": V, "audio": A, "playback_type": "normal"},
    ]
    assert [r.playback_type for r in read_clips(rows, default_playback_type="normal_reverse")] == [
        "normal_reverse",
        "normal",
    ]
    message = config_error(rows, default_playback_type="reverse")
    assert message.startswith("default_playback_type: playback_type must be one of")


def test_clip_row_is_frozen_plain_json_and_rebuilds_from_its_dict():
    row = ClipRow("a", V, "/a.mp3", "normal_reverse", "/out/a.mp4", line=7)
    as_dict = row.to_dict()
    assert as_dict == {
        "clip": "a",
        "video": V,
        "audio": "/a.mp3",
        "playback_type": "normal_reverse",
        "output_path": "/out/a.mp4",
        "line": 7,
    }
    assert ClipRow(**json.loads(json.dumps(as_dict))) == row
    with pytest.raises(AttributeError):
        row.clip = "b"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# locations: path, pathlib.Path, file:// URI, ObjectStoragePath, s3:// on moto
# --------------------------------------------------------------------------------------------------
def test_every_local_form_of_the_location(tmp_path):
    from airflow.sdk import ObjectStoragePath

    manifest = write(tmp_path / "clips.csv", f"clip,video,audio\na,{V},{A}\n")
    expected = [ClipRow("a", V, A, line=2)]
    for location in (str(manifest), manifest, manifest.as_uri(), ObjectStoragePath(manifest.as_uri())):
        assert read_clips(location) == expected, location


@pytest.mark.parametrize("form", ["uri", "object"])
def test_a_manifest_in_s3(s3, form):
    from airflow.sdk import ObjectStoragePath

    bucket = f"jogg-manifests-{next(_buckets)}"
    s3.create_bucket(Bucket=bucket)
    rows = [{"clip": f"c{i}", "video": f"s3://{bucket}/v/{i}.mp4", "audio": A} for i in range(3)]
    s3.put_object(
        Bucket=bucket, Key="batches/week12.jsonl", Body="\n".join(json.dumps(r) for r in rows).encode()
    )
    uri = f"s3://aws_default@{bucket}/batches/week12.jsonl"
    location = (
        uri
        if form == "uri"
        else ObjectStoragePath(f"s3://{bucket}/batches/week12.jsonl", conn_id="aws_default")
    )
    assert read_clips(location) == [ClipRow(r["clip"], r["video"], A, line=i + 1) for i, r in enumerate(rows)]

    missing = f"s3://aws_default@{bucket}/batches/none.csv"
    message = config_error(missing)
    assert message.startswith(f"manifest {missing!r} cannot be opened:")


@pytest.mark.parametrize("name", ["clips.txt", "clips", "clips.csv.gz", "clips.json"])
def test_the_format_comes_from_the_suffix(tmp_path, name):
    location = write(tmp_path / name, f"clip,video,audio\na,{V},{A}\n")
    message = config_error(str(location))
    assert message == (
        f"manifest {str(location)!r}: cannot tell the manifest's format from its name; "
        "use a file ending in .csv, .jsonl, .ndjson."
    )


def test_a_missing_file_or_a_folder_names_the_location(tmp_path):
    missing = tmp_path / "none.csv"
    assert config_error(str(missing)).startswith(f"manifest {str(missing)!r} cannot be opened: [Errno 2]")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert config_error(folder).startswith(f"manifest {str(folder)!r} cannot be opened:")


class FlakyStore:
    """
    A storage path whose connection fails (after ``lines_first`` lines, or at open): a real object
    store cannot be made to reset a connection on cue.
    """

    suffix = ".csv"

    def __init__(self, path: Path, lines_first: int | None) -> None:
        self.path, self.lines_first = path, lines_first

    def __str__(self) -> str:
        return "s3://aws_default@flaky/clips.csv"

    def stat(self):
        return self.path.stat()

    def open(self, mode: str):
        if self.lines_first is None:
            raise ConnectionResetError("Connection reset by peer")
        stream, budget = self.path.open(mode), self.lines_first

        class Failing:
            def read(self, size: int = -1) -> bytes:
                nonlocal budget
                if budget == 0:
                    raise ConnectionResetError("Connection reset by peer")
                budget -= 1
                return stream.readline()  # a line at a time, so the failure comes after known lines

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                stream.close()

        return Failing()


@pytest.mark.parametrize("lines_first", [None, 2], ids=["at-open", "mid-read"])
def test_a_storage_failure_is_a_retryable_error_naming_the_location(tmp_path, lines_first):
    manifest = write(tmp_path / "clips.csv", f"clip,video,audio\na,{V},{A}\nb,{V},{A}\n")
    with pytest.raises(exc.JoggError) as caught:
        read_clips(FlakyStore(manifest, lines_first))
    assert not isinstance(caught.value, exc.JoggFatalError)  # an Airflow retry may read it
    assert "manifest 's3://aws_default@flaky/clips.csv'" in str(caught.value)
    assert "ConnectionResetError: Connection reset by peer" in str(caught.value)
    if lines_first:
        assert "after line 2" in str(caught.value)


# --------------------------------------------------------------------------------------------------
# files that are not good manifests
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            "clip,vidoe,audio",
            "unknown column 'vidoe' (did you mean 'video'?); no 'video' (or 'video_url') column",
        ),
        ("clip,video,audio,notes", "unknown column 'notes'"),
        ("clip,video", "no 'audio' (or 'audio_url') column"),
        ("name,video,audio", "unknown column 'name'; no 'clip' column"),
        ("clip,video,video_url,audio", "both 'video' and 'video_url' given: use one"),
        ("clip,video,audio,audio", "column 'audio' appears more than once"),
        ("clip,video,audio,", "column 4 has no name"),
    ],
    ids=["typo", "extra", "missing", "no-clip", "alias-and-name", "repeated", "unnamed"],
)
def test_a_csv_header_that_is_not_usable(tmp_path, header, problem):
    manifest = write(tmp_path / "m.csv", f"# comment\n{header}\na,{V},{A}\n")
    where = f"manifest {str(manifest)!r}, line 2"
    assert config_error(manifest) == f"{where}: the header is not usable: {problem}."


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# only a comment\n", "clip,video,audio\n", "clip,video,audio\n\n# none yet\n"],
    ids=["empty", "blank", "comment", "header-only", "header-and-comment"],
)
def test_a_csv_without_clips(tmp_path, text):
    manifest = write(tmp_path / "m.csv", text)
    where = f"manifest {str(manifest)!r}"
    assert config_error(manifest) == f"{where} lists no clips: there is nothing to lip-sync."


@pytest.mark.parametrize("source", [[], ()], ids=["list", "tuple"])
def test_no_rows(source):
    assert config_error(source) == "clips lists no clips: there is nothing to lip-sync."


def test_an_empty_jsonl(tmp_path):
    manifest = write(tmp_path / "m.jsonl", "\n \n")
    assert "lists no clips" in config_error(manifest)


def test_csv_rows_with_too_many_or_too_few_values_and_bad_quoting(tmp_path):
    manifest = write(tmp_path / "m.csv", f"clip,video,audio\na,{V},{A},extra\nb,{V}\nc,{V},{A}\n")
    assert config_error(manifest).splitlines()[1:] == [
        "line 2: 4 values, but the header has 3 columns",
        "line 3: 2 values, but the header has 3 columns",
    ]
    manifest = write(tmp_path / "q.csv", f'clip,video,audio\na,{V},{A}\nb,"{V}"x,{A}\n')
    message = config_error(manifest)
    assert message.startswith(f"manifest {str(manifest)!r}, line 3: not valid CSV:")


def test_jsonl_lines_that_are_not_rows(tmp_path):
    manifest = write(
        tmp_path / "m.jsonl",
        "\n".join(
            [
                json.dumps({"clip": "a", "video": V, "audio": A}),
                '{"clip": "b", "video": ',
                json.dumps(["c", V, A]),
                '{"clip": "d", "video": "/d.mp4", "video": "/e.mp4", "audio": "/d.mp3"}',
                json.dumps({"clip": "e", "video": V, "audio": A, "vidoe_url": V}),
                json.dumps({"clip": 7, "video": V, "audio": A}),
            ]
        ),
    )
    assert config_error(manifest).splitlines()[1:] == [
        "line 2: not valid JSON: Expecting value",
        "line 3: an array, not a JSON object",
        "line 4: key 'video' appears more than once",
        "line 5 (clip 'e'): unknown key 'vidoe_url' (did you mean 'video_url'?)",
        "line 6: clip must be a string, got int 7",
    ]


def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(f"clip,video,audio\na,{V},{A}\n".encode() + b"caf\xe9,/v.mp4,/a.mp3\n")
    message = config_error(manifest)
    assert message.startswith(
        f"manifest {str(manifest)!r}, line 3: not UTF-8 text (invalid continuation byte"
    )
    assert message.endswith("save the manifest as UTF-8.")


@pytest.mark.parametrize("end", [b"\n", b""], ids=["line-break", "end-of-file"])
def test_a_line_too_long_for_a_manifest(tmp_path, end):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n" + b"x" * (MAX_LINE_BYTES + 10) + end)
    assert config_error(manifest) == (
        f"manifest {str(manifest)!r}, line 2: longer than {MAX_LINE_BYTES} bytes; "
        "is it a CSV or JSONL manifest?"
    )


@pytest.mark.parametrize("source", [None, 42, {"clip": "a", "video": V, "audio": A}, b"m.csv"])
def test_a_source_that_is_neither_rows_nor_a_location(source):
    assert config_error(source).startswith("clips must be a list of rows (dicts) or the location of a .csv")


def test_a_list_rendered_as_text(tmp_path):
    text = str([{"clip": "a", "video": V, "audio": A}])
    message = config_error(text)
    assert message.startswith("clips is text that looks like a list of rows, not a list")
    assert "render_template_as_native_obj=True" in message
    assert V not in message  # the rows are not repeated back


# --------------------------------------------------------------------------------------------------
# rows: each rule, all reported at once
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"video": V, "audio": A}, "no clip name"),
        ({"clip": "  ", "video": V, "audio": A}, "no clip name"),
        ({"clip": "a/b", "video": V, "audio": A}, "clip 'a/b' contains a path separator"),
        ({"clip": "a", "audio": A}, "no video"),
        ({"clip": "a", "video": "", "audio": A}, "no video"),
        ({"clip": "a", "video": V, "audio": None}, "no audio"),
        ({"clip": "a", "video": 3, "audio": A}, "video must be a URL, a path or a URI, got int 3"),
        (
            {"clip": "a", "video": "https:///v.mp4", "audio": A},
            "video must be an absolute http:// or https:// URL",
        ),
        (
            {"clip": "a", "video": V, "audio": "http://cdn .example/a.mp3"},
            "audio must be an absolute http://",
        ),
        (
            {"clip": "a", "video": "/clips/a.mp3", "audio": A},
            "video_url 'a.mp3' is not a video file Jogg takes",
        ),
        ({"clip": "a", "video": V, "audio": "s3://b/dubs/a.txt"}, "audio_url 'a.txt' is not an audio file"),
        (
            {"clip": "a", "video": "/clips/a\x00.mp4", "audio": A},
            "video '/clips/a\\x00.mp4' contains a control",
        ),
        ({"clip": "a", "video": V, "audio": A, "playback_type": "fast"}, "playback_type must be one of"),
        (
            {"clip": "a", "video": V, "audio": A, "output_path": 5},
            "output_path must be a URL, a path or a URI",
        ),
        ({"clip": "a", "video": V, "audio": A, "notes": "x"}, "unknown key 'notes'"),
        (
            {"clip": "a", "video": V, "video_url": V, "audio": A},
            "both 'video' and 'video_url' given: use one",
        ),
        ("a,v,a", "not a dict (got str): a row has the keys clip, video, audio, playback_type, output_path"),
    ],
    ids=[
        "no-clip",
        "blank-clip",
        "clip-with-slash",
        "no-video",
        "empty-video",
        "null-audio",
        "video-not-text",
        "url-without-host",
        "url-with-space",
        "video-of-audio-type",
        "audio-uri-of-other-type",
        "control-char-in-path",
        "playback-type",
        "output-path-not-text",
        "unknown-key",
        "key-and-alias",
        "not-a-dict",
    ],
)
def test_each_rule_of_a_row(row, problem):
    message = config_error([{"clip": "first", "video": V, "audio": A}, row])
    first, reported = message.splitlines()
    assert first == "clips: 1 bad row, nothing was sent to Jogg:"
    assert reported.startswith("row 2")
    assert problem in reported
    assert "Upload local files first" not in reported  # a batch uploads its files itself


def test_every_problem_of_a_row_is_named_and_a_good_clip_name_is_shown(tmp_path):
    manifest = write(tmp_path / "m.csv", "clip,video,audio,playback_type\nintro,/v/intro.wav,,slow\n")
    assert config_error(manifest).splitlines()[1] == (
        "line 2 (clip 'intro'): video_url 'intro.wav' is not a video file Jogg takes: use one of "
        ".m4v, .mkv, .mov, .mp4, .webm; no audio; playback_type must be one of 'normal', "
        "'normal_reverse', 'normal_reverse_by_audio', got 'slow'"
    )


def test_duplicate_clips_name_both_lines(tmp_path):
    manifest = write(
        tmp_path / "m.csv",
        f"clip,video,audio\nintro,{V},{A}\nouttro,{V},{A}\nIntro,{V},{A}\n\nintro,{V},{A}\n",
    )
    assert config_error(manifest).splitlines() == [
        f"manifest {str(manifest)!r}: 2 bad rows, nothing was sent to Jogg:",
        "line 4 (clip 'Intro'): clip name already used on line 2 as 'intro': names differing only in "
        "case or Unicode form name one file on macOS and Windows",
        "line 6 (clip 'intro'): clip name already used on line 2",
    ]


def test_names_equal_after_unicode_normalization_are_duplicates():
    composed, decomposed = "caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9")
    assert composed != decomposed
    message = config_error([{"clip": c, "video": V, "audio": A} for c in (composed, decomposed)])
    assert "row 2" in message
    assert "already used on row 1" in message


def test_at_most_twenty_bad_rows_are_quoted_and_the_rest_counted(tmp_path):
    good = [f"ok-{i},{V},{A}" for i in range(100)]
    bad = [f"bad-{i},{V},s3://media/secret-{i}.txt" for i in range(MAX_REPORTED + 7)]
    manifest = write(tmp_path / "m.csv", "clip,video,audio\n" + "\n".join(good + bad) + "\n")
    lines = config_error(manifest).splitlines()
    assert lines[0] == f"manifest {str(manifest)!r}: {MAX_REPORTED + 7} bad rows, nothing was sent to Jogg:"
    assert [line.split(":", 1)[0] for line in lines[1:-1]] == [
        f"line {102 + i} (clip 'bad-{i}')" for i in range(MAX_REPORTED)
    ]
    assert lines[-1] == "... and 7 more"
    assert "secret-20" not in "\n".join(lines)  # only the quoted rows appear


def test_long_values_are_cut_short_in_messages():
    clip = "x" * 5000
    message = config_error([{"clip": clip, "video": "/v/" + "y" * 5000 + ".txt", "audio": A}])
    assert len(message) < 400
    assert "5000 characters" in message


# --------------------------------------------------------------------------------------------------
# size: 10,000 rows, read a line at a time
# --------------------------------------------------------------------------------------------------
class ReadLog:
    """A path whose opened file records every read call (name and size asked for)."""

    def __init__(self, path: Path) -> None:
        self.path, self.calls = path, []
        self.suffix = path.suffix

    def __str__(self) -> str:
        return str(self.path)

    def stat(self):
        return self.path.stat()

    def open(self, mode: str):
        stream, calls = self.path.open(mode), self.calls

        class Recorded:
            def __getattr__(self, name):
                calls.append(name)
                return getattr(stream, name)

            def read(self, size: int = -1) -> bytes:
                calls.append(("read", size))
                return stream.read(size)

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                stream.close()

        return Recorded()


def test_ten_thousand_rows_read_a_line_at_a_time(tmp_path):
    manifest = tmp_path / "big.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "video", "audio", "playback_type"])
        for i in range(10_000):
            writer.writerow([f"clip-{i:05d}", f"s3://media/v/{i}.mp4", f"https://cdn.example/a/{i}.mp3", ""])
    logged = ReadLog(manifest)

    clips = read_clips(logged)

    assert len(clips) == 10_000
    assert clips[0] == ClipRow("clip-00000", "s3://media/v/0.mp4", "https://cdn.example/a/0.mp3", line=2)
    assert clips[-1] == ClipRow(
        "clip-09999", "s3://media/v/9999.mp4", "https://cdn.example/a/9999.mp3", line=10_001
    )
    assert len({c.clip for c in clips}) == 10_000
    # bounded reads, in order, each once: the file is never read whole, nor twice
    size = manifest.stat().st_size
    assert size > 8 * READ_CHUNK
    assert logged.calls == [("read", READ_CHUNK)] * (size // READ_CHUNK + 2)  # the last: b"" at the end


# --------------------------------------------------------------------------------------------------
# fingerprint
# --------------------------------------------------------------------------------------------------
def test_fingerprint_is_short_stable_and_ignores_line_numbers(tmp_path):
    rows = read_clips(write(tmp_path / "a.csv", f"clip,video,audio\na,{V},{A}\nb,/v/b.mp4,/a/b.mp3\n"))
    commented = read_clips(
        write(tmp_path / "b.csv", f"# week 12\nclip,video,audio\n\na,{V},{A}\nb,/v/b.mp4,/a/b.mp3\n")
    )
    assert [r.line for r in rows] != [r.line for r in commented]
    assert manifest_fingerprint(rows) == manifest_fingerprint(commented) == manifest_fingerprint(iter(rows))
    # pinned: a retry in a newer provider version must still recognise its own batch
    assert manifest_fingerprint(rows) == "34d7c3a353ce8346"


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: rows[::-1],
        lambda rows: rows[:1],
        lambda rows: [rows[0], ClipRow("b", "/v/b.mp4", "/a/b.mp3", "normal_reverse")],
        lambda rows: [rows[0], ClipRow("b", "/v/b.mp4", "/a/b.mp3", output_path="/out/b.mp4")],
        lambda rows: [rows[0], ClipRow("b", "/v/b2.mp4", "/a/b.mp3")],
        lambda rows: [rows[0], ClipRow("b2", "/v/b.mp4", "/a/b.mp3")],
    ],
    ids=["order", "fewer", "playback_type", "output_path", "video", "clip"],
)
def test_fingerprint_changes_with_the_content(change):
    rows = [ClipRow("a", V, A), ClipRow("b", "/v/b.mp4", "/a/b.mp3")]
    fingerprint = manifest_fingerprint(rows)
    assert len(fingerprint) == 16
    assert int(fingerprint, 16) >= 0
    assert manifest_fingerprint(change(rows)) != fingerprint
