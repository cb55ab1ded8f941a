import os, shutil
from pathlib import Path

import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / 'data' / 'sample'


@pytest.fixture(scope='session')
def sample_photos():
    "Breed name -> sorted list of real photos from the bundled sample (train and val)."
    from dogbreeds.data import IMAGEWOOF_BREEDS
    return {name: sorted((SAMPLE / 'train' / wnid).glob('*')) + sorted((SAMPLE / 'val' / wnid).glob('*'))
            for wnid, (name, _) in IMAGEWOOF_BREEDS.items()}


@pytest.fixture
def make_tree(tmp_path, sample_photos):
    """Build a dataset tree from real sample photos: `make_tree({'rel/path/name.jpg': breed, ...})`.

    Each value names the breed whose next unused sample photo is copied to that path."""
    def make(spec: dict, root: Path | None = None) -> Path:
        root = root or tmp_path / 'tree'
        used = {}
        for rel, breed in spec.items():
            i = used.get(breed, 0); used[breed] = i + 1
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample_photos[breed][i], dst)
        return root
    return make


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
    "A real (tiny) training run on the whole sample, exported: shared by the export and inference tests."
    from dogbreeds.train import train
    out = tmp_path_factory.mktemp('trained')
    return train('sample', size=96, epochs=1, freeze_epochs=1, lr=2e-3, bs=32, quiet=True, out_dir=out, run_name='run')


@pytest.fixture(scope='session')
def model_dir(trained_run):
    return trained_run.run_dir / 'model'
