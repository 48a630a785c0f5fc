"""A batch row's rules: clip names that name a file on every OS and store, media forms, keys."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from airflow_provider_jogg.batch.clip_rules import (
    MAX_CLIP_NAME,
    check_row,
    clip_name,
    key_problems,
    media_value,
    name_key,
)

#: characters every file system and object store takes in a name, anywhere in it
SAFE = string.ascii_letters + string.digits + "-_+=,;!@#$%&()[]{}'~ éüßДж中文"
#: Windows device names (also with an extension): refused, tested on their own
DEVICE = re.compile(r"(con|prn|aux|nul|com[1-9]|lpt[1-9]) *", re.IGNORECASE)
safe_names = (
    st.text(SAFE, min_size=1, max_size=60)
    .map(str.strip)
    .filter(lambda n: n and not n.endswith(".") and not DEVICE.fullmatch(n.split(".")[0]))
)


@given(safe_names)
def test_a_safe_name_is_kept_as_it_is(name):
    assert clip_name(name) == (name, None)
    assert clip_name(f"  {name}\t") == (name, None)  # surrounding blanks are not part of it


@given(
    safe_names,
    st.sampled_from(["/", "\\", "\x00", "\n", "\r", "\t", "\x1f", "\x7f", "<", ">", ":", '"', "|", "?", "*"]),
    st.data(),
)
@example("clip", "/", None)
def test_a_name_with_a_separator_control_or_windows_character_is_refused(name, bad, data):
    at = data.draw(st.integers(0, len(name))) if data is not None else 1
    # inside the name: at either end, blanks (a tab, a newline) are stripped like spaces
    value = "a" + name[:at] + bad + name[at:] + "x"
    accepted, problem = clip_name(value)
    assert accepted is None
    expected = {
        "/": "path separator",
        "\\": "path separator",
        **dict.fromkeys("\x00\n\r\t\x1f\x7f", "control character"),
        **dict.fromkeys('<>:"|?*', "Windows file names cannot"),
    }[bad]
    assert expected in problem
    assert problem.startswith("clip ")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "no clip name"),
        ("", "no clip name"),
        ("   ", "no clip name"),
        (".", "clip '.' is not a file name"),
        ("..", "clip '..' is not a file name"),
        ("take.", "clip 'take.' ends with a dot, which Windows drops from file names"),
        ("CON", "clip 'CON' is a device name on Windows (CON)"),
        ("nul.final", "clip 'nul.final' is a device name on Windows (nul)"),
        ("lpt9", "clip 'lpt9' is a device name on Windows (lpt9)"),
        (42, "clip must be a string, got int 42"),
        (["a"], "clip must be a string, got list ['a']"),
    ],
)
def test_names_that_are_not_file_names(value, problem):
    assert clip_name(value) == (None, problem)


@pytest.mark.parametrize(
    "name", ["CONSOLE", "com10", "auxiliary", "a..b", "..a", ".hidden", "take 1", "#1"], ids=str
)
def test_names_close_to_a_rule_are_fine(name):
    assert clip_name(name) == (name, None)


def test_length_is_limited_in_characters_and_in_utf8_bytes():
    assert clip_name("a" * MAX_CLIP_NAME) == ("a" * MAX_CLIP_NAME, None)
    problem = clip_name("a" * (MAX_CLIP_NAME + 1))[1]
    assert problem.startswith("clip 'aaaaaaaa")
    assert problem.endswith("...' is 201 characters (201 bytes in UTF-8); at most 200 of each")
    assert len(problem) < 130  # the name is cut short
    cjk = "中" * 67  # 67 characters, 201 bytes: too long for many file systems once a suffix is added
    assert clip_name(cjk)[1].endswith("is 67 characters (201 bytes in UTF-8); at most 200 of each")
    assert clip_name("中" * 66) == ("中" * 66, None)


@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20))
def test_name_key_makes_case_and_unicode_variants_one_file(name):
    import unicodedata

    assert name_key(name.upper()) == name_key(name.lower()) or name.upper().lower() != name.lower()
    assert name_key(unicodedata.normalize("NFD", name)) == name_key(unicodedata.normalize("NFC", name))


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("https://cdn.example/v.mp4", "https://cdn.example/v.mp4"),
        ("  https://cdn.example/v.mp4  ", "https://cdn.example/v.mp4"),
        ("HTTPS://cdn.example/v.mp4", "HTTPS://cdn.example/v.mp4"),
        ("https://cdn.example/render?id=7", "https://cdn.example/render?id=7"),  # Jogg reads any URL
        ("/data/v.MP4", "/data/v.MP4"),
        ("relative/v.mov", "relative/v.mov"),
        ("file:///data/v.webm", "file:///data/v.webm"),
        ("s3://bucket/v.mkv?versionId=3", "s3://bucket/v.mkv?versionId=3"),
        ("gs://aws_x@bucket/a/b/v.m4v", "gs://aws_x@bucket/a/b/v.m4v"),
        ("C:\\media\\v.mp4", "C:\\media\\v.mp4"),
    ],
)
def test_media_forms_that_are_accepted(value, accepted):
    assert media_value(value, "video") == (accepted, None)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "https://",
            "video must be an absolute http:// or https:// URL that Jogg can download, got 'https://'",
        ),
        (
            "/data/v.avi",
            "video_url 'v.avi' is not a video file Jogg takes: use one of .m4v, .mkv, .mov, .mp4, .webm",
        ),
        ("s3://bucket/", "video_url '' is not a video file Jogg takes"),
        ("/data/v", "video_url 'v' is not a video file Jogg takes"),
        ("/data/v\n.mp4", "video '/data/v\\n.mp4' contains a control character"),
        (b"/data/v.mp4", "video must be a URL, a path or a URI, got bytes b'/data/v.mp4'"),
    ],
)
def test_media_forms_that_are_refused(value, problem):
    accepted, found = media_value(value, "video")
    assert accepted is None
    assert found.startswith(problem)


def test_key_problems_of_a_header_and_of_a_row():
    header = ["clip", "video_url", "audio", "playbacktype"]
    assert key_problems(header, "column", required=True) == [
        "unknown column 'playbacktype' (did you mean 'playback_type'?)"
    ]
    assert key_problems(["clip"], "column", required=True) == [
        "no 'video' (or 'video_url') column",
        "no 'audio' (or 'audio_url') column",
    ]
    # a row's missing values are reported by their own checks, once
    assert key_problems(["clip"], "key", required=False) == []


def test_check_row_gives_the_fields_of_a_clip_row():
    values, clip, problems = check_row(
        {"clip": " a ", "video_url": "https://x.example/v.mp4", "audio": "/a.mp3", "output_path": ""},
        "normal_reverse",
    )
    assert (values, clip, problems) == (
        {
            "clip": "a",
            "video": "https://x.example/v.mp4",
            "audio": "/a.mp3",
            "playback_type": "normal_reverse",
            "output_path": None,
        },
        "a",
        [],
    )
