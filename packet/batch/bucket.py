"""Files' bytes in an S3-compatible bucket (``PACKET_FILES_URL=s3://bucket/prefix``), with
boto3. Credentials, region and a non-AWS endpoint come from boto3's own ``AWS_*`` variables
(``AWS_ENDPOINT_URL`` for MinIO, R2 and the like)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any
from urllib.parse import urlsplit

CHUNK = 1 << 20


class BucketStorage:
    """One object per file, ``<prefix>/<file id>``, uploaded from the spool (multipart when
    large) and read back in chunks."""

    kind = "s3"

    def __init__(self, url: str) -> None:
        import boto3

        parts = urlsplit(url)
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.client: Any = boto3.client("s3")

    def key(self, file_id: str) -> str:
        return f"{self.prefix}/{file_id}" if self.prefix else file_id

    def stage(self, file_id: str, source: IO[bytes]) -> Iterable[bytes] | None:
        source.seek(0)
        self.client.upload_fileobj(source, self.bucket, self.key(file_id))
        return None

    def open(self, file_id: str) -> Iterator[bytes]:
        answer = self.client.get_object(Bucket=self.bucket, Key=self.key(file_id))
        body = answer["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def remove(self, file_id: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(file_id))
