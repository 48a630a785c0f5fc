"""Uploads to the fake server: pre-signed slots (``POST /v2/upload/asset``) and the assets PUT into them."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = ["Upload", "UploadStore"]


@dataclass
class Upload:
    """A pre-signed upload slot created by ``POST /v2/upload/asset``."""

    upload_id: str
    filename: str
    content_type: str
    file_size: int | None
    sig: str
    data: bytes | None = None
    stored_content_type: str | None = None
    chunked: bool = False
    uploaded_at: float | None = None

    def asset_path(self) -> str:
        """The path of the asset once uploaded (``/assets/{upload_id}/{filename}``)."""
        return f"/assets/{self.upload_id}/{quote(self.filename, safe='')}"

    def storage_path(self) -> str:
        """The path of the pre-signed PUT, without its signature (``/_storage/{upload_id}/{filename}``)."""
        return f"/_storage/{self.upload_id}/{quote(self.filename, safe='')}"


class UploadStore:
    """The upload slots of one server, by id (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uploads: dict[str, Upload] = {}

    def reserve(self, filename: str, content_type: str, file_size: int | None) -> Upload:
        """A new slot with a fresh id and signature."""
        upload = Upload(
            upload_id=str(uuid.uuid4()),
            filename=filename,
            content_type=content_type,
            file_size=file_size,
            sig=secrets.token_urlsafe(16),
        )
        with self._lock:
            self._uploads[upload.upload_id] = upload
        return upload

    def find(self, path: str, root: str) -> Upload | None:
        """The upload slot addressed by ``{root}{uuid}/{filename}``, if any."""
        rest = path[len(root) :]
        upload_id, sep, name = rest.partition("/")
        if not sep or not name or "/" in name:
            return None
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None or unquote(name) != upload.filename:
            return None
        return upload

    def store(self, upload: Upload, data: bytes, content_type: str | None, chunked: bool) -> None:
        """Keep the bytes PUT into a slot (a new PUT replaces them)."""
        with self._lock:
            upload.data = data
            upload.stored_content_type = content_type or upload.content_type
            upload.chunked = chunked
            upload.uploaded_at = time.time()

    def uploaded(self) -> list[Upload]:
        """The slots that hold bytes."""
        with self._lock:
            return [upload for upload in self._uploads.values() if upload.data is not None]
