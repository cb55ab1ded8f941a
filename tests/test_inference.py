"The serving runtime: no fastai or torchvision, the same answers on every backend, specific errors for bad photos."
import io, json, shutil, struct, subprocess, sys, zlib

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE
import dogbreeds.inference as I
from dogbreeds.core import (CorruptImageError, DogbreedsError, EmptyImageError, ImageTooLargeError, ImageTooSmallError,
                            IntegrityError, NotAnImageError)
from dogbreeds.inference import Predictor


@pytest.fixture(scope='module')
def pred(model_dir): return Predictor.load(model_dir)


@pytest.fixture(scope='module')
def photo(): return sorted((SAMPLE / 'val' / 'n02111889').glob('*'))[0]  # a Samoyed


def encode(im, fmt, **kw):
    b = io.BytesIO(); im.save(b, fmt, **kw); return b.getvalue()


@pytest.mark.parametrize('backend, allowed', [('onnx', set()), ('torchscript', {'torch'})])
def test_imports_neither_fastai_nor_torchvision(model_dir, photo, backend, allowed):
    code = (f"import sys; from dogbreeds.inference import Predictor; "
            f"p = Predictor.load({str(model_dir)!r}, backend={backend!r}); print(p.predict({str(photo)!r}).top[0][0]); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'fastai'}))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    breed, mods = r.stdout.strip().splitlines()
    assert set(eval(mods)) == allowed and breed


def test_predict_ordered_pairs(pred, photo, trained_run):
    top = pred.predict(photo.read_bytes(), k=5).top
    assert len(top) == 5 and all(isinstance(b, str) and 0 <= p <= 1 for b, p in top)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert sum(p for _, p in pred.predict(photo, k=len(pred.breeds)).top) == pytest.approx(1, abs=1e-5)
    assert {b for b, _ in top} <= set(trained_run.data.breeds)


def test_every_input_kind_same_answer(pred, photo):
    want = pred.predict(photo)
    im = Image.open(photo)
    for src in (photo, str(photo), photo.read_bytes(), io.BytesIO(photo.read_bytes()), im, np.array(im.convert('RGB'))):
        assert pred.predict(src) == want


def test_backends_agree(model_dir, pred):
    ts = Predictor.load(model_dir, backend='torchscript')
    photos = sorted(SAMPLE.rglob('*.JPEG'))[::10]
    for f in photos:
        a, b = pred.predict(f, k=10).top, ts.predict(f, k=10).top
        assert a[0][0] == b[0][0]
        assert np.abs(np.array([p for _, p in a]) - np.array([p for _, p in b])).max() <= 1e-4


def test_batch_of_mixed_sizes_matches_single(pred):
    photos = sorted(SAMPLE.rglob('*.JPEG'))[:24]
    assert len({Image.open(p).size for p in photos}) > 3
    batch = [r.top for r in pred.predict_batch([p.read_bytes() for p in photos], k=3)]
    for p, r in zip(photos, batch):
        single = pred.predict(p, k=3).top
        assert [b for b, _ in r] == [b for b, _ in single]
        assert np.allclose([v for _, v in r], [v for _, v in single], atol=1e-5)


def png_claiming(w, h):
    data = encode(Image.new('RGB', (8, 8)), 'PNG')
    ihdr = struct.pack('>II', w, h) + data[24:29]
    return data[:16] + ihdr + struct.pack('>I', zlib.crc32(b'IHDR' + ihdr)) + data[33:]


def bad_inputs(photo):
    data = photo.read_bytes()
    return {'empty': (b'', EmptyImageError), 'text': (b'{"not": "a photo"}', NotAnImageError),
            'truncated jpeg': (data[: len(data) // 3], CorruptImageError),
            '1x1': (encode(Image.new('RGB', (1, 1)), 'PNG'), ImageTooSmallError),
            'png claiming 20000x20000': (png_claiming(20000, 20000), ImageTooLargeError)}


def good_odd_inputs(photo):
    im = Image.open(photo).convert('RGB')
    gif = encode(im.convert('P'), 'GIF', save_all=True, append_images=[Image.new('RGB', im.size, 'red').convert('P')])
    return {'animated gif': gif, 'cmyk jpeg': encode(im.convert('CMYK'), 'JPEG', quality=95),
            '16-bit png': encode(Image.fromarray(np.asarray(im.convert('L'), dtype=np.uint16) * 257), 'PNG')}


def test_bad_input_gives_specific_errors(pred, photo):
    for name, (data, exc) in bad_inputs(photo).items():
        with pytest.raises(exc): pred.predict(data)
    with pytest.raises(ImageTooLargeError): Predictor.load(pred.model_dir, max_bytes=1000).predict(photo)
    with pytest.raises(DogbreedsError, match='uint8'): pred.predict(np.zeros((10, 10, 3), np.float32))


def test_odd_but_valid_photos_are_classified(pred, photo):
    want = pred.predict(photo).top[0][0]
    res = {name: pred.predict(data).top for name, data in good_odd_inputs(photo).items()}
    assert res['cmyk jpeg'][0][0] == want and res['animated gif'][0][0] == want
    assert all(len(r) == 5 for r in res.values())


def test_batch_with_bad_photos(pred, photo):
    items = [photo.read_bytes()] + [d for d, _ in bad_inputs(photo).values()] + list(good_odd_inputs(photo).values())
    res = pred.predict_batch(items, errors='return')
    assert res[0].top == pred.predict(photo).top
    assert [type(r) for r in res[1:6]] == [e for _, e in bad_inputs(photo).values()]
    assert all(isinstance(r, I.Prediction) for r in res[6:])
    with pytest.raises(EmptyImageError): pred.predict_batch(items)


def test_tampered_model_is_refused(model_dir, tmp_path):
    d = shutil.copytree(model_dir, tmp_path / 'm')
    b = bytearray((d / 'model.onnx').read_bytes()); b[len(b) // 2] ^= 0xFF
    (d / 'model.onnx').write_bytes(bytes(b))
    with pytest.raises(IntegrityError, match='model.onnx'): Predictor.load(d)
    (d / 'model.onnx').unlink()
    with pytest.raises(IntegrityError, match='model.onnx is missing'): Predictor.load(d)


def test_backend_errors(model_dir, monkeypatch):
    monkeypatch.setattr(I, '_installed', lambda mod: False)
    with pytest.raises(DogbreedsError, match="pip install 'dogbreeds\\[serve\\]'"): Predictor.load(model_dir)
    monkeypatch.undo()
    with pytest.raises(DogbreedsError, match="backend must be"): Predictor.load(model_dir, backend='tensorflow')


def test_classify_cli(model_dir, photo):
    r = subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'classify', '--model', str(model_dir),
                        str(photo), str(photo), '-k', '2'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(photo) and len(lines) == 6 and lines[1].strip().endswith(tuple(Predictor.load(model_dir).breeds))


def test_measure(pred):
    m = I.measure(pred, n=5)
    assert m['backend'] == 'onnx' and 0 < m['p50_ms'] <= m['p95_ms'] and m['rss_mb'] > 10 and m['payload_kb'] > 1


def phone_photo(photo, size=(4032, 3024), seed=0, **kw):
    "A val photo blown up to a phone's 12 megapixels, with sensor-like noise so that it compresses like one."
    im = np.asarray(Image.open(photo).convert('RGB').resize(size, Image.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, im.shape, dtype=np.int16)
    return Image.fromarray(np.clip(im + noise, 0, 255).astype(np.uint8))


def test_phone_photos_decode_reduced_and_answer_as_full_decoding(model_dir, pred):
    full = Predictor.load(model_dir, fast_decode=False)
    assert pred.shrink_to == 2 * pred.size and full.shrink_to is None  # box reductions never below twice the input
    assert pred.draft_to == pred.size and full.draft_to is None  # JPEG: the coarsest DCT scale covering the input
    for i, f in enumerate(sorted((SAMPLE / 'val').rglob('*.JPEG'))[::27]):
        data = encode(phone_photo(f, seed=i), 'JPEG', quality=90)
        assert pred.draft_to <= min(pred.decode(data).shape[:2]) < 2 * pred.shrink_to
        a, b = pred.predict(data), full.predict(data)
        assert a.top[0][0] == b.top[0][0], f
        assert max(abs(x - dict(b.top)[k]) for k, x in a.top) < 0.05, f  # the test model; the default model: benchmarks/phone.py


@pytest.mark.parametrize('size, orientation', [((4080, 3060), None), ((4032, 3024), 6), ((3060, 4080), 8)])
def test_reduced_decoding_keeps_orientation_and_alignment(model_dir, pred, photo, size, orientation):
    "Sides not in whole 8x8 blocks, or a photo stored sideways (EXIF): reduced decoding shows what full decoding does."
    from dogbreeds.testing import photo_exif
    full = Predictor.load(model_dir, fast_decode=False)
    data = encode(phone_photo(photo, size=size), 'JPEG', quality=90, exif=photo_exif(orientation).tobytes())
    a, b = pred.decode(data), full.decode(data)
    assert b.shape[:2] == (size[::-1] if orientation in (None, 1) else size)  # upright
    assert abs(a.shape[0] / a.shape[1] - b.shape[0] / b.shape[1]) < 0.01 and min(a.shape[:2]) < min(b.shape[:2]) / 2
    boxed = np.asarray(Image.fromarray(b).resize(a.shape[1::-1], Image.BOX), dtype=np.float32)
    assert np.abs(boxed - a).mean() < 2  # the same pixels, the same way up: not shifted, mirrored or turned
    x, y = pred.predict(data, k=len(pred.breeds)), full.predict(data, k=len(pred.breeds))
    assert x.top[0][0] == y.top[0][0] and max(abs(p - dict(y.top)[k]) for k, p in x.top) < 0.1  # the 96 px test model


@pytest.mark.parametrize('fmt', ['PNG', 'WEBP', 'GIF'])
def test_large_photos_of_other_formats_decode_within_the_pixel_cap(pred, photo, fmt):
    data = encode(phone_photo(photo, size=(3000, 2250)), fmt)
    x = pred.decode(data)
    assert pred.shrink_to <= min(x.shape[:2]) < 2 * pred.shrink_to  # reduced early, before the resize
    assert pred.predict(data).top[0][0] == pred.predict(photo).top[0][0]


def test_truncated_phone_jpeg_is_a_clear_error(pred, photo):
    data = encode(phone_photo(photo), 'JPEG', quality=90)
    with pytest.raises(CorruptImageError, match='truncated or corrupt'): pred.predict(data[: len(data) // 2])
