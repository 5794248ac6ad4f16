"""Both artifact stores against the same contract (S3: a moto server process, over HTTP)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3server import CREDENTIALS, moto_server, new_bucket, s3_client

from edgedistill.service.settings import Settings
from edgedistill.service.storage import ArtifactStore, InvalidKey, LocalStore, ObjectNotFound, TooLarge, get_store
from edgedistill.service.storage.s3 import S3Store

DATA = bytes(range(256)) * 1000  # 256 kB


@pytest.fixture(scope="module")
def s3_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    client = s3_client(request.getfixturevalue("s3_url"))
    yield S3Store(bucket=new_bucket(client), client=client, prefix="edge/", staging_dir=tmp_path / "staging")


def _chunks(data: bytes, n: int = 10_000) -> Iterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i : i + n]


def test_put_stream_is_content_addressed(store: ArtifactStore) -> None:
    obj = store.put_stream(_chunks(DATA))
    sha = hashlib.sha256(DATA).hexdigest()
    assert obj.sha256 == sha and obj.size == len(DATA) and obj.key.endswith(sha)
    assert store.exists(obj.key) and store.size(obj.key) == len(DATA)
    with store.open(obj.key) as f:
        assert f.read() == DATA
    again = store.put_stream(io.BytesIO(DATA))  # a file object works too; same bytes, same key
    assert again == obj


def test_ranges(store: ArtifactStore) -> None:
    key = store.put_stream([DATA]).key
    assert b"".join(store.iter_range(key, 10, 20)) == DATA[10:20]
    assert b"".join(store.iter_range(key, len(DATA) - 5)) == DATA[-5:]
    assert b"".join(store.iter_range(key, 0, None, chunk_size=1000)) == DATA
    assert b"".join(store.iter_range(key, 5, 5)) == b""


def test_too_large_keeps_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    consumed = []

    def gen() -> Iterator[bytes]:
        for chunk in _chunks(DATA):
            consumed.append(len(chunk))
            yield chunk

    with pytest.raises(TooLarge):
        store.put_stream(gen(), max_bytes=25_000)
    assert sum(consumed) <= 30_000  # stopped as soon as the limit was passed
    assert not store.exists(f"{hashlib.sha256(DATA).hexdigest()[:2]}/{hashlib.sha256(DATA).hexdigest()}")
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_put_file_local_path_and_delete(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(DATA)
    obj = store.put_file(src, move=True)
    assert not src.exists()
    with store.local_path(obj.key) as p:
        assert p.read_bytes() == DATA
    store.delete(obj.key)
    assert not store.exists(obj.key)
    with pytest.raises(ObjectNotFound):
        store.size(obj.key)
    with pytest.raises(ObjectNotFound):
        list(store.iter_range(obj.key))
    with pytest.raises(ObjectNotFound), store.local_path(obj.key):
        pass


def test_keys_that_are_not_digests_are_refused(store: ArtifactStore) -> None:
    for bad in ["../etc/passwd", "ab/" + "0" * 63, "/abs"]:
        with pytest.raises(InvalidKey):
            store.size(bad)


def test_local_store_rename_leaves_no_staging_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_stream([b"hello"])
    assert list((tmp_path / "tmp").iterdir()) == []


def test_get_store_follows_settings(tmp_path: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    local = get_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStore) and local.root == tmp_path.resolve() / "artifacts"
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = new_bucket(s3_client(s3_url))
    s3 = get_store(Settings(data_dir=tmp_path, storage_backend="s3", s3_bucket=bucket, s3_endpoint_url=s3_url))
    assert isinstance(s3, S3Store) and s3.bucket == bucket
    stored = s3.put_stream([b"through the settings"])
    assert s3.exists(stored.key)
