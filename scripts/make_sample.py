"""Rebuild `data/sample/` from the full Imagewoof2 (160 px) tree.

    python scripts/make_sample.py ../shared/datasets/imagewoof2-160 data/sample

Takes a seeded random 20 train and 8 validation photos per breed, shrinks each so that its
short side is 128 px (JPEG quality 80) and writes them in Imagewoof's own layout
(`train/<wnid>/`, `val/<wnid>/`, `breeds.csv`), so the sample exercises the Imagewoof loader.
"""
import csv, random, shutil, sys
from pathlib import Path
from PIL import Image

N_TRAIN, N_VALID, SHORT_SIDE, QUALITY, SEED = 20, 8, 128, 80, 2026

def shrink(src: Path, dst: Path):
    im = Image.open(src).convert('RGB')
    w, h = im.size
    s = SHORT_SIDE / min(w, h)
    if s < 1: im = im.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    im.save(dst, 'JPEG', quality=QUALITY, optimize=True)

def main(src='../shared/datasets/imagewoof2-160', dst='data/sample'):
    src, dst = Path(src), Path(dst)
    rows = list(csv.DictReader(open(src / 'breeds.csv')))
    rng = random.Random(SEED)
    for split in ('train', 'val'): shutil.rmtree(dst / split, ignore_errors=True)
    for r in rows:
        for split, n in (('train', N_TRAIN), ('val', N_VALID)):
            files = sorted((src / split / r['wnid']).iterdir())
            for f in rng.sample(files, n): shrink(f, dst / split / r['wnid'] / f.name)
    shutil.copy(src / 'breeds.csv', dst / 'breeds.csv')

if __name__ == '__main__': main(*sys.argv[1:])
