"""iPhone photos: HEIC files (written with pillow-heif from a real sample photo, read by the runtime's pi-heif) are
decoded as JPEGs are, upright, reduced early, their EXIF GPS read, at every entry point: Predictor, the Lambda
handler, `dogbreeds serve` over HTTP, batch prediction on a folder, and the demo widget."""
import base64, io, json

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE
from dogbreeds.core import IMAGE_EXTS, load_rgb, open_image
from dogbreeds.location import cells, gps_from_exif
from dogbreeds.inference import Predictor
from dogbreeds.testing import ServeProcess, heic, photo_exif

SYDNEY = (-33.8568, 151.2153)


@pytest.fixture(scope='module')
def photo(): return sorted((SAMPLE / 'val' / 'n02111889').glob('*'))[0]  # a Samoyed


@pytest.fixture(scope='module')
def rgb(photo): return Image.open(photo).convert('RGB')


@pytest.fixture(scope='module')
def heic_photo(rgb): return heic(rgb)


@pytest.fixture(scope='module')
def heic_sydney(rgb): return heic(rgb, photo_exif(at=SYDNEY))



def lossless(im) -> bytes:
    b = io.BytesIO(); im.save(b, 'PNG'); return b.getvalue()


def close(got, want, tol=0.02):
    "Two answers, `[(breed, p), ...]` or `[{'breed', 'probability'}, ...]`: the same breeds, probabilities near."
    pairs = lambda a: [(x['breed'], x['probability']) if isinstance(x, dict) else tuple(x) for x in a]
    got, want = pairs(got), pairs(want)
    assert [b for b, _ in got][:2] == [b for b, _ in want][:2], (got, want)
    assert np.abs(np.array([p for _, p in got]) - np.array([p for _, p in want])).max() < tol, (got, want)


# --- the decode path (dogbreeds.core)

def test_heic_decodes_as_the_photo(heic_photo, rgb):
    assert heic_photo[4:12] == b'ftypheic' and open_image(heic_photo).format == 'HEIF'
    im = load_rgb(heic_photo)
    assert im.mode == 'RGB' and im.size == rgb.size
    assert np.abs(np.asarray(im, np.int16) - np.asarray(rgb, np.int16)).mean() < 3  # lossy, but the same photo
    assert '.heic' in IMAGE_EXTS and '.heif' in IMAGE_EXTS
    from dogbreeds.core import ImageTooLargeError
    with pytest.raises(ImageTooLargeError, match='pixels'): load_rgb(heic_photo, max_pixels=100 * 100)  # by its header


def test_heic_orientation_is_applied(rgb):
    "A photo stored sideways with EXIF orientation 6 comes out upright from a HEIC as from a JPEG."
    side = rgb.transpose(Image.Transpose.ROTATE_90)  # stored sideways: viewing it needs 90° clockwise
    h, j = heic(side, photo_exif(6)), io.BytesIO()
    side.save(j, 'JPEG', quality=95, exif=photo_exif(6))
    up_heic, up_jpeg = load_rgb(h), load_rgb(j.getvalue())
    assert up_heic.size == up_jpeg.size == rgb.size
    assert np.abs(np.asarray(up_heic, np.int16) - np.asarray(rgb, np.int16)).mean() < 3
    assert np.abs(np.asarray(up_heic, np.int16) - np.asarray(up_jpeg, np.int16)).mean() < 3
    assert load_rgb(heic(side)).size == side.size  # without the tag: left as stored


def test_large_heic_is_reduced_at_once(rgb):
    "A 1600x1200 HEIC for a model that needs 200 px is reduced by a whole factor in `open_image`, before anything else."
    big = rgb.resize((1600, 1200), Image.BICUBIC)
    h = heic(big, photo_exif(6, at=SYDNEY))
    im = open_image(h, shrink_to=200)
    assert im.size == (200, 267)                         # 1200x1600 upright (libheif turned it), reduced by 6
    assert gps_from_exif(im)[0] is not None              # the EXIF is kept
    small = load_rgb(h, shrink_to=200)
    assert small.size == im.size and 200 <= min(small.size) < 400
    assert load_rgb(h).size == (1200, 1600)
    ref = np.asarray(big.transpose(Image.Transpose.ROTATE_270).reduce(6), np.int16)
    assert np.abs(np.asarray(small, np.int16) - ref).mean() < 3


def test_heic_gps_is_read(heic_sydney, rgb):
    loc, note = gps_from_exif(heic_sydney)
    assert note is None and loc.source == 'exif'
    assert (loc.lat, loc.lon) == pytest.approx(SYDNEY, abs=1e-5)
    assert gps_from_exif(heic(rgb)) == (None, None)


def test_broken_heic_is_a_clear_error(heic_photo):
    from dogbreeds.core import CorruptImageError
    with pytest.raises(CorruptImageError, match='HEIF data is truncated or corrupt'):
        load_rgb(heic_photo[: len(heic_photo) // 2])


# --- every entry point

def test_predictor(toy_dir, heic_photo, rgb, photo, tmp_path):
    p = Predictor.load(toy_dir)
    want = p.predict(lossless(rgb)).top
    close(p.predict(heic_photo).top, want)
    f = tmp_path / 'IMG_0001.HEIC'; f.write_bytes(heic_photo)
    assert p.predict(f) == p.predict(heic_photo) == p.predict(str(f))
    assert p.predict_batch([heic_photo, photo.read_bytes()])[0].top == p.predict(heic_photo).top


@pytest.fixture
def lambda_env(toy_dir, monkeypatch):
    from dogbreeds import lambda_handler as lh
    for k in ('SAGEMAKER_ENDPOINT', 'RESULTS_PREFIX', 'INPUT_PREFIXES', 'MAX_PAYLOAD_BYTES', 'GEO_DB'):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('MODEL_URI', str(toy_dir))
    lh.reset()
    yield lh
    lh.reset()


def test_lambda_handler(lambda_env, toy_dir, heic_photo, rgb):
    from test_lambda import HTTP_KINDS, call, direct, http_event
    want = Predictor.load(toy_dir).predict(heic_photo).top
    for name in HTTP_KINDS:
        status, body = call(http_event(name, heic_photo, 'image/heic'))
        assert status == 200, (name, body)
        close(body['predictions'], want, tol=1e-5)
    status, body = call(direct(heic_photo))
    assert status == 200
    close(body['predictions'], Predictor.load(toy_dir).predict(lossless(rgb)).top)


def test_lambda_reads_the_heic_place(lambda_env, heic_sydney, tmp_path, monkeypatch):
    from dogbreeds.featurestore import FeatureStore
    FeatureStore(tmp_path / 'geo.db').add_many([(*SYDNEY, 'dingo', 500)])
    for k, v in dict(GEO_DB=str(tmp_path / 'geo.db'), GEO_CACHE='lru', GEO_MIN_OBS='20').items():
        monkeypatch.setenv(k, v)
    lambda_env.reset()  # a cold start: the service (model and place prior) is made from these settings
    out = lambda_env.handler(dict(image=base64.b64encode(heic_sydney).decode(), k=3))
    assert out['statusCode'] == 200 and out['location']['source'] == 'exif', out
    assert out['prior']['cell'] == cells(*SYDNEY)[0] and out['prior']['observations'] == 500


def test_serve_over_http(toy_dir, heic_photo, heic_sydney, tmp_path):
    from dogbreeds.featurestore import FeatureStore
    FeatureStore(tmp_path / 'geo.db').add_many([(*SYDNEY, 'dingo', 500)])
    want = Predictor.load(toy_dir).predict(heic_photo).top
    with ServeProcess(toy_dir, env=dict(GEO_DB=str(tmp_path / 'geo.db'), GEO_CACHE='lru', GEO_MIN_OBS='20')) as server, \
         httpx.Client(base_url=server.url, timeout=30) as c:
        for ct in ('image/heic', 'image/heif', 'application/x-image', None):
            r = c.post('/invocations', content=heic_photo, headers={'Content-Type': ct} if ct else {})
            assert r.status_code == 200, (ct, r.text)
            close(r.json()['predictions'], want, tol=1e-5)
        r = c.post('/invocations', json=dict(image=base64.b64encode(heic_sydney).decode()))
        assert r.status_code == 200 and r.json()['location']['source'] == 'exif', r.text
        assert r.json()['location']['lat'] == pytest.approx(SYDNEY[0], abs=1e-5)
        r = c.post('/invocations', content=heic_photo[:2000], headers={'Content-Type': 'image/heic'})
        assert r.status_code == 400 and r.json()['error'], r.text


def test_batch_on_a_folder(toy_dir, heic_photo, rgb, photo, tmp_path):
    from dogbreeds.predict import batch_predict, read_results
    src = tmp_path / 'phone'; src.mkdir()
    (src / 'IMG_0001.HEIC').write_bytes(heic_photo)
    (src / 'IMG_0002.heif').write_bytes(heic(rgb.rotate(90, expand=True)))
    (src / 'dog.jpg').write_bytes(photo.read_bytes())
    p = Predictor.load(toy_dir)
    r = batch_predict(src, tmp_path / 'r.csv', p, k=3, progress=False)
    rows = {row['source'].split('/')[-1]: row for row in read_results(tmp_path / 'r.csv')}
    assert set(rows) == {'IMG_0001.HEIC', 'IMG_0002.heif', 'dog.jpg'} and r['predicted'] == 3, rows
    for name, row in rows.items():
        assert not row['error'], row
        want = p.predict(src / name, k=3).top
        assert [row['breed'], row['breed_2'], row['breed_3']] == [b for b, _ in want]
        assert row['probability'] == pytest.approx(want[0][1], abs=1e-5)


def test_demo_widget(toy_dir, heic_photo, heic_sydney, rgb):
    from test_demo import as_shown, upload
    from dogbreeds.demo import UPLOAD_ACCEPT, classifier_widget
    w = classifier_widget(model=toy_dir)
    assert '.heic' in w.upload.accept == UPLOAD_ACCEPT
    w.upload.value = (upload('IMG_0001.HEIC', heic_photo, 'image/heic'), upload('IMG_0002.HEIC', heic_sydney, ''))
    shown = dict(w.shown())
    p = Predictor.load(toy_dir)
    assert shown['IMG_0001.HEIC'] == as_shown(p.predict(heic_photo, k=5).top)
    assert shown['IMG_0002.HEIC'] == as_shown(p.predict(heic_sydney, k=5).top)
    assert w.places['IMG_0002.HEIC']['location']['source'] == 'exif'
    assert w.results.children[0].children[0].value[:2] == b'\xff\xd8'  # its thumbnail, a JPEG the browser can show
    assert w.status.value.startswith('2 classified')
