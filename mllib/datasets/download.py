"""Uploading an http(s) URL: the body is streamed straight into chunks, never held whole.

Every full chunk is journaled, so a download cut off (network drop, Ctrl-C, kill -9) resumes
from the last full chunk with an HTTP Range request, guarded by If-Range so a changed file is
never spliced onto an old prefix. A server without Range support sends the whole body again and
the download restarts cleanly (chunks already stored are not written twice). Transient failures
(connection errors, timeouts, 5xx, 408, 429) are retried with exponential backoff; any other 4xx
is a clear error at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from mllib._version import __version__
from mllib.datasets.addresses import check_host, check_peer
from mllib.datasets.chunker import ChunkBuffer, Chunker, Pipeline, TransferStats
from mllib.datasets.chunkstore import ChunkStore
from mllib.datasets.errors import SourceError, too_large
from mllib.datasets.format import human_bytes
from mllib.datasets.journal import UploadJournal
from mllib.datasets.manifest import CHUNK_SIZE, FileEntry
from mllib.datasets.progress import Progress
from mllib.datasets.settings import DataSettings

if TYPE_CHECKING:
    import httpx

READ_SIZE = 1 << 20
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_REDIRECTS = 10


def is_url(text: str) -> bool:
    return bool(re.match(r"(?i)https?://", text))


def redact(url: str) -> str:
    """The URL without credentials or query string (signed URLs carry tokens there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


class _Transient(Exception):
    """A failure worth retrying; carries what to tell the user."""


class _Restart(Exception):
    """The server cannot continue where we stopped: start again from byte 0, at once."""


@dataclass
class _Remote:
    """What the server said about the file on the first full response."""

    etag: str | None
    last_modified: str | None
    length: int | None
    ranges: bool

    @classmethod
    def of(cls, resp: httpx.Response) -> _Remote:
        length = resp.headers.get("content-length")
        return cls(
            resp.headers.get("etag"),
            resp.headers.get("last-modified"),
            int(length) if length and length.isdigit() else None,
            resp.headers.get("accept-ranges", "").lower() == "bytes",
        )

    def validator(self) -> str | None:
        """The If-Range value: a strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class Download:
    """One URL downloaded into the chunk store, resuming from the journal."""

    def __init__(
        self,
        url: str,
        store: ChunkStore,
        journal: UploadJournal,
        progress: Progress,
        stats: TransferStats,
        settings: DataSettings,
        label: str,
    ) -> None:
        self.url = url
        self.store = store
        self.journal = journal
        self.progress = progress
        self.stats = stats
        self.settings = settings
        self.label = label
        self.failures = 0  # in a row, without a new chunk between them

    def run(self) -> FileEntry:
        import httpx
        from tenacity import Retrying, retry_if_exception_type, wait_exponential, wait_random

        timeout = httpx.Timeout(self.settings.timeout_s)
        headers = {"Accept-Encoding": "identity", "User-Agent": f"mllib/{__version__}"}
        # Every request, redirects included, goes to a public address unless the user opted in.
        hooks = {} if self.settings.allow_private_urls else {"request": [self._check_request]}
        client_options = {"follow_redirects": True, "max_redirects": MAX_REDIRECTS}
        with (
            httpx.Client(
                timeout=timeout, headers=headers, event_hooks=hooks, **client_options
            ) as client,
            Pipeline() as pipe,
        ):
            retrying = Retrying(
                retry=retry_if_exception_type(_Transient),
                wait=wait_exponential(multiplier=0.5, max=30) + wait_random(0, 0.5),
                stop=lambda state: self.failures > self.settings.retries,
                before_sleep=self._say_retry,
                reraise=True,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        return self._attempt(client, pipe)
            except _Transient as exc:
                raise SourceError(
                    f"Downloading {redact(self.url)} failed: {exc}",
                    hint="Run the same command again to resume from where it stopped.",
                    resumable=True,
                ) from None
        raise AssertionError("unreachable")

    def _check_request(self, request: httpx.Request) -> None:
        check_host(request.url.host, redact(str(request.url)))

    def _say_retry(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        self.progress.note(f"{exc}; retrying in {wait:.1f} s")

    def _attempt(self, client: httpx.Client, pipe: Pipeline) -> FileEntry:
        import httpx

        before = len(self._chunks())
        try:
            while True:
                try:
                    return self._fetch(client, pipe)
                except _Restart as exc:
                    pipe.settle()
                    self.progress.note(f"{exc}; starting the download over")
                    self.journal.restart()
                except BaseException:
                    pipe.settle()  # chunk writes of this attempt land (or fail) before a retry
                    raise
        except httpx.TooManyRedirects:
            raise SourceError(
                f"{redact(self.url)} redirected more than {MAX_REDIRECTS} times (a redirect loop?)",
                hint="Check the URL in a browser; nothing was stored.",
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise SourceError(
                f"{redact(self.url)} redirected to a URL mllib cannot fetch ({exc})",
                hint="Upload an http(s) URL; nothing was stored.",
            ) from None
        except httpx.TransportError as exc:
            self._count_failure(before)
            raise _Transient(_describe(exc)) from exc
        except _Transient:
            self._count_failure(before)
            raise

    def _count_failure(self, chunks_before: int) -> None:
        self.failures = 1 if len(self._chunks()) > chunks_before else self.failures + 1

    def _chunks(self) -> list[dict]:
        """The journaled full chunks from byte 0 on, without a gap: where a resume starts."""
        done = []
        for record in self.journal.records:
            if "chunk" in record and record.get("at") == len(done) * CHUNK_SIZE:
                done.append(record)
        return done

    def _remote(self) -> _Remote | None:
        found = [r["remote"] for r in self.journal.records if "remote" in r]
        return _Remote(**found[-1]) if found else None

    def _fetch(self, client: httpx.Client, pipe: Pipeline) -> FileEntry:
        done, remote = self._chunks(), self._remote()
        offset = len(done) * CHUNK_SIZE
        headers = {}
        if offset and remote and remote.ranges:
            headers["Range"] = f"bytes={offset}-"
            if validator := remote.validator():
                headers["If-Range"] = validator
        with client.stream("GET", self.url, headers=headers) as resp:
            if not self.settings.allow_private_urls:
                check_peer(resp, redact(self.url))
            self._check_status(resp)
            if resp.status_code == 206:
                total = self._check_range(resp, offset, remote)
            else:  # the whole body: a first attempt, or a server that cannot resume
                if done:
                    self.progress.note(
                        (
                            "The server does not support resuming (no HTTP Range)"
                            if not (remote and remote.ranges)
                            else "The file on the server changed since the interrupted download"
                        )
                        + "; starting the download over"
                    )
                    self.journal.restart()
                remote, offset = _Remote.of(resp), 0
                self.journal.append({"remote": remote.__dict__})
                total = remote.length
            if total is not None and total > self.settings.max_size:
                raise too_large(redact(self.url), total, self.settings.max_size)
            chunker = Chunker(self.store, self.stats, pipe, self._journal_chunk)
            self.progress.start(self.label, total, 0)
            self._replay(chunker, [r["chunk"] for r in done] if offset else [])
            buffer = ChunkBuffer(chunker)
            try:
                received = offset
                for piece in resp.iter_raw(READ_SIZE):
                    received += len(piece)
                    if received > self.settings.max_size:
                        raise too_large(redact(self.url), None, self.settings.max_size)
                    buffer.feed(piece)
                    self.progress.advance(len(piece))
                if total is not None and received != total:
                    raise _Transient(f"the connection ended after {received} of {total} bytes")
            except BaseException:
                buffer.discard()
                raise
            buffer.close()
        return chunker.entry(_file_name(resp, self.url))

    def _journal_chunk(self, digest: str, offset: int, size: int, stored: bool) -> None:
        if size == CHUNK_SIZE:  # a resume point; a short last chunk is simply fetched again
            self.journal.append({"chunk": digest, "at": offset})

    def _replay(self, chunker: Chunker, digests: list[str]) -> None:
        """Count the chunks of an interrupted download into the file's hash, verifying each."""
        for digest in digests:
            try:
                data = self.store.read(digest)
            except FileNotFoundError:
                raise _Restart("A chunk of the interrupted download is gone") from None
            if len(data) != CHUNK_SIZE or hashlib.sha256(data).hexdigest() != digest:
                raise _Restart("A chunk of the interrupted download is damaged")
            chunker.replay(digest, data)
            self.stats.bytes_resumed += len(data)
            self.progress.advance(len(data))
        if digests:
            self.progress.note(f"Resuming the download at {human_bytes(len(digests) * CHUNK_SIZE)}")

    def _check_status(self, resp: httpx.Response) -> None:
        code = resp.status_code
        if code in (200, 206):
            return
        if code == 416:
            raise _Restart("The server refused the resume point")
        if code in TRANSIENT_STATUS or code >= 500:
            raise _Transient(f"the server answered {code} {resp.reason_phrase}")
        raise SourceError(
            f"{redact(self.url)} answered {code} {resp.reason_phrase}",
            hint="Check the URL and that it needs no login; nothing was stored.",
        )

    def _check_range(self, resp: httpx.Response, offset: int, remote: _Remote | None) -> int | None:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("content-range", ""))
        if not match or int(match[1]) != offset:
            raise _Restart("The server answered the resume request with another range")
        total = None if match[3] == "*" else int(match[3])
        if remote and remote.length is not None and total != remote.length:
            raise _Restart("The file on the server changed size since the interrupted download")
        return total


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _file_name(resp: httpx.Response, url: str) -> str:
    """The name the file gets in the dataset: Content-Disposition's, else the URL path's last part."""
    disposition = resp.headers.get("content-disposition", "")
    match = re.search(r"filename\*\s*=\s*UTF-8''([^;]+)", disposition, re.I) or re.search(
        r'filename\s*=\s*"?([^";]+)"?', disposition, re.I
    )
    candidates = [
        unquote(match[1]) if match else "",
        unquote(PurePosixPath(urlsplit(url).path).name),
    ]
    for name in candidates:
        name = name.strip()
        if name and name not in (".", "..") and not re.search(r"[/\\\x00-\x1f]", name):
            return name[:255]
    return "download"
