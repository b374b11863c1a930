"""One machinery for every IDX data set: cache directory, mirrors, checksums, atomic files, lock.

(A data set published as one archive, such as CIFAR-10's ``.tar.gz``, uses the same machinery:
its single :func:`archive_file` is hashed as stored and read by its own reader in the same pass.)

A data set is described once by a :class:`Dataset` (files, payload SHA-256s, mirrors); the
generic :func:`load_dataset` returns ``(x_train, y_train), (x_test, y_test)`` from the cache
directory ``<data dir>/<subdir>/``, downloading what is missing or invalid.

Why it is built this way:

* The SHA-256 is of the *decompressed* IDX payload, so a mirror that re-compressed the files
  still verifies. Every load verifies every file in full: the payload has to be inflated to be
  parsed anyway, and hashing the same bytes adds ~35 ms for MNIST, so a sidecar "already
  verified" stamp would save almost nothing and would not exist in read-only directories.
* A cache hit only reads: no lock file, no temporary file, no network, so a read-only
  directory holding valid files works.
* A download goes to a temporary name in the same directory, is verified there, and only then
  renamed into place (``os.replace``), so an interrupted or bad download never shows up under
  the real name. A lock file (``fcntl.flock``) serializes downloaders; the kernel releases it
  if a process dies, so a stale lock cannot block later runs.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np

from .idx import IDXFormatError, check_pair, parse_idx, read_payload

__all__ = [
    "CacheDirectoryError",
    "Dataset",
    "DatasetDownloadError",
    "DatasetFile",
    "DatasetLockTimeoutError",
    "archive_file",
    "get_data_dir",
    "images_file",
    "labels_file",
    "load_dataset",
    "redirect_allowed",
    "resolve_mirrors",
]

logger = logging.getLogger(__name__)

# Defaults for load_dataset's keyword arguments; tests and impatient users can pass their own.
CONNECT_TIMEOUT = 10.0  # seconds to establish a connection
READ_TIMEOUT = 30.0  # seconds without receiving a byte before a transfer counts as stalled
ATTEMPTS_PER_URL = 2  # tries per mirror URL for transient failures (timeouts, 5xx, cut-offs)
BACKOFF = 1.0  # seconds before the 2nd try of a URL, doubled for each further try
LOCK_TIMEOUT = 900.0  # seconds to wait for another process that is downloading the same set
MAX_REDIRECTS = 5
_CHUNK = 1 << 16
_LOCK_NAME = ".lock"
_PART_SUFFIX = ".part"
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines


class DatasetDownloadError(OSError):
    """A data set could not be obtained: every mirror failed for a file (see the message).

    Attributes: ``attempts``, a list of ``(url, reason)``; ``directory``, the dataset folder
    where the files can be put by hand to work offline.
    """

    def __init__(self, message: str, attempts: Sequence[tuple[str, str]] = (),
                 directory: Path | None = None):
        super().__init__(message)
        self.attempts = list(attempts)
        self.directory = directory

    def __str__(self) -> str:
        return self.args[0]


class CacheDirectoryError(DatasetDownloadError, PermissionError):
    """The data directory cannot be created or written, so missing files cannot be downloaded."""


class DatasetLockTimeoutError(DatasetDownloadError, TimeoutError):
    """Another process held the data directory's download lock for longer than the timeout."""


class _ChecksumError(ValueError):
    pass


@dataclass(frozen=True)
class DatasetFile:
    """One IDX file of a data set, or the one archive of an archive data set.

    name: file name, e.g. ``'train-images-idx3-ubyte.gz'``. sha256: hex SHA-256 of the
    decompressed IDX payload. size: payload length in bytes. kind: ``'images'`` or ``'labels'``.
    For kind ``'archive'`` (see :func:`archive_file`), sha256 and size are of the file as
    published and ``reader(stream, source)`` turns its bytes into the data set's arrays.
    """

    name: str
    sha256: str
    size: int
    kind: str
    reader: Callable | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in ("images", "labels", "archive"):
            raise ValueError(f"DatasetFile {self.name!r}: kind must be 'images', 'labels' or "
                             f"'archive', got {self.kind!r}")
        if (self.kind == "archive") != callable(self.reader):
            raise ValueError(f"DatasetFile {self.name!r}: an 'archive' needs a reader function "
                             "and the IDX kinds take none")
        h = self.sha256
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ValueError(f"DatasetFile {self.name!r}: sha256 must be 64 lowercase hex "
                             f"digits, got {h!r}")
        if self.size < 0:
            raise ValueError(f"DatasetFile {self.name!r}: size must be >= 0, got {self.size}")


def images_file(name: str, sha256: str, count: int, rows: int = 28, cols: int = 28
                ) -> DatasetFile:
    """Describe an IDX images file of ``count`` uint8 images ``rows x cols`` (payload size
    ``16 + count*rows*cols`` bytes)."""
    return DatasetFile(name, sha256, 16 + count * rows * cols, "images")


def labels_file(name: str, sha256: str, count: int) -> DatasetFile:
    """Describe an IDX labels file of ``count`` uint8 labels (payload size ``8 + count``)."""
    return DatasetFile(name, sha256, 8 + count, "labels")


def archive_file(name: str, sha256: str, size: int, reader: Callable) -> DatasetFile:
    """Describe a data set published as one gzip-compressed archive of ``size`` bytes with
    this SHA-256 (of the file as stored). ``reader(stream, source)`` reads a binary stream of
    those bytes once, in order, and returns ``(x_train, y_train), (x_test, y_test)``; source
    names the file for messages. The result is used only if the same bytes hash right."""
    return DatasetFile(name, sha256, size, "archive", reader)


@dataclass(frozen=True)
class Dataset:
    """Everything :func:`load_dataset` needs to know about one data set.

    name: for messages, e.g. ``'MNIST'``. subdir: folder under the data dir, e.g. ``'mnist'``.
    files: (train images, train labels, test images, test labels), or one archive_file.
    mirrors: default base URLs, tried in order. mirrors_env: environment variable that replaces
    them (comma-separated).
    """

    name: str
    subdir: str
    files: tuple[DatasetFile, ...]
    mirrors: tuple[str, ...]
    mirrors_env: str

    def __post_init__(self):
        kinds = tuple(f.kind for f in self.files)
        if kinds not in (("images", "labels", "images", "labels"), ("archive",)):
            raise ValueError(f"Dataset {self.name!r}: files must be (train images, train labels, "
                             f"test images, test labels) or one archive, got kinds {kinds}")
        if not self.subdir or "/" in self.subdir or "\\" in self.subdir:
            raise ValueError(f"Dataset {self.name!r}: subdir must be one folder name, "
                             f"got {self.subdir!r}")


# --------------------------------------------------------------------------- directories


def get_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the absolute root data directory (the dataset folders live below it).

    Order: the ``data_dir`` argument, else ``$MINICNN_DATA_DIR``, else
    ``$XDG_CACHE_HOME/minicnn`` (if absolute), else ``~/.cache/minicnn``. Nothing is created.
    """
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"get_data_dir: data_dir must be a path (str or os.PathLike) or "
                            f"None, got {type(data_dir).__name__}")
        root = os.fspath(data_dir)
        if not root:
            raise ValueError("get_data_dir: data_dir is an empty string; pass a folder path "
                             "or None for the default")
    elif os.environ.get("MINICNN_DATA_DIR"):
        root = os.environ["MINICNN_DATA_DIR"]
    elif os.environ.get("XDG_CACHE_HOME") and os.path.isabs(os.environ["XDG_CACHE_HOME"]):
        # The XDG spec says relative values are invalid and must be ignored.
        root = os.path.join(os.environ["XDG_CACHE_HOME"], "minicnn")
    else:
        root = os.path.join("~", ".cache", "minicnn")
    return Path(os.path.abspath(os.path.expanduser(root)))


def _manual_hint(spec: Dataset, directory: Path) -> str:
    if spec.files[0].kind == "archive":
        f = spec.files[0]
        return (
            f"To work offline, put the file {f.name} ({f.size:,} bytes, as published by any "
            f"{spec.name} mirror) in\n    {directory}{os.sep}\n"
            f"or put it in <dir>{os.sep}{spec.subdir}{os.sep} and set MINICNN_DATA_DIR=<dir> "
            f"(or pass data_dir=<dir>)."
        )
    names = ", ".join(f.name for f in spec.files)
    return (
        f"To work offline, put the four files\n    {names}\n"
        f"(gzip-compressed IDX, from any {spec.name} mirror) in\n    {directory}{os.sep}\n"
        f"or put them in <dir>{os.sep}{spec.subdir}{os.sep} and set MINICNN_DATA_DIR=<dir> "
        f"(or pass data_dir=<dir>)."
    )


# --------------------------------------------------------------------------- mirrors


def _check_urls(urls: Iterable[str], where: str) -> list[str]:
    out = []
    for u in urls:
        if not isinstance(u, str):
            raise TypeError(f"{where}: mirror URLs must be strings, got {type(u).__name__}")
        u = u.strip()
        if not u:
            continue
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{where}: {u!r} is not an http(s) base URL; expected e.g. "
                             "'https://host/path/'")
        out.append(u if u.endswith("/") else u + "/")
    if not out:
        raise ValueError(f"{where}: no mirror URL given; pass at least one base URL")
    return out


def resolve_mirrors(spec: Dataset, mirrors: str | Sequence[str] | None = None) -> list[str]:
    """Return the base URLs to try, in order, each ending with ``/``.

    ``mirrors`` (a sequence of base URLs, or one comma-separated string) replaces the list;
    else the environment variable ``spec.mirrors_env`` (comma-separated); else the defaults.
    Raises ValueError/TypeError for a URL that is not http(s).
    """
    if mirrors is not None:
        if isinstance(mirrors, str):
            return _check_urls(mirrors.split(","), "load_data(mirrors=...)")
        if not isinstance(mirrors, Iterable):
            raise TypeError(f"load_data: mirrors must be a list of base URLs, a comma-separated "
                            f"string or None, got {type(mirrors).__name__}")
        return _check_urls(mirrors, "load_data(mirrors=...)")
    env = os.environ.get(spec.mirrors_env, "")
    if env.strip():
        return _check_urls(env.split(","), f"${spec.mirrors_env}")
    return list(spec.mirrors)


def redirect_allowed(from_url: str, to_url: str) -> bool:
    """Whether a redirect from ``from_url`` to ``to_url`` may be followed.

    Only http and https targets are allowed, and https is never downgraded to http (a
    downgrade would let anyone on the path substitute the file before its checksum check).
    """
    src, dst = urlsplit(from_url).scheme.lower(), urlsplit(to_url).scheme.lower()
    if dst not in ("http", "https"):
        return False
    return not (src == "https" and dst == "http")


class _InsecureRedirect(Exception):
    pass


def _refuse_insecure_redirect(response, *args, **kwargs):
    """requests response hook: stop before following a redirect that ``redirect_allowed``
    refuses. requests calls it for every response, redirects included, before following."""
    if response.is_redirect:
        target = urljoin(response.url, response.headers["location"])
        if not redirect_allowed(response.url, target):
            response.close()
            raise _InsecureRedirect(
                f"refused redirect from {response.url} to {target} (https is never "
                "downgraded to http)"
            )
    return response


def _make_session():
    import requests

    session = requests.Session()
    # trust_env stays True: proxies, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE and .netrc from the
    # environment apply. TLS verification is never switched off.
    session.max_redirects = MAX_REDIRECTS
    # 'identity' so the bytes on the wire are the .gz file itself, not a transport encoding.
    session.headers.update({"Accept-Encoding": "identity", "User-Agent": "minicnn-datasets"})
    session.hooks["response"].append(_refuse_insecure_redirect)
    return session


# --------------------------------------------------------------------------- verification


def _load_verified(path: Path, f: DatasetFile) -> np.ndarray:
    if f.kind == "archive":
        return _read_verified_archive(path, f)
    # Inflate once, parse and hash the same bytes; the cap stops a bad file inflating forever.
    payload = read_payload(path, max_size=f.size)
    arr = parse_idx(payload, source=str(path), kind=f.kind)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != f.sha256:
        raise _ChecksumError(
            f"{path}: SHA-256 of the decompressed data is {digest}, expected {f.sha256} "
            "(corrupted or a different file)"
        )
    return arr


class _HashingReader:
    """A binary stream that feeds every byte it passes on to a hash."""

    def __init__(self, raw, digest):
        self.raw, self.digest = raw, digest

    def read(self, size=-1):
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def drain(self):
        while self.read(_CHUNK):
            pass


def _read_verified_archive(path: Path, f: DatasetFile):
    """Run the archive's reader on the file while hashing the same bytes (one pass).

    A wrong size or SHA-256 raises _ChecksumError (so the file is downloaded again), also when
    the reader failed on the bad bytes; a reader error on a file that hashes right is raised
    as it is (the file is the published one: downloading it again would not help).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        if size != f.size:
            raise _ChecksumError(f"{path}: {size} bytes, expected {f.size} (truncated or a "
                                 "different file)")
        stream = _HashingReader(raw, digest)
        # A download is read under its temporary name, which means nothing to a user.
        source = (f"{path.parent / f.name} (as downloaded, not kept)"
                  if path.name.endswith(_PART_SUFFIX) else str(path))
        try:
            result = f.reader(stream, source)
        except Exception:
            stream.drain()
            if digest.hexdigest() == f.sha256:
                raise
            result = None  # bad bytes: the checksum error below says so
        else:
            stream.drain()
    if digest.hexdigest() != f.sha256:
        raise _ChecksumError(f"{path}: SHA-256 is {digest.hexdigest()}, expected {f.sha256} "
                             "(corrupted or a different file)")
    return result


def _stat_key(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- lock


class _DirectoryLock:
    """Exclusive inter-process lock on a file; waits up to ``timeout`` seconds.

    POSIX uses ``fcntl.flock``, Windows ``msvcrt.locking``; both are released by the kernel
    when the holder dies, so a leftover lock file is harmless.
    """

    def __init__(self, path: Path, timeout: float, on_wait: Callable[[], None]):
        self.path, self.timeout, self.on_wait = path, timeout, on_wait
        self.fd = None
        self.locked = False

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise _DirectoryNotWritable(e) from e
        deadline = time.monotonic() + self.timeout
        waited = False
        while True:
            try:
                _try_lock(self.fd)
                self.locked = True
                return self
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EAGAIN, getattr(errno, "EDEADLOCK", -1)):
                    pass  # msvcrt reports a held lock this way
                elif e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    # Some network filesystems have no locks: renames are still atomic, so
                    # the cache stays sound; only a duplicate download becomes possible.
                    logger.warning("cannot lock %s (%s); continuing without a lock",
                                   self.path, e.strerror)
                    return self
                else:
                    raise
            if not waited:
                waited = True
                self.on_wait()
            if time.monotonic() >= deadline:
                os.close(self.fd)
                self.fd = None
                raise DatasetLockTimeoutError(
                    f"Timed out after {self.timeout:g} s waiting for the lock {self.path}, held "
                    "by another process downloading the same data set. Wait for it to finish "
                    "and try again (the lock is released automatically when that process ends)."
                )
            time.sleep(0.05)

    def __exit__(self, *exc):
        if self.fd is not None:
            if self.locked:
                _unlock(self.fd)
            os.close(self.fd)
            self.fd = None
        return False


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd):
        fcntl.flock(fd, fcntl.LOCK_UN)


class _DirectoryNotWritable(Exception):
    def __init__(self, err: OSError):
        super().__init__(err)
        self.err = err


# --------------------------------------------------------------------------- download


class _MirrorFailure(Exception):
    def __init__(self, reason: str, transient: bool):
        super().__init__(reason)
        self.reason, self.transient = reason, transient


@dataclass
class _Options:
    connect_timeout: float
    read_timeout: float
    attempts: int
    backoff: float
    show_progress: bool


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _fetch(session, url: str, out, f: DatasetFile, opt: _Options) -> int:
    """Stream ``url`` into the open binary file ``out``; return the byte count.

    Raises _MirrorFailure for anything that makes this response unusable.
    """
    import requests
    import urllib3

    try:
        resp = session.get(url, stream=True, timeout=(opt.connect_timeout, opt.read_timeout))
    except _InsecureRedirect as e:
        raise _MirrorFailure(str(e), transient=False) from None
    except requests.exceptions.ConnectTimeout:
        raise _MirrorFailure(f"connection timed out after {opt.connect_timeout:g} s",
                             transient=True) from None
    except requests.exceptions.ReadTimeout:
        raise _MirrorFailure(f"no response within {opt.read_timeout:g} s (stalled)",
                             transient=True) from None
    except requests.exceptions.SSLError as e:
        raise _MirrorFailure(f"TLS error: {_root_cause(e)}", transient=False) from None
    except requests.exceptions.TooManyRedirects:
        raise _MirrorFailure(f"more than {MAX_REDIRECTS} redirects", transient=False) from None
    except requests.exceptions.RequestException as e:
        raise _MirrorFailure(f"connection failed: {_root_cause(e)}", transient=True) from None

    with resp:
        if resp.status_code != 200:
            code = resp.status_code
            raise _MirrorFailure(f"HTTP {code} {resp.reason or ''}".rstrip(),
                                 transient=code >= 500 or code in (408, 429))
        ctype = resp.headers.get("Content-Type", "")
        if "html" in ctype.lower():
            raise _MirrorFailure(f"answered with an HTML page (Content-Type: {ctype}), not the "
                                 "gzip file", transient=False)
        # A .gz of uint8 data is never much larger than the data; anything bigger is wrong.
        limit = f.size + f.size // 100 + 65536
        length = resp.headers.get("Content-Length")
        try:
            length = int(length) if length is not None else None
        except ValueError:
            length = None
        if length is not None and length > limit:
            raise _MirrorFailure(f"response is {length} bytes, more than the {limit} bytes a "
                                 f"gzip of this {f.size}-byte file can be", transient=False)
        received = 0
        head = b""
        # read1 (urllib3 >= 2) returns what has arrived instead of waiting for a full chunk,
        # so the progress bar moves on slow links.
        read = getattr(resp.raw, "read1", resp.raw.read)
        bar = _progress(f.name, length, opt.show_progress)
        try:
            while True:
                try:
                    # decode_content=False: store exactly the bytes sent (the .gz itself).
                    chunk = read(_CHUNK, decode_content=False)
                except urllib3.exceptions.ReadTimeoutError:
                    raise _MirrorFailure(
                        f"stalled: no data for {opt.read_timeout:g} s after {received} bytes",
                        transient=True) from None
                except urllib3.exceptions.ProtocolError as e:
                    total = f" of {length}" if length is not None else ""
                    raise _MirrorFailure(
                        f"truncated: connection closed after {received}{total} bytes "
                        f"({_short(e)})", transient=True) from None
                except (urllib3.exceptions.HTTPError, OSError) as e:
                    raise _MirrorFailure(f"transfer failed after {received} bytes: {_short(e)}",
                                         transient=True) from None
                if not chunk:
                    break
                if len(head) < 64:
                    head += chunk[: 64 - len(head)]
                    _sniff(head, final=False)
                received += len(chunk)
                if received > limit:
                    raise _MirrorFailure(f"response is longer than the {limit} bytes a gzip of "
                                         f"this {f.size}-byte file can be", transient=False)
                _write_all(out, chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        _sniff(head, final=True)
        if length is not None and received != length:
            raise _MirrorFailure(f"wrong length: received {received} bytes, Content-Length "
                                 f"says {length}", transient=True)
        return received


def _write_all(out, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[out.write(view):]


def _sniff(head: bytes, final: bool) -> None:
    """Reject a body that is visibly not gzip as soon as its first bytes are known."""
    stripped = head.lstrip()
    if stripped[:1] == b"<":
        raise _MirrorFailure("answered with an HTML page, not the gzip file", transient=False)
    if len(head) >= 2 or final:
        if head[:2] != b"\x1f\x8b":
            what = "an empty body" if not head else f"data starting with {head[:8]!r}"
            raise _MirrorFailure(f"not gzip data: got {what}", transient=False)


def _short(e: BaseException | str) -> str:
    s = str(e) or type(e).__name__
    return s if len(s) <= 200 else s[:197] + "..."


def _root_cause(e: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, e.g. '[Errno 111] Connection
    refused' instead of a 300-character 'Max retries exceeded' wrapper."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        inner = getattr(e, "reason", None)
        if not isinstance(inner, BaseException):
            inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        if inner is None:
            break
        e = inner
    s = str(e) or type(e).__name__
    # urllib3 puts the connection's repr first: "HTTPConnection(host=..., port=...): why".
    if s.startswith(("HTTPConnection(", "HTTPSConnection(")) and "): " in s:
        s = s.split("): ", 1)[1]
    return _short(s)


def _progress(name: str, total: int | None, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    # A terminal reporting its size as 0x0 (e.g. under `script`) makes tqdm hide the bar;
    # shutil falls back to $COLUMNS/$LINES or 80x24 there.
    cols, rows = shutil.get_terminal_size()
    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, leave=True, ncols=cols, nrows=rows)


def _part_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}{_PART_SUFFIX}"


def _remove_stale_parts(directory: Path, spec: Dataset) -> None:
    # Only called with the lock held: no live process is writing any of these.
    for f in spec.files:
        for p in directory.glob(f".{f.name}.*{_PART_SUFFIX}"):
            try:
                p.unlink()
            except OSError:
                pass


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # pragma: no cover
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _download_file(session, spec: Dataset, f: DatasetFile, mirrors: list[str],
                   directory: Path, opt: _Options) -> np.ndarray:
    """Fetch ``f`` from the first mirror that yields a verified file and rename it into place.

    Returns the verified array. Raises DatasetDownloadError listing every URL tried.
    """
    tried: list[tuple[str, str]] = []
    final = directory / f.name
    for base in mirrors:
        url = base + f.name
        for attempt in range(1, opt.attempts + 1):
            if attempt > 1:
                time.sleep(opt.backoff * 2 ** (attempt - 2))
            tmp = directory / _part_name(f.name)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
            except OSError as e:
                raise _DirectoryNotWritable(e) from e
            done = False
            try:
                # Unbuffered: each chunk goes straight to the file (they are 64 KiB anyway).
                with os.fdopen(fd, "wb", buffering=0) as out:
                    _fetch(session, url, out, f, opt)
                    os.fsync(out.fileno())
                arr = _load_verified(tmp, f)
                os.replace(tmp, final)
                done = True
                _fsync_dir(directory)
                logger.info("downloaded %s from %s", f.name, url)
                return arr
            except _MirrorFailure as e:
                reason, transient = e.reason, e.transient
            except (IDXFormatError, _ChecksumError) as e:
                # The message starts with the temporary path, which means nothing to a user.
                why = str(e).replace(f"{tmp}: ", "")
                reason = f"downloaded file failed verification: {why}"
                transient = False
            finally:
                if not done:
                    try:
                        tmp.unlink()
                    except FileNotFoundError:
                        pass
            if transient and opt.attempts > 1:
                reason += f" (attempt {attempt} of {opt.attempts})"
            tried.append((url, reason))
            retry = transient and attempt < opt.attempts
            last_mirror = base == mirrors[-1]
            logger.info("%s: %s", url, reason)
            if opt.show_progress and (retry or not last_mirror):
                then = "trying again" if retry else "trying the next mirror"
                print(f"{url}: {reason}; {then}", file=sys.stderr)
            if not retry:
                break
    lines = "\n".join(f"  - {u}: {r}" for u, r in tried)
    raise DatasetDownloadError(
        f"Could not download {f.name} of {spec.name} from any mirror. Tried:\n{lines}\n"
        f"Other mirrors can be given with mirrors=[...] or ${spec.mirrors_env} "
        f"(comma-separated base URLs).\n{_manual_hint(spec, directory)}",
        attempts=tried, directory=directory,
    )


def _not_writable_error(spec: Dataset, directory: Path, err: OSError,
                        problems: dict[str, str]) -> CacheDirectoryError:
    why = "\n".join(f"  - {name}: {p}" for name, p in problems.items())
    return CacheDirectoryError(
        f"Cannot write to the data directory {directory} ({err.strerror or err}), so the "
        f"{spec.name} files cannot be downloaded there. Needed:\n{why}\n"
        "Set MINICNN_DATA_DIR to a writable directory or pass data_dir=.\n"
        + _manual_hint(spec, directory),
        directory=directory,
    )


# --------------------------------------------------------------------------- entry point


def load_dataset(
    spec: Dataset,
    data_dir: str | os.PathLike | None = None,
    mirrors: str | Sequence[str] | None = None,
    verbose: int = 1,
    *,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    attempts: int | None = None,
    backoff: float | None = None,
    lock_timeout: float | None = None,
):
    """Load an IDX data set as ``(x_train, y_train), (x_test, y_test)``, downloading if needed.

    Files live in ``get_data_dir(data_dir) / spec.subdir``. Every file is verified (SHA-256
    of the decompressed payload; of the file itself for an archive, whose reader's result is
    returned as it is) on every load; valid files mean no network and no writes.
    Missing or invalid files are downloaded from ``resolve_mirrors(spec, mirrors)`` under a
    directory lock, verified, and renamed into place.

    verbose: 0 silent; >= 1 shows a progress bar per downloaded file when stderr is a
    terminal. connect_timeout / read_timeout (s), attempts (per URL), backoff (s) and
    lock_timeout (s) default to the module constants.
    Returns uint8 arrays: x ``(N, rows, cols)``, y ``(N,)``; e.g. MNIST N = 60000 / 10000.
    Raises DatasetDownloadError (an OSError) when every mirror fails, CacheDirectoryError
    when a download is needed but the directory is not writable, DatasetLockTimeoutError
    when another downloader holds the lock too long.
    """
    if not isinstance(spec, Dataset):
        raise TypeError(f"load_dataset: spec must be a Dataset, got {type(spec).__name__}")
    if not isinstance(verbose, int):
        raise TypeError(f"load_data: verbose must be an int (0 or 1), got {verbose!r}")
    if mirrors is not None:
        resolve_mirrors(spec, mirrors)  # reject a bad argument now, not only when downloading
    opt = _Options(
        connect_timeout=CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
        read_timeout=READ_TIMEOUT if read_timeout is None else read_timeout,
        attempts=ATTEMPTS_PER_URL if attempts is None else attempts,
        backoff=BACKOFF if backoff is None else backoff,
        show_progress=verbose >= 1 and _stderr_is_tty(),
    )
    if opt.attempts < 1:
        raise ValueError(f"load_dataset: attempts must be >= 1, got {opt.attempts}")
    directory = get_data_dir(data_dir) / spec.subdir

    arrays: dict[str, np.ndarray] = {}
    problems: dict[str, str] = {}
    seen = {}
    for f in spec.files:
        path = directory / f.name
        seen[f.name] = _stat_key(path)
        try:
            arrays[f.name] = _load_verified(path, f)
        except FileNotFoundError:
            problems[f.name] = "missing"
        except (IDXFormatError, _ChecksumError) as e:
            problems[f.name] = str(e)
        except OSError as e:
            problems[f.name] = f"cannot be read ({e})"

    if problems:
        _download_missing(spec, directory, problems, seen, arrays, mirrors, opt,
                          LOCK_TIMEOUT if lock_timeout is None else lock_timeout)

    if spec.files[0].kind == "archive":
        return arrays[spec.files[0].name]
    x_train, y_train, x_test, y_test = (arrays[f.name] for f in spec.files)
    tr_i, tr_l, te_i, te_l = (str(directory / f.name) for f in spec.files)
    check_pair(x_train, y_train, tr_i, tr_l)
    check_pair(x_test, y_test, te_i, te_l)
    return (x_train, y_train), (x_test, y_test)


def _download_missing(spec, directory, problems, seen, arrays, mirrors, opt, lock_timeout):
    for name, p in problems.items():
        logger.info("%s: %s; downloading", directory / name, p)
    mirror_list = resolve_mirrors(spec, mirrors)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _not_writable_error(spec, directory, e, problems) from e

    def on_wait():
        logger.info("waiting for %s: another process is downloading %s", directory / _LOCK_NAME,
                    spec.name)
        if opt.show_progress:
            print(f"Waiting for another process to finish downloading {spec.name} into "
                  f"{directory} ...", file=sys.stderr)

    session = None
    try:
        with _DirectoryLock(directory / _LOCK_NAME, lock_timeout, on_wait) as lock:
            if lock.locked:
                _remove_stale_parts(directory, spec)
            for f in spec.files:
                if f.name not in problems:
                    continue
                path = directory / f.name
                if _stat_key(path) != seen[f.name]:
                    # Another process replaced it while we waited for the lock: use theirs.
                    try:
                        arrays[f.name] = _load_verified(path, f)
                        continue
                    except (OSError, IDXFormatError, _ChecksumError):
                        pass
                if session is None:
                    session = _make_session()
                arrays[f.name] = _download_file(session, spec, f, mirror_list, directory, opt)
    except _DirectoryNotWritable as e:
        raise _not_writable_error(spec, directory, e.err, problems) from e.err
    finally:
        if session is not None:
            session.close()
