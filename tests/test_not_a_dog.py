"""'Is it a dog at all' at every entry point: a photo without a dog is an answer, never an error, with
`"dog"` (a probability) and `"is_dog": false`; its breeds are still listed; a dog photo says `"is_dog": true`."""
import base64, json, shutil

import httpx
import pytest

from conftest import SAMPLE
from dogbreeds.datasets import not_dog_photos


@pytest.fixture(scope='module')
def cat(): return next(p for p in not_dog_photos() if p.stem == 'chelsea')  # scikit-image's tabby cat, a PNG


@pytest.fixture(scope='module')
def dog(): return sorted((SAMPLE / 'val' / 'n02111889').glob('*'))[0]  # a Samoyed


def check(answer, is_dog):
    assert answer['is_dog'] is is_dog and 0 <= answer['dog'] <= 1 and len(answer['predictions']) == 5
    assert ('looks_like' in answer) is (not is_dog)


@pytest.mark.slow
def test_lambda(head_model_dir, cat, dog, monkeypatch):
    from dogbreeds import lambda_handler as lh
    monkeypatch.setenv('MODEL_URI', str(head_model_dir))
    lh.reset()
    try:
        for photo, want in ((cat, False), (dog, True)):
            r = lh.handler({'image': base64.b64encode(photo.read_bytes()).decode()})
            assert r['statusCode'] == 200
            check(r, want)
        url = lh.handler({'version': '2.0', 'headers': {'content-type': 'image/png'}, 'isBase64Encoded': True,
                          'requestContext': {'http': {'method': 'POST'}, 'domainName': 'x.lambda-url.us-east-1.on.aws'},
                          'body': base64.b64encode(cat.read_bytes()).decode()})
        assert url['statusCode'] == 200 and json.loads(url['body'])['is_dog'] is False
    finally: lh.reset()


@pytest.mark.slow
def test_sagemaker_handlers(head_model_dir, cat, dog, monkeypatch):
    from dogbreeds import handlers
    monkeypatch.delenv('MODEL_URI', raising=False)
    model = handlers.model_fn(str(head_model_dir))
    for photo, want in ((cat, False), (dog, True)):
        status, body = handlers.invoke(model, photo.read_bytes(), 'application/x-image')
        assert status == 200
        check(json.loads(body), want)


@pytest.mark.slow
def test_serve(head_model_dir, cat):
    from dogbreeds.testing import ServeProcess
    with ServeProcess(head_model_dir) as s:
        r = httpx.post(s.url + '/invocations', content=cat.read_bytes(), headers={'Content-Type': 'image/png'}, timeout=60)
        assert r.status_code == 200
        check(r.json(), False)


@pytest.mark.slow
@pytest.mark.parametrize('ext', ['csv', 'parquet'])
def test_batch(head_model_dir, cat, dog, tmp_path, ext):
    from dogbreeds.predict import batch_predict, read_results
    folder = tmp_path / 'photos'; folder.mkdir()
    shutil.copy(cat, folder / 'cat.png'); shutil.copy(dog, folder / 'dog.jpg')
    r = batch_predict(folder, tmp_path / f'out.{ext}', str(head_model_dir), progress=False)
    assert r['predicted'] == 2 and r['errors'] == 0
    rows = {p['source'].rsplit('/', 1)[-1]: p for p in read_results(tmp_path / f'out.{ext}')}
    assert rows['cat.png']['is_dog'] is False and rows['dog.jpg']['is_dog'] is True
    assert isinstance(rows['cat.png']['dog'], float) and rows['cat.png']['dog'] < rows['dog.jpg']['dog']
    assert rows['cat.png']['breed']  # the breeds are still listed


@pytest.mark.slow
def test_demo(head_model_dir, cat, dog):
    from datetime import datetime
    from dogbreeds.demo import classifier_widget
    w = classifier_widget(model=str(head_model_dir))
    def upload(p): return dict(name=p.name, type='image/png', size=p.stat().st_size, content=memoryview(p.read_bytes()),
                               last_modified=datetime.now())
    w.upload.value = (upload(cat), upload(dog))
    assert w.not_dogs() == [cat.name]
    assert [name for name, _ in w.shown()] == [cat.name, dog.name] and len(w.shown()[0][1]) == 5
    assert w.answers[cat.name].is_dog is False and w.answers[dog.name].is_dog is True
