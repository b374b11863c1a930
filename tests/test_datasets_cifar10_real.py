"""The real CIFAR-10 archive through load_data(), with no network, when it is in the data dir.

The archive is looked for as ``<data dir>/cifar-10/cifar-10-python.tar.gz``, the data dir
being $MINICNN_DATA_DIR, else ``<repo>/../shared/data``. Unlike real MNIST, the shared data
folder CI reads does not provide CIFAR-10 (and these machines cannot download it), so without
the file the test skips, in CI too, saying where to put it; the archive format itself is
tested offline in test_datasets_cifar10.py with archives built in the same format.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from minicnn.datasets import cifar10
from minicnn.datasets import download as dl

REPO_ROOT = Path(__file__).resolve().parents[1]
# Published md5 of each member (torchvision.datasets.CIFAR10 checks the same values).
MEMBER_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # www.cs.toronto.edu/~kriz/cifar.html


def find_data_dir() -> tuple[Path | None, list[Path]]:
    candidates = []
    if os.environ.get("MINICNN_DATA_DIR"):
        candidates.append(Path(os.environ["MINICNN_DATA_DIR"]))
    shared = (REPO_ROOT.parent / "shared" / "data").resolve()
    if shared not in [c.resolve() for c in candidates]:
        candidates.append(shared)
    for candidate in candidates:
        if (candidate / "cifar-10" / cifar10.ARCHIVE_NAME).is_file():
            return candidate, candidates
    return None, candidates


@pytest.fixture
def cifar_data_dir(monkeypatch):
    found, looked = find_data_dir()
    if found is None:
        pytest.skip(f"the real {cifar10.ARCHIVE_NAME} is not in any of "
                    f"{[str(c / 'cifar-10') for c in looked]} (the shared data folder provides "
                    "only MNIST and Fashion-MNIST, and there is no internet here); put the "
                    "archive in <data dir>/cifar-10/ to run this test")
    monkeypatch.setenv("MINICNN_DATA_DIR", str(found))
    return found


def test_real_cifar10_loads_from_data_dir_without_network(cifar_data_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a valid cache must not touch the network")

    monkeypatch.setattr(dl, "_make_session", no_network)
    folder = cifar_data_dir / "cifar-10"
    before = sorted(os.listdir(folder))

    (x_train, y_train), (x_test, y_test) = cifar10.load_data(verbose=0)

    assert x_train.shape == (50000, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (50000, 1) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 32, 32, 3) and x_test.dtype == np.uint8
    assert y_test.shape == (10000, 1) and y_test.dtype == np.uint8
    # Exactly 5,000 training and 1,000 test images per class (the data set's page).
    assert np.bincount(y_train[:, 0], minlength=10).tolist() == [5000] * 10
    assert np.bincount(y_test[:, 0], minlength=10).tolist() == [1000] * 10
    # frog, truck, truck, deer, automobile, automobile, bird, horse, ship, cat; and the test
    # set's first four, as PyTorch's CIFAR-10 tutorial prints them: cat, ship, ship, plane.
    assert y_train[:10, 0].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert y_test[:4, 0].tolist() == [3, 8, 8, 0]
    assert x_train.min() == 0 and x_train.max() == 255
    assert sorted(os.listdir(folder)) == before  # nothing written there


def test_real_archive_members_are_the_published_files(cifar_data_dir):
    # Independent of the reader: the archive's own md5 and each member's, read with tarfile.
    path = cifar_data_dir / "cifar-10" / cifar10.ARCHIVE_NAME
    assert path.stat().st_size == cifar10.ARCHIVE_SIZE
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    assert digest.hexdigest() == ARCHIVE_MD5
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == sorted([cifar10.FOLDER] + [
            f"{cifar10.FOLDER}/{n}" for n in (*MEMBER_MD5, "readme.html")])
        for name, md5 in MEMBER_MD5.items():
            data = tar.extractfile(members[f"{cifar10.FOLDER}/{name}"]).read()
            assert hashlib.md5(data).hexdigest() == md5, name
            assert data[:2] == b"\x80\x02", name  # protocol 2
