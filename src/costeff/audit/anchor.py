"""Append-only sinks that hold copies of the signed checkpoints, outside the trail.

Deleting the tail of a trail and its local checkpoint file leaves a valid, shorter
chain; a copy of each checkpoint kept somewhere the writer of the trail cannot
rewrite is what shows the truncation. Two sinks:

- ``DirectorySink``: one file per checkpoint, created with O_EXCL (never
  overwritten) and made read-only. Point it at storage that is append-only for the
  account costeff runs as (another host's mount, ``chattr +a``, a WORM share).
- ``S3Sink``: one object per checkpoint in a bucket with Object Lock, written in
  COMPLIANCE mode with a retain-until date (no account, root included, can delete
  or overwrite it before then) and ``If-None-Match: *`` (never replaces an object).

Each sink stores the exact bytes of a checkpoint line under
``<trail id>/<seq, 12 digits>.json``; the trail id is the SHA-256 of the trail's
first record. It also stores the trail's identity, once per signing key and trail
folder, under ``identity/<key id>/<name>.json`` (a signed line naming the trail id;
the name is a hash of the trail folder's absolute path, see ``trail_name``): an
emptied, deleted or swapped trail is seen even with nothing left of it locally.
An anchor written before identities existed gets one at the next append.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from costeff.errors import DependencyError, InputError

DEFAULT_RETAIN_DAYS = 2557  # seven years, the usual retention for broker-dealer records


class Sink(Protocol):
    location: str

    def publish(self, trail_id: str, seq: int, data: bytes) -> None: ...

    def checkpoints(self, trail_id: str) -> list[tuple[str, bytes]]: ...

    def checkpoint(self, trail_id: str, seq: int) -> bytes | None: ...

    def since(self, trail_id: str, seq: int) -> list[tuple[int, bytes]]: ...

    def publish_identity(self, key_id: str, name: str, data: bytes) -> bytes: ...

    def identity(self, key_id: str, name: str) -> bytes | None: ...


def _object_name(trail_id: str, seq: int) -> str:
    return f"{trail_id}/{seq:012d}.json"


def _identity_name(key_id: str, name: str) -> str:
    return f"identity/{key_id}/{name}.json"


def trail_name(directory: Path | str) -> str:
    """Which trail folder an identity is for: 16 hex digits of the SHA-256 of its absolute path."""
    return hashlib.sha256(str(Path(directory).resolve()).encode("utf-8")).hexdigest()[:16]


RETIRED = ".retired"


def identity_slot(sink: Any, key_id: str, directory: Path | str) -> str:
    """The identity name a trail folder uses now. A trail that was deliberately retired (``costeff audit
    retire``: a record signed by the key, written once in the anchor) hands its folder to a next generation,
    ``<name>.g1``, ``<name>.g2``…; without the key nobody can retire one, so a deleted trail stays refused."""
    base, generation = trail_name(directory), 0
    while sink.identity(key_id, generation_name(base, generation) + RETIRED) is not None:
        generation += 1
    return generation_name(base, generation)


def generation_name(base: str, generation: int) -> str:
    return base if generation == 0 else f"{base}.g{generation}"


class DirectorySink:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def publish(self, trail_id: str, seq: int, data: bytes) -> None:
        self._create(self.root / _object_name(trail_id, seq), data, f"checkpoint is already anchored for record {seq}")

    def publish_identity(self, key_id: str, name: str, data: bytes) -> bytes:
        """Record the trail this key writes in folder ``name``, once; returns what the anchor holds."""
        path = self.root / _identity_name(key_id, name)
        if not path.exists():
            try:
                self._create(path, data, "identity")
            except DependencyError:
                if not path.exists():  # a real failure (disk, permissions), not another writer winning the race
                    raise
        return path.read_bytes()

    def identity(self, key_id: str, name: str) -> bytes | None:
        path = self.root / _identity_name(key_id, name)
        return path.read_bytes() if path.is_file() else None

    def checkpoint(self, trail_id: str, seq: int) -> bytes | None:
        path = self.root / _object_name(trail_id, seq)
        return path.read_bytes() if path.is_file() else None

    def since(self, trail_id: str, seq: int) -> list[tuple[int, bytes]]:
        """Anchored checkpoints after record ``seq``, oldest first (one listing)."""
        folder = self.root / trail_id
        if not folder.is_dir():
            return []
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and n[:-5].isdigit()
                       and int(n[:-5]) > seq)
        return [(int(n[:-5]), (folder / n).read_bytes()) for n in names]

    def _create(self, path: Path, data: bytes, what: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            if path.read_bytes() == data:
                return  # the same checkpoint published twice (a retry): nothing to do
            raise DependencyError(f"{path}: a different {what}; the anchor is never overwritten "
                                  f"(run `costeff audit verify`)") from None
        except OSError as exc:
            raise DependencyError(f"{path}: cannot anchor the audit checkpoint ({exc.strerror})") from None
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, f"short write, {written} of {len(data)} bytes (disk full?)")
            os.fsync(fd)
        except OSError as exc:
            path.unlink(missing_ok=True)  # never leave a cut object that would block the retry
            raise DependencyError(f"{path}: cannot anchor the audit checkpoint ({exc.strerror or exc})") from None
        finally:
            os.close(fd)
        _fsync_dir(path.parent)

    def checkpoints(self, trail_id: str) -> list[tuple[str, bytes]]:
        folder = self.root / trail_id
        if not folder.is_dir():
            return []
        return [(str(p), p.read_bytes()) for p in sorted(folder.glob("*.json"))]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Sink:
    """Checkpoints as Object Lock (COMPLIANCE) objects; ``client`` is a boto3 S3 client."""

    def __init__(self, bucket: str, prefix: str = "", retain_days: int = DEFAULT_RETAIN_DAYS,
                 client: Any = None) -> None:
        self.bucket, self.prefix, self.retain_days = bucket, prefix.strip("/"), retain_days
        self.location = f"s3://{bucket}/{self.prefix}"
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise DependencyError(f"{self.location}: the S3 anchor needs boto3; install costeff[s3]") from None
            self._client = boto3.client("s3")
        return self._client

    def _key(self, trail_id: str, seq: int | None = None) -> str:
        name = _object_name(trail_id, seq) if seq is not None else f"{trail_id}/"
        return f"{self.prefix}/{name}" if self.prefix else name

    def publish(self, trail_id: str, seq: int, data: bytes) -> None:
        params = self._put_params(self._key(trail_id, seq), data)
        self._call("put_object", params["Key"], **params)

    def _put_params(self, key: str, data: bytes) -> dict[str, Any]:
        from costeff.artifacts import utc_now

        return {"Bucket": self.bucket, "Key": key, "Body": data, "ContentType": "application/json",
                "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode("ascii"),
                "ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": utc_now().replace(microsecond=0) + timedelta(days=self.retain_days),
                "IfNoneMatch": "*"}

    def publish_identity(self, key_id: str, name: str, data: bytes) -> bytes:
        from botocore.exceptions import ClientError

        key = self._prefixed(_identity_name(key_id, name))
        try:
            self.client.put_object(**self._put_params(key, data))
            return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                err = exc.response.get("Error", {})
                raise DependencyError(f"s3://{self.bucket}/{key}: put_object failed: {err.get('Code')} "
                                      f"{err.get('Message', '')}".rstrip()) from None
        held = self._get(key)
        return held if held is not None else data

    def identity(self, key_id: str, name: str) -> bytes | None:
        return self._get(self._prefixed(_identity_name(key_id, name)))

    def checkpoint(self, trail_id: str, seq: int) -> bytes | None:
        return self._get(self._key(trail_id, seq))

    def since(self, trail_id: str, seq: int) -> list[tuple[int, bytes]]:
        """Anchored checkpoints after record ``seq``, oldest first (listed from just after it)."""
        prefix, found = self._key(trail_id), []
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, **({"StartAfter": self._key(trail_id, seq)}
                                                              if seq >= 0 else {})}
        page = self._call("list_objects_v2", prefix, **kwargs)
        for item in page.get("Contents", []):
            name = item["Key"].rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                found.append((int(name[:-5]), self._call("get_object", item["Key"], Bucket=self.bucket,
                                                         Key=item["Key"])["Body"].read()))
        return sorted(found)

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            err = exc.response.get("Error", {})
            raise DependencyError(f"s3://{self.bucket}/{key}: get_object failed: {err.get('Code')} "
                                  f"{err.get('Message', '')}".rstrip()) from None

    def _prefixed(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def checkpoints(self, trail_id: str) -> list[tuple[str, bytes]]:
        found = []
        for page in self._pages(self._key(trail_id)):
            for item in page.get("Contents", []):
                body = self._call("get_object", item["Key"], Bucket=self.bucket, Key=item["Key"])["Body"]
                found.append((f"s3://{self.bucket}/{item['Key']}", body.read()))
        return sorted(found)

    def _pages(self, prefix: str) -> Any:
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self._call("list_objects_v2", prefix, **kwargs)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise DependencyError(f"s3://{self.bucket}/{key}: {operation} failed: {err.get('Code')} "
                                  f"{err.get('Message', '')}".rstrip()) from None
        except BotoCoreError as exc:
            raise DependencyError(f"s3://{self.bucket}/{key}: {operation} failed: {exc}") from None


def sink_from_uri(uri: str) -> Sink | None:
    """``none``, a directory (``/path`` or ``file:///path``) or ``s3://bucket/prefix[?retain_days=N]``."""
    if uri.strip().lower() == "none":
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InputError(f"COSTEFF_AUDIT_ANCHOR: {uri!r} names no bucket; expected s3://BUCKET/PREFIX")
        return S3Sink(parsed.netloc, parsed.path, _retain_days(uri, parse_qs(parsed.query)))
    if parsed.scheme in ("", "file"):
        return DirectorySink(parsed.path if parsed.scheme == "file" else uri)
    raise InputError(f"COSTEFF_AUDIT_ANCHOR: {uri!r} is not a directory, file:// or s3:// anchor")


def _retain_days(uri: str, query: dict[str, list[str]]) -> int:
    text = (query.get("retain_days") or [str(DEFAULT_RETAIN_DAYS)])[0]
    if not text.isdigit() or not 1 <= int(text) <= 36500:
        raise InputError(f"COSTEFF_AUDIT_ANCHOR: retain_days={text!r} in {uri!r}; expected whole days, 1..36500")
    return int(text)
