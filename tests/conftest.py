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
