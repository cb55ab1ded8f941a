"""The upload-and-classify demo: the widget driven from Python, and the demo notebook served by Voilà and used
through a real (headless Chromium) browser."""
import os, shutil, socket, subprocess, sys, time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import ROOT, free_ports, gps_jpeg

DEMO_NB = ROOT / 'demo' / 'classify.ipynb'
CHROMIUM = os.environ.get('DOGBREEDS_CHROMIUM', '/usr/bin/chromium')


def upload(name, data, type='image/jpeg'):
    "One file as ipywidgets 8's FileUpload holds it in `.value` (a tuple of these)."
    return dict(name=name, type=type, size=len(data), content=memoryview(data), last_modified=datetime.now())


def as_shown(top): return [(breed, f"{p:.1%}") for breed, p in top]


def test_widget_shows_what_predict_says(model_dir, sample_photos, tmp_path):
    from dogbreeds.demo import classifier_widget
    from dogbreeds.inference import Predictor
    w = classifier_widget(model=model_dir)
    assert not w.upload.disabled and 'Model:' in w.header.value
    photos = [sample_photos['beagle'][0], sample_photos['Samoyed'][-1], sample_photos['dingo'][3]]
    w.upload.value = tuple(upload(p.name, p.read_bytes()) for p in photos) + (upload('notes.txt', b'just text', 'text/plain'),)
    shown = w.shown()
    p = Predictor.load(model_dir)
    assert [s[0] for s in shown] == [ph.name for ph in photos] + ['notes.txt']
    for ph, (_, bars) in zip(photos, shown[:3]): assert bars == as_shown(p.predict(ph, k=5).top)
    assert 'not an image' in shown[3][1]
    card = w.results.children[0]
    footer = card.children[1].children[-1].value
    assert p.name in footer and footer.endswith(' ms')       # the model's name and the time taken
    assert card.children[0].value[:2] == b'\xff\xd8'          # the thumbnail is a JPEG
    assert w.status.value.startswith('3 classified, 1 refused in ')

    # an oversized file is refused before decoding; the widget keeps working after it
    small = classifier_widget(model=p, max_bytes=4096)
    big = sample_photos['beagle'][1].read_bytes()
    assert len(big) > 4096
    small.upload.value = (upload('big.jpg', big),)
    assert 'over the limit of 4 KB' in small.shown()[0][1]


def test_a_phone_photo_card_says_its_own_size_upright(model_dir, sample_photos, monkeypatch):
    """A 4032x3024 JPEG stored sideways (EXIF orientation 6): the card names the photo's own size, upright (3024×4032),
    not the reduced one, and its thumbnail is decoded at 1/8 (504 px), not at the model's reduction."""
    import io
    from PIL import Image
    import dogbreeds.demo as D
    from dogbreeds.demo import classifier_widget
    big = Image.open(sample_photos['beagle'][0]).convert('RGB').resize((4032, 3024))
    exif = Image.Exif(); exif[0x0112] = 6
    b = io.BytesIO(); big.save(b, 'JPEG', quality=80, exif=exif)
    decoded, real = [], D.load_rgb
    def load_rgb(*a, **k):
        im = real(*a, **k)
        decoded.append(im.size)
        return im
    monkeypatch.setattr(D, 'load_rgb', load_rgb)
    w = classifier_widget(model=model_dir)
    w.upload.value = (upload('phone.jpg', b.getvalue()),)
    card = w.results.children[0]
    assert card.children[1].children[0].children[1].value == '3024×4032'
    assert decoded == [(189, 252)]  # 1/8 is 378x504 upright, then halved: within 2 x 180 px
    thumb = Image.open(io.BytesIO(card.children[0].value))
    assert thumb.size == (135, 180)  # portrait, as the photo is seen


def test_widget_without_a_model_says_so(tmp_path, monkeypatch):
    from dogbreeds.demo import ModelNotFoundError, classifier_widget, find_model
    monkeypatch.delenv('DOGBREEDS_MODEL', raising=False)
    monkeypatch.delenv('DOGBREEDS_REGISTRY', raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr('dogbreeds.demo.package_root', lambda: tmp_path)
    with pytest.raises(ModelNotFoundError, match='no model to use'): find_model()
    w = classifier_widget()
    assert w.upload.disabled and 'No model to classify with: no model to use' in w.header.value


def test_widget_loads_a_registry_uri(model_dir, tmp_path, monkeypatch):
    "A registry URI works as well as a folder (a local-folder registry; the S3 one is tested in test_registry)."
    from dogbreeds.demo import classifier_widget
    from dogbreeds.registry import Registry
    monkeypatch.setenv('DOGBREEDS_CACHE', str(tmp_path / 'cache'))
    reg = Registry(str(tmp_path / 'registry'))
    v = reg.push(model_dir, name='dogbreeds', alias='production')
    w = classifier_widget(model=f"{tmp_path / 'registry'}/dogbreeds@production")
    assert not w.upload.disabled, w.header.value
    assert w.model_label == f'dogbreeds @ {v}'


LONDON, SYDNEY = (51.5007, -0.1246), (-33.8568, 151.2153)


def geo_html(w, i=0) -> str:
    "The place section of card `i`."
    from dogbreeds.demo import _find
    return _find(w.results.children[i], 'dogbreeds-geo')[0].value


def test_widget_shows_the_place_and_how_the_prior_moved_the_answer(toy_pred, tmp_path, monkeypatch):
    """A SQLite store (GEO_DB) where the London photo's runner-up is common around London: the card shows the EXIF
    coordinates, the cell, its observations and source, and the breeds alone and with the prior; typed coordinates win;
    bad typed ones are refused in the card; the bars stay the photo's alone."""
    import numpy as np
    from dogbreeds.demo import classifier_widget
    from dogbreeds.featurestore import FeatureStore
    from dogbreeds.location import cells, combine
    london, plain = gps_jpeg('tan', LONDON), gps_jpeg('steelblue')
    probs = dict(toy_pred.predict(toy_pred.decode(london), k=len(toy_pred.breeds)).top)
    alone = sorted(probs.items(), key=lambda x: -x[1])
    store = FeatureStore(tmp_path / 'geo.db')
    store.add_many([(*LONDON, alone[1][0], 300), (*LONDON, alone[0][0], 2)])
    store.close()
    monkeypatch.setenv('GEO_DB', str(tmp_path / 'geo.db'))
    w = classifier_widget(model=toy_pred, k=3)
    assert w.geo is not None and 'Place prior' in w.where.value and 'SQLite' in w.where.value
    w.upload.value = (upload('london.jpg', london), upload('plain.jpg', plain))
    assert w.shown()[0] == ('london.jpg', as_shown(alone[:3]))               # the bars: the photo alone
    with_prior = list(combine(probs, {alone[1][0]: 300, alone[0][0]: 2}).items())[:3]
    p = w.places['london.jpg']
    assert p['location']['source'] == 'exif' and p['location']['lat'] == pytest.approx(LONDON[0], abs=1e-4)
    assert (p['prior']['cell'], p['prior']['resolution'], p['prior']['observations'], p['prior']['source']) == (cells(*LONDON)[0], 7, 302, 'db')
    assert [b for b, _ in p['with_prior']] == [b for b, _ in with_prior] and p['with_prior'][0][0] == alone[1][0] != alone[0][0]
    np.testing.assert_allclose([x for _, x in p['with_prior']], [x for _, x in with_prior], atol=1e-6)
    h = geo_html(w)
    assert 'Taken at <b>51.50070, -0.12460</b> (from the photo’s EXIF GPS)' in h
    assert f"H3 cell <code>{cells(*LONDON)[0]}</code> (resolution 7), 302 observations; prior from the db" in h
    assert f"The place moved the top breed: {alone[0][0]} &rarr; {alone[1][0]}" in h
    rows = [f"<tr><td>{a}</td><td class='dogbreeds-prior-pct'>{pa:.1%}</td><td>{b}</td><td class='dogbreeds-prior-pct'>{pb:.1%}</td></tr>"
            for (a, pa), (b, pb) in zip(alone[:3], with_prior)]
    assert all(r in h for r in rows)
    assert 'No coordinates' in geo_html(w, 1) and 'No place prior used: no coordinates' in geo_html(w, 1)
    w.upload.value = (upload('london.jpg', london),)                         # the same place again: from the cache
    assert w.places['london.jpg']['prior']['source'] == 'cache' and 'prior from the cache' in geo_html(w)

    # typed coordinates win over EXIF (and show the last upload again); bad ones are refused in the card
    w.lat.value, w.lon.value = str(SYDNEY[0]), str(SYDNEY[1])
    p = w.places['london.jpg']
    assert p['location']['source'] == 'explicit' and p['prior']['resolution'] == -1 and 'Taken at <b>-33.85680, 151.21530</b> (typed in)' in geo_html(w)
    assert 'the whole world' in geo_html(w)
    w.lat.value = 'north'
    assert '"lat" must be a number' in w.places['london.jpg']['refused'] and 'The coordinates typed are not used' in geo_html(w)
    assert w.shown()[0] == ('london.jpg', as_shown(alone[:3]))               # still classified


def test_widget_without_a_feature_store_says_no_prior(toy_pred, monkeypatch):
    from dogbreeds.demo import classifier_widget
    monkeypatch.delenv('GEO_DB', raising=False)
    w = classifier_widget(model=toy_pred)
    assert w.geo is None and 'No place prior: no feature store is configured' in w.where.value
    w.upload.value = (upload('london.jpg', gps_jpeg('tan', LONDON)),)
    h = geo_html(w)
    assert 'Taken at <b>51.50070, -0.12460</b>' in h and 'No place prior used: no feature store configured (GEO_DB)' in h
    assert w.places['london.jpg']['prior'] == dict(source='none', note='no feature store configured (GEO_DB)')
    assert w.places['london.jpg']['with_prior'] == w.answers['london.jpg'].top  # the photo's own breeds


def wait_listening(port, proc, timeout=60):
    "Wait until `proc` accepts connections on 127.0.0.1:`port` (asking for a page would start a kernel)."
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if proc.poll() is not None: raise RuntimeError(f"voila exited with {proc.returncode}")
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=2): return
        except OSError: time.sleep(0.3)
    raise TimeoutError(f"voila did not listen on port {port} in {timeout} s")


@pytest.fixture
def voila_app(model_dir, tmp_path):
    "Voilà serving demo/classify.ipynb on 127.0.0.1 (a free port, a token), with the test model; stopped afterwards."
    port, token = free_ports(1)[0], 'dogbreeds-test-token'
    model = os.environ.get('DOGBREEDS_DEMO_MODEL') or str(model_dir)  # docs/demo.png is made with the default recipe's model
    env = dict(os.environ, DOGBREEDS_MODEL=model, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    env.pop('GEO_DB', None)  # no feature store: the page says no place prior is used, and why
    log = open(tmp_path / 'voila.log', 'wb')
    proc = subprocess.Popen([sys.executable, '-m', 'voila', str(DEMO_NB.relative_to(ROOT)), '--no-browser',
                             f'--port={port}', '--Voila.ip=127.0.0.1', f'--token={token}'],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_listening(port, proc)
        yield f'http://127.0.0.1:{port}/?token={token}'
    except Exception:
        log.flush(); print((tmp_path / 'voila.log').read_text()[-4000:]); raise
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(5)
        log.close()


def test_demo_in_a_browser(voila_app, model_dir, sample_photos, tmp_path):
    """Upload a photo, a cat, a text file and a 21 MB file through the page's file chooser in headless Chromium: the
    breeds shown are the Predictor's, the cat is said not to look like a dog exactly when the Predictor says so, the
    other two are refused with their reasons; without a feature store the cards say no place prior is used, and show
    coordinates typed into the page. Saves a screenshot."""
    if not Path(CHROMIUM).exists(): pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    from dogbreeds.inference import Predictor
    from dogbreeds.datasets import not_dog_photos
    pred = Predictor.load(os.environ.get('DOGBREEDS_DEMO_MODEL') or model_dir)
    photo, cat = sample_photos['Samoyed'][-1], next(p for p in not_dog_photos() if p.stem == 'chelsea')
    expected, cat_is_dog = as_shown(pred.predict(photo, k=5).top), pred.predict(cat).is_dog
    shot = tmp_path / 'demo.png'
    big = tmp_path / 'huge.jpg'  # over the widget's 20 MiB limit and Jupyter's default 10 MiB websocket message limit
    big.write_bytes(photo.read_bytes() + os.urandom(21 * 2**20))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=30_000,
                                     args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        page = browser.new_page(viewport={'width': 1000, 'height': 900})
        page.set_default_timeout(45_000)  # every wait is bounded: a broken page fails in well under the minute
        try:
            page.goto(voila_app, wait_until='domcontentloaded')
            button = page.locator('.dogbreeds-demo .jupyter-widget-upload, .dogbreeds-demo .widget-upload').first
            button.wait_for(state='visible')
            page.wait_for_function("el => !el.disabled", arg=button.element_handle())
            with page.expect_file_chooser() as chooser: button.click()
            chooser.value.set_files([str(photo), str(cat), str(ROOT / 'README.md'), str(big)])
            page.locator('.dogbreeds-card').nth(3).wait_for()  # never comes if the 21 MB message is refused (no voila.json)
            cards = page.locator('.dogbreeds-card')
            first = cards.nth(0)
            breeds = first.locator('.dogbreeds-breed').all_inner_texts()
            pcts = first.locator('.dogbreeds-pct').all_inner_texts()
            assert list(zip(breeds, pcts)) == expected
            assert first.locator('.dogbreeds-name').inner_text() == photo.name and first.locator('.dogbreeds-notdog').count() == 0
            assert cards.nth(1).locator('.dogbreeds-notdog').count() == (0 if cat_is_dog else 1)
            assert cards.nth(1).locator('.dogbreeds-breed').count() == 5  # the breeds are listed all the same
            assert 'not an image' in cards.nth(2).locator('.dogbreeds-error').inner_text()
            # Voila reads voila.json, which lets the upload through for the widget to refuse, politely
            assert 'MB is over the limit of 20.0 MB: upload a smaller photo' in cards.nth(3).locator('.dogbreeds-error').inner_text()
            assert page.locator('.dogbreeds-status').inner_text().startswith('2 classified, 2 refused')
            # no feature store: the page says so, and each card says no prior is used, and why
            assert 'No place prior: no feature store is configured' in page.locator('.dogbreeds-where').inner_text()
            assert 'No place prior used: no coordinates' in first.locator('.dogbreeds-geo').inner_text()
            # coordinates typed in: the last upload is shown again, taken there (typed beats EXIF), still without a prior
            page.locator('.dogbreeds-lat input').fill('51.5')
            page.locator('.dogbreeds-lat input').press('Enter')
            page.locator('.dogbreeds-lon input').fill('-0.12')
            page.locator('.dogbreeds-lon input').press('Enter')
            page.locator('.dogbreeds-card .dogbreeds-geo', has_text='Taken at 51.50000, -0.12000 (typed in)').first.wait_for()
            geo = page.locator('.dogbreeds-card').nth(0).locator('.dogbreeds-geo').inner_text()
            assert 'No place prior used: no feature store configured (GEO_DB)' in geo
            assert list(zip(first.locator('.dogbreeds-breed').all_inner_texts(), first.locator('.dogbreeds-pct').all_inner_texts())) == expected
            page.screenshot(path=str(shot), full_page=True)
        except Exception:  # leave what the page showed and what the server said, for whoever reads the failure
            page.screenshot(path=str(tmp_path / 'failed.png'), full_page=True)
            print(f"page: {tmp_path / 'failed.png'}\nvoila log:\n" + (tmp_path / 'voila.log').read_text()[-3000:])
            raise
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if dest := os.environ.get('DOGBREEDS_DEMO_SCREENSHOT'): shutil.copy(shot, dest)  # how docs/demo.png is made
