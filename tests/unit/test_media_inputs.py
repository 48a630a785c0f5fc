"""A file's content digest: streamed in chunks, through the same open() the upload uses."""

from __future__ import annotations

import hashlib
import os

import pytest

from airflow_provider_jogg.hooks.jogg import JoggHook
from airflow_provider_jogg.media_inputs import DIGEST_CHUNK, DigestingFile, MediaFile, inspect_file, sha256_of
from airflow_provider_jogg.testing import Fault


class ReadLog:
    """Wraps an opener and records how much each read asks for."""

    def __init__(self, opener):
        self.opener = opener
        self.sizes: list[int] = []

    def __call__(self):
        stream = self.opener()
        log = self

        class Recorded:
            def read(self, size=-1):
                log.sizes.append(size)
                return stream.read(size)

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                stream.close()

        return Recorded()


def test_sha256_reads_in_bounded_chunks(tmp_path):
    data = os.urandom(2 * DIGEST_CHUNK + 12345)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    media = inspect_file(path, "video_url")
    reads = ReadLog(media.open)
    digest = sha256_of(MediaFile(media.name, media.size, media.content_type, media.location, reads))
    assert digest == hashlib.sha256(data).hexdigest()
    assert reads.sizes == [DIGEST_CHUNK] * 4  # three chunks and the empty read at the end; never whole


def test_sha256_of_an_object_storage_file(tmp_path):
    from airflow.sdk import ObjectStoragePath

    data = os.urandom(50_000)
    (tmp_path / "voice.m4a").write_bytes(data)
    media = inspect_file(ObjectStoragePath((tmp_path / "voice.m4a").as_uri()), "audio_url")
    assert sha256_of(media) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("put_fails", [False, True], ids=["first-put", "put-sent-again"])
def test_an_upload_yields_the_digest_of_what_it_sent(jogg_conn, tmp_path, put_fails):
    data = os.urandom(300_000)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    if put_fails:  # the PUT is sent again: the digest starts over with the second read
        jogg_conn.add_fault(Fault("status", status=503, path="/_storage/", times=1))
    digesting = DigestingFile(inspect_file(path, "video_url"))
    assert digesting.sha256 is None
    asset_url = JoggHook().upload_media(digesting.media)
    assert jogg_conn.faults == []  # the 503 was served (and the PUT sent again) if one was set
    assert digesting.sha256 == hashlib.sha256(data).hexdigest()
    asset = jogg_conn.assets[asset_url]
    assert asset["data"] == data
    assert asset["chunked"] is False  # still sent with its Content-Length, streamed
