"""Uploading URLs from a real HTTP server on loopback: streaming, Range resume, restarts, retries,
clear 4xx errors and the size cap. (The public internet is not reachable here; loopback is real.)
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from mllib import datasets
from mllib.datasets.errors import DatasetTooLargeError, SourceError
from tests.datasets.helpers import CHUNK_SIZE, mllib_cli, pattern, stored_chunks, write_config

SIZE = 3 * CHUNK_SIZE + 1000


def test_a_url_is_streamed_into_a_one_file_version(ws, server) -> None:
    data = pattern(SIZE)
    server.files["/train.bin"] = data

    result = datasets.upload(server.url("/train.bin?token=secret"), "remote", ws=ws)

    shown = datasets.show("remote", ws=ws)
    assert shown["files"] == [
        {"path": "train.bin", "size": SIZE, "sha256": hashlib.sha256(data).hexdigest(), "chunks": 4}
    ]
    assert result.stats.bytes_stored == SIZE
    assert "secret" not in shown["source"] and shown["source"].endswith("/train.bin?…")


def test_a_dropped_connection_resumes_with_range_in_the_same_command(ws, server) -> None:
    data = pattern(SIZE)
    server.files["/d.bin"] = data
    server.behaviour.drop_after = 2 * CHUNK_SIZE + 500  # mid third chunk

    result = datasets.upload(server.url("/d.bin"), "d", ws=ws)

    assert [r["range"] for r in server.requests] == [None, f"bytes={2 * CHUNK_SIZE}-"]
    assert server.requests[1]["if_range"] is not None  # a changed file is never spliced on
    assert result.stats.bytes_resumed == 2 * CHUNK_SIZE
    assert datasets.show("d", ws=ws)["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_without_range_support_a_dropped_download_restarts_cleanly(ws, server) -> None:
    data = pattern(SIZE)
    server.files["/d.bin"] = data
    server.behaviour.ranges = False
    server.behaviour.drop_after = 2 * CHUNK_SIZE + 500

    result = datasets.upload(server.url("/d.bin"), "d", ws=ws)

    assert len(server.requests) == 2 and server.requests[1]["range"] is None
    assert datasets.show("d", ws=ws)["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    # The two chunks of the first attempt were not written twice.
    assert result.stats.chunks_stored == 4 and result.stats.chunks_skipped == 2


def test_a_changed_file_on_the_server_restarts_instead_of_splicing(ws, server, project) -> None:
    server.files["/d.bin"] = pattern(SIZE, seed=1)
    server.behaviour.drop_after = 2 * CHUNK_SIZE + 500
    write_config(project, retries=0)
    with pytest.raises(SourceError, match="RemoteProtocolError") as failed:
        datasets.upload(server.url("/d.bin"), "d", ws=type(ws).find(project))
    assert failed.value.resumable

    new = pattern(SIZE, seed=2)
    server.files["/d.bin"] = new  # new ETag: If-Range makes the server send the whole file
    datasets.upload(server.url("/d.bin"), "d", ws=type(ws).find(project))

    assert server.requests[-1]["range"] == f"bytes={2 * CHUNK_SIZE}-"
    assert datasets.show("d", ws=ws)["files"][0]["sha256"] == hashlib.sha256(new).hexdigest()


def test_transient_server_errors_are_retried_with_backoff(ws, server) -> None:
    server.files["/d.bin"] = b"payload"
    server.behaviour.fail_with = [503, 502]
    started = time.monotonic()
    datasets.upload(server.url("/d.bin"), "d", ws=ws)
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 0.5  # waited between attempts


def test_a_4xx_is_a_clear_error_without_retries(project: Path, server) -> None:
    cli = mllib_cli(project, "data", "upload", server.url("/missing.csv"), "--name", "m")
    assert cli.returncode == 1
    assert "/missing.csv answered 404 Not Found" in cli.stderr
    assert len(server.requests) == 1
    assert stored_chunks(project) == set()
    assert not list((project / ".mllib" / "store" / "datasets" / "uploads").glob("*"))


def test_a_server_that_never_answers_times_out_and_gives_up(project: Path, server) -> None:
    write_config(project, timeout_s=0.3, retries=1)
    server.behaviour.hang = True
    cli = mllib_cli(project, "data", "upload", server.url("/slow"), "--name", "s")
    assert cli.returncode == 1
    assert "ReadTimeout" in cli.stderr and "retrying" in cli.stderr
    assert len(server.requests) == 2


def test_size_cap_from_content_length_refuses_before_the_body(project: Path, server) -> None:
    write_config(project, max_size_gb=0.01)  # 10 MB
    server.files["/big.bin"] = pattern(SIZE)
    cli = mllib_cli(project, "data", "upload", server.url("/big.bin"), "--name", "big")
    assert cli.returncode == 2
    assert "larger than the dataset size limit of 0.01 GB" in cli.stderr
    assert "max_size_gb" in cli.stderr
    assert server.sent < SIZE
    assert stored_chunks(project) == set()


def test_size_cap_without_content_length_is_enforced_while_streaming(ws, server, project) -> None:
    write_config(project, max_size_gb=0.02)  # 20 MB: two chunks fit, the third crosses it
    server.files["/big.bin"] = pattern(SIZE)
    server.behaviour.content_length = False

    with pytest.raises(DatasetTooLargeError):
        datasets.upload(server.url("/big.bin"), "big", ws=type(ws).find(project))

    assert stored_chunks(project) == set()  # the chunks written before the cap are gone
    assert not list((project / ".mllib" / "store" / "datasets" / "uploads").glob("*"))
    assert datasets.list_datasets(ws=ws) == []


def test_a_close_delimited_body_of_unknown_length_is_stored_whole(ws, server) -> None:
    data = pattern(CHUNK_SIZE + 77)
    server.files["/stream"] = data
    server.behaviour.content_length = False
    datasets.upload(server.url("/stream"), "s", ws=ws)
    assert datasets.show("s", ws=ws)["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_resume_never_skips_a_gap_in_what_was_journaled(ws, server) -> None:
    """A chunk whose write failed leaves a gap: the download resumes from the gap, not the end."""
    import hashlib as h

    from mllib.datasets.chunkstore import dataset_store
    from mllib.datasets.journal import UPLOADS_DIR, UploadJournal

    data = pattern(SIZE)
    server.files["/d.bin"] = data
    url = server.url("/d.bin")
    store = dataset_store(ws.project.store_path)
    chunks = [data[i : i + CHUNK_SIZE] for i in range(0, 3 * CHUNK_SIZE, CHUNK_SIZE)]
    digests = [h.sha256(c).hexdigest() for c in chunks]
    for chunk, digest in zip(chunks, digests, strict=True):
        store.put(chunk, digest)
    url_id = h.sha256(url.encode()).hexdigest()
    header = {"source": url, "source_id": url_id}
    journal = UploadJournal.open(store.root / UPLOADS_DIR, "d", url, header)
    etag = f'"{h.sha256(data).hexdigest()[:16]}"'
    journal.append(
        {"remote": {"etag": etag, "last_modified": None, "length": SIZE, "ranges": True}}
    )
    journal.append({"chunk": digests[0], "at": 0})
    journal.append({"chunk": digests[2], "at": 2 * CHUNK_SIZE})  # chunk 1 never journaled
    journal.close()

    datasets.upload(url, "d", ws=ws)

    assert server.requests[0]["range"] == f"bytes={CHUNK_SIZE}-"
    assert datasets.show("d", ws=ws)["files"][0]["sha256"] == h.sha256(data).hexdigest()
