"Every dataset source on small trees of real photos, and every kind of bad data."
import shutil

import numpy as np
import pytest
from PIL import Image

from dogbreeds.core import DataError, ParameterError
from dogbreeds.datasets import IMAGEWOOF_BREEDS, detect_layout, from_folder, load_data
from dogbreeds.dataloaders import make_dls

B = ['beagle', 'Samoyed', 'dingo']


def split_counts(d):
    return {b: tuple(sum(1 for l, v in zip(d.labels, d.is_valid) if l == b and v == valid) for valid in (False, True))
            for b in d.breeds}


def test_folder_train_valid(make_tree):
    spec = {f'{s}/{b.lower()}_dog/{i}.jpg': b for b in B for s, n in (('train', 3), ('valid', 2)) for i in range(n)}
    root = make_tree(spec)
    d = load_data(root, progress=False)
    assert d.source == 'folder' and d.breeds == ['beagle dog', 'dingo dog', 'samoyed dog']  # underscores -> spaces
    assert split_counts(d) == {b: (3, 2) for b in d.breeds}
    assert all((p.relative_to(root).parts[0] == 'valid') == v for p, v in zip(d.items, d.is_valid))


def test_folder_val_spelling(make_tree):
    root = make_tree({f'{s}/{b}/{i}.jpg': b for b in B[:2] for s in ('train', 'val') for i in range(2)})
    assert split_counts(load_data(root, progress=False)) == {'Samoyed': (2, 2), 'beagle': (2, 2)}


def test_folder_random_split_is_seeded_and_stratified(make_tree):
    root = make_tree({f'{b}/{i}.jpg': b for b in B for i in range(10)})
    a, b = (load_data(root, valid_pct=0.3, seed=1, progress=False) for _ in range(2))
    c = load_data(root, valid_pct=0.3, seed=2, progress=False)
    assert split_counts(a) == {x: (7, 3) for x in a.breeds}
    valid = lambda d: {p for p, v in zip(d.items, d.is_valid) if v}
    assert valid(a) == valid(b)  # same seed, same split
    assert valid(a) != valid(c)  # another seed, another split
    with pytest.raises(ParameterError, match='valid_pct'): from_folder(root, valid_pct=1.5)


def test_imagewoof_sample_and_names():
    d = load_data('sample', progress=False)
    assert d.source == 'imagewoof' and len(d.breeds) == 10
    assert set(d.breeds) == {n for n, _ in IMAGEWOOF_BREEDS.values()}  # names, never WordNet ids
    assert not any(l.startswith('n0') for l in d.labels)
    assert d.imagenet_ids['Samoyed'] == 258


def test_imagewoof_without_breeds_csv_uses_builtin_table(make_tree):
    wn = {n: w for w, (n, _) in IMAGEWOOF_BREEDS.items()}
    root = make_tree({f'{s}/{wn[b]}/{wn[b]}_{i}.JPEG': b for b in B for s in ('train', 'val') for i in range(2)})
    assert detect_layout(root) == 'imagewoof'
    d = load_data(root, progress=False)
    assert sorted(d.breeds) == sorted(B) and d.n_valid == 6


def test_imagewoof_unknown_wnid(make_tree):
    root = make_tree({'train/n09999999/a.jpg': 'beagle', 'train/n02088364/b.jpg': 'beagle', 'val/n02088364/c.jpg': 'beagle'})
    with pytest.raises(DataError, match='n09999999'): load_data(root, progress=False)


def test_imagewoof_download_path_uses_fastai(monkeypatch, tmp_path):
    "'imagewoof' asks fastai's untar_data for URLs.IMAGEWOOF_160 (offline here, so it is given a local copy)."
    import fastai.data.external as ext
    asked = []
    def fake_untar(url, *a, **k):
        asked.append(url); return shutil.copytree(load_data('sample', verify=False).root, tmp_path / 'imagewoof2-160')
    monkeypatch.setattr(ext, 'untar_data', fake_untar)
    d = load_data('imagewoof', progress=False)
    assert asked == [ext.URLs.IMAGEWOOF_160] and d.n_train == 200


def test_imagewoof_download_failure_is_clear(monkeypatch):
    import fastai.data.external as ext
    def offline(*a, **k): raise OSError('Name or service not known')
    monkeypatch.setattr(ext, 'untar_data', offline)
    with pytest.raises(DataError, match='could not download Imagewoof.*local copy'): load_data('imagewoof')


def pets_spec(split_files=True):
    spec = {}
    for b, slug in (('beagle', 'beagle'), ('Samoyed', 'samoyed'), ('dingo', 'great_pyrenees')):
        for i in range(1, 5): spec[f'images/{slug}_{i}.jpg'] = b
    for i in range(1, 3): spec[f'images/Bengal_{i}.jpg'] = 'golden retriever'  # a "cat": capitalised
    return spec


def test_oxford_pets_dogs_only_official_split(make_tree):
    root = make_tree(pets_spec())
    ann = root / 'annotations'; ann.mkdir()
    names = sorted(p.stem for p in (root / 'images').iterdir())
    test = [n for n in names if n.endswith(('_1', '_2'))]
    (ann / 'trainval.txt').write_text(''.join(f'{n} 1 2 1\n' for n in names if n not in test))
    (ann / 'test.txt').write_text(''.join(f'{n} 1 2 1\n' for n in test))
    (ann / 'list.txt').write_text('#Image CLASS-ID SPECIES BREED ID\n' + ''.join(
        f"{n} 1 {1 if n[0].isupper() else 2} 1\n" for n in names))
    assert detect_layout(root) == 'oxford-pets'
    d = load_data(root, progress=False)
    assert d.breeds == ['Beagle', 'Great pyrenees', 'Samoyed']  # no cats; names from file names
    assert split_counts(d) == {b: (2, 2) for b in d.breeds}
    assert d.imagenet_ids == {'Beagle': 162, 'Great pyrenees': 257, 'Samoyed': 258}


def test_oxford_pets_without_annotations(make_tree):
    d = load_data(f'oxford-pets:{make_tree(pets_spec())}', valid_pct=0.25, progress=False)
    assert d.source == 'oxford-pets' and split_counts(d) == {b: (3, 1) for b in d.breeds}


def stanford_tree(make_tree):
    slugs = {'beagle': 'n02088364-beagle', 'Samoyed': 'n02111889-Samoyed', 'dingo': 'n02085620-Japanese_spaniel'}
    return make_tree({f'Images/{slugs[b]}/{slugs[b][:9]}_{i}.jpg': b for b in B for i in range(4)})


def test_stanford_dogs_official_split(make_tree):
    from scipy.io import savemat
    root = stanford_tree(make_tree)
    files = sorted(f'{p.parent.name}/{p.name}' for p in (root / 'Images').rglob('*.jpg'))
    test = [f for f in files if f.endswith(('_0.jpg', '_1.jpg'))]
    (root / 'lists').mkdir()
    for name, fl in (('train_list.mat', [f for f in files if f not in test]), ('test_list.mat', test)):
        savemat(root / 'lists' / name, {'file_list': np.array([[f] for f in fl], dtype=object)})
    assert detect_layout(root) == 'stanford-dogs'
    d = load_data(root, progress=False)
    assert d.breeds == ['beagle', 'Japanese spaniel', 'Samoyed']
    assert split_counts(d) == {b: (2, 2) for b in d.breeds}
    assert all(v == (p.stem[-2:] in ('_0', '_1')) for p, v in zip(d.items, d.is_valid))
    assert d.imagenet_ids['Japanese spaniel'] == 152


def test_stanford_dogs_random_split(make_tree):
    d = load_data(stanford_tree(make_tree), valid_pct=0.25, progress=False)
    assert d.source == 'stanford-dogs' and split_counts(d) == {b: (3, 1) for b in d.breeds}


# --- bad input: one clear error naming what to fix ---

def test_unknown_path():
    with pytest.raises(DataError, match="'no/such/place' not found"): load_data('no/such/place')


def test_path_is_a_file(sample_photos):
    with pytest.raises(DataError, match='is not a folder'): load_data(sample_photos['beagle'][0])


def test_empty_class_folder(make_tree):
    root = make_tree({f'{b}/{i}.jpg': b for b in B for i in range(3)})
    (root / 'pug').mkdir()
    with pytest.raises(DataError, match=r'class folder .*pug holds no images'): load_data(root)


def test_single_class(make_tree):
    root = make_tree({f'beagle/{i}.jpg': 'beagle' for i in range(4)})
    with pytest.raises(DataError, match="only one breed \\('beagle'\\)"): load_data(root)


def test_no_photos(tmp_path):
    (tmp_path / 'beagle').mkdir(); (tmp_path / 'beagle' / 'notes.txt').write_text('hi')
    with pytest.raises(DataError): load_data(tmp_path)


def test_unreadable_images_are_skipped_and_reported_odd_ones_kept(make_tree, sample_photos):
    root = make_tree({f'{s}/{b}/{i}.jpg': b for b in B for s, n in (('train', 4), ('valid', 2)) for i in range(n)})
    t = root / 'train' / 'beagle'
    (t / 'zero.jpg').write_bytes(b'')
    (t / 'text.jpg').write_text('not a photo at all')
    data = sample_photos['dingo'][-1].read_bytes()
    (t / 'truncated.jpg').write_bytes(data[: len(data) // 3])
    im = Image.open(sample_photos['dingo'][-2])
    im.convert('L').save(t / 'grey.png'); im.convert('CMYK').save(t / 'cmyk.jpg')
    rgba = im.convert('RGBA'); rgba.putalpha(128); rgba.save(t / 'alpha.png')
    exif = Image.Exif(); exif[0x0112] = 6; im.save(t / 'rotated.jpg', exif=exif)
    d = load_data(root, progress=False)
    assert sorted(p.name for p, _ in d.skipped) == ['text.jpg', 'truncated.jpg', 'zero.jpg']
    reasons = dict((p.name, r) for p, r in d.skipped)
    assert 'empty' in reasons['zero.jpg'] and 'truncated' in reasons['truncated.jpg'] and 'not an image' in reasons['text.jpg']
    kept = {p.name for p in d.items}
    assert {'grey.png', 'cmyk.jpg', 'alpha.png', 'rotated.jpg'} <= kept
    assert d.report()['skipped'][0].keys() == {'path', 'reason'}
    # and they load as RGB through the DataLoaders
    dls = make_dls(d, size=64, bs=len(d.items), augment=False)
    x, y = dls.test_dl(sorted(t.iterdir())[:1] + [t / 'grey.png', t / 'rotated.jpg']).one_batch()[0], None
    assert x.shape == (3, 3, 64, 64)


def test_breed_left_without_training_photos(make_tree):
    root = make_tree({f'{s}/{b}/{i}.jpg': b for b in B for s in ('train', 'valid') for i in range(2)})
    for f in (root / 'train' / 'dingo').iterdir(): f.write_bytes(b'')
    with pytest.raises(DataError, match="no training photos for 'dingo'"): load_data(root)


def test_subset():
    d = load_data('sample', progress=False).subset(n_train=3, n_valid=1, breeds=['beagle', 'dingo'])
    assert (d.n_train, d.n_valid, d.breeds) == (6, 2, ['beagle', 'dingo'])
