"""Feedback on an answer, and p(breed | train): an answer's `feedback_token` carries its place and photo id (it replaced
feedback by photo id, which a cache had to remember); through the app, `dogbreeds serve` over real HTTP with two workers
and the Lambda handler, with the in-process LRU and a real Redis; and the manifest's `train_counts` in the
place-adjusted answer."""
import base64, hashlib, json, time, urllib.error, urllib.request
from pathlib import Path

import pytest

from dogbreeds.featurestore import FeatureStore
from dogbreeds.location import cells, combine
from dogbreeds.geocache import LRUCache, RedisCache
from dogbreeds.geolookup import GeoLookup
from dogbreeds.place import PlacePrior
from dogbreeds.testing import BREEDS, Redis, ServeProcess, toy_model
from conftest import gps, gps_jpeg
from test_geo import LONDON, SYDNEY

EVENTS = Path(__file__).parent / 'events'


def counts_at(db, point) -> dict:
    "The store's counts at the finest cell of `point`."
    c = cells(*point)[0]
    return FeatureStore(db).fetch([c])[c]


def make_env(tmp_path, monkeypatch, cache:str, manifest:dict|None=None, **settings):
    "A toy model (`manifest`: extra fields) and a SQLite store (Sydney: 500 dingo, 5 beagle), with the service's settings in the environment."
    model, db = toy_model(tmp_path / 'model', **(manifest or {})), tmp_path / 'geo.db'
    FeatureStore(db).add_many([(*SYDNEY, 'dingo', 500), (*SYDNEY, 'beagle', 5)])
    env = dict(GEO_DB=str(db), GEO_CACHE=cache, GEO_MIN_OBS='20', GEO_ALPHA='1', MODEL_URI=str(model),
               FEEDBACK_KEY='geofeedback-test-' + 'k' * 32) | settings
    for k, v in env.items(): monkeypatch.setenv(k, v)
    return model, db, env


@pytest.fixture(params=['lru', 'redis'])
def env(request, tmp_path, monkeypatch):
    from dogbreeds import handlers
    cache = 'lru'
    if request.param == 'redis':
        server = request.getfixturevalue('redis_server')
        RedisCache(server.url).r.flushdb()
        cache = server.url
    yield make_env(tmp_path, monkeypatch, cache)


def test_redis_ttl_is_in_milliseconds(redis_server):
    c = RedisCache(redis_server.url, ttl=0.3)
    c.r.flushdb()
    c.set_many({'k': [1, 2]})
    assert 0 < c.r.pttl('k') <= 300 and c.get_many(['k']) == [[1, 2]]   # int(0.3) would be 0 seconds: Redis refuses that
    photos = c.with_ttl(5)                                                  # the same connections, a TTL of its own
    photos.set_many({'p': 1})
    assert photos.r is c.r and 300 < c.r.pttl('p') <= 5000
    time.sleep(0.45)
    assert c.get_many(['k', 'p']) == [None, 1]
    with pytest.raises(ValueError): RedisCache(redis_server.url, ttl=0)


def test_feedback_by_token(env):
    "An answer's token names its place: feedback needs no coordinates, no photo id lookup, and counts once."
    from fastapi.testclient import TestClient
    from dogbreeds.serve import make_app
    model, db, settings = env
    jpeg = gps_jpeg(size=32, block=None)
    body = dict(image=base64.b64encode(jpeg).decode(), k=10)
    with TestClient(make_app(str(model))) as c:
        a = c.post(f'/invocations?lat={SYDNEY[0]}&lon={SYDNEY[1]}', json=body).json()
        assert a['photo_id'] == hashlib.sha256(jpeg).hexdigest()[:16] and a['prior']['source'] == 'db'
        assert c.post(f'/invocations?lat={SYDNEY[0]}&lon={SYDNEY[1]}', json=body).json()['prior']['source'] == 'cache'
        fb = dict(feedback_token=a['feedback_token'], breed='beagle')
        assert c.post('/feedback', json=fb).json() == dict(applied=True, request_id=a['request_id'], cell=cells(*SYDNEY)[0], breed='beagle')
        assert counts_at(db, SYDNEY) == {'dingo': 500, 'beagle': 6}                  # at the token's cell
        after = c.post(f'/invocations?lat={SYDNEY[0]}&lon={SYDNEY[1]}', json=body).json()
        assert after['prior']['source'] == 'db' and after['prior']['observations'] == 506   # the cache was invalidated
        assert c.post('/feedback', json=fb).status_code == 409                        # one vote per token
        r = c.post('/feedback', json=dict(feedback_token=after['feedback_token'], breed='wolf'))   # the breed is still checked
        assert r.status_code == 400 and 'wolf' in r.json()['error']
        exif = gps_jpeg(size=32, block=gps(*LONDON))                                                   # the place from EXIF GPS
        e = c.post('/invocations', content=exif, headers={'Content-Type': 'image/jpeg'}).json()
        assert e['location']['source'] == 'exif' and e['photo_id'] != a['photo_id']
        assert c.post('/feedback', json=dict(feedback_token=e['feedback_token'], breed='Samoyed')).json()['applied']
        assert counts_at(db, LONDON) == {} and counts_at(db, SYDNEY)['beagle'] == 6  # London: nothing curated, feedback weighs 0
        assert FeatureStore(db).votes()[0]['cells'].split()[0] == cells(*LONDON)[0]
        n = c.post('/invocations', json=body).json()                                 # no coordinates: nothing to correct
        assert n['location'] is None and 'photo_id' not in n and 'feedback_token' not in n


def test_cache_down_answers_and_feedback_still_work(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from dogbreeds.serve import make_app
    with Redis(tmp_path / 'redis') as rs:
        model, db, _ = make_env(tmp_path, monkeypatch, rs.url)
        body = dict(image=base64.b64encode(gps_jpeg(size=32, block=None)).decode(), lat=SYDNEY[0], lon=SYDNEY[1])
        with TestClient(make_app(str(model))) as c:
            rs.stop()                                                                 # Redis down
            a = c.post('/invocations', json=body).json()
            assert a['prior']['source'] == 'db' and 'cache unavailable' in a['prior']['note'] and a['feedback_token']
            r = c.post('/feedback', json=dict(feedback_token=a['feedback_token'], breed='beagle'))
            assert r.status_code == 200 and r.json()['applied'] and 'cache unavailable' in r.json()['note']
    assert counts_at(db, SYDNEY)['beagle'] == 6


def post(url, obj) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(obj).encode(), {'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())


def test_serve_over_http_two_workers_need_no_shared_cache_for_tokens(tmp_path, monkeypatch):
    "Each worker's own LRU: a token made by one is checked by the other (the key and the database are what they share)."
    model, db, env = make_env(tmp_path, monkeypatch, 'lru')
    with ServeProcess(model, workers=2, env=env) as s:
        tokens = []
        for i in range(6):   # six photos; each answer and its feedback may reach either worker
            img = base64.b64encode(gps_jpeg(size=32, block=gps(SYDNEY[0] + i * 1e-5, SYDNEY[1]))).decode()   # a few metres apart: other bytes
            st, a = post(s.url + '/invocations', dict(image=img))
            assert st == 200 and a['location']['source'] == 'exif', a
            tokens.append(a['feedback_token'])
        for t in tokens: assert post(s.url + '/feedback', dict(feedback_token=t, breed='dingo'))[0] == 200
        assert post(s.url + '/feedback', dict(feedback_token=tokens[0], breed='dingo'))[0] == 409
        st, err = post(s.url + '/feedback', dict(request_id='h-9', lat=SYDNEY[0], lon=SYDNEY[1], breed='dingo'))
        assert st == 403 and 'feedback_token' in err['error']
    assert counts_at(db, SYDNEY)['dingo'] == 506


def test_lambda_answer_over_http_then_feedback_on_a_cold_instance(redis_server, tmp_path, monkeypatch):
    from dogbreeds import lambda_handler as lh
    RedisCache(redis_server.url).r.flushdb()
    model, db, _ = make_env(tmp_path, monkeypatch, redis_server.url)
    lh.reset()
    e = json.loads((EVENTS / 'apigateway-http.json').read_text())    # AWS's example HTTP API event, carrying a photo
    e['headers']['content-type'] = 'image/jpeg'
    e['body'], e['isBase64Encoded'] = base64.b64encode(gps_jpeg(size=32, block=gps(*SYDNEY))).decode(), True
    r = lh.handler(e)
    a = json.loads(r['body'])
    assert r['statusCode'] == 200 and a['prior']['cell'] == cells(*SYDNEY)[0] and len(a['photo_id']) == 16 and a['request_id']
    lh.reset()                                                         # another instance, cold: the token is all it needs
    fb = lh.handler(dict(feedback=dict(feedback_token=a['feedback_token'], breed='dingo')))
    assert fb == dict(statusCode=200, applied=True, request_id=a['request_id'], cell=cells(*SYDNEY)[0], breed='dingo')
    assert counts_at(db, SYDNEY)['dingo'] == 501
    lh.reset()


# --- p(breed | train) from the manifest

def adjusted(tmp_path, monkeypatch, name, **manifest):
    from dogbreeds import handlers
    from dogbreeds.protocol import Request
    model, db, _ = make_env(tmp_path / name, monkeypatch, 'lru', manifest)   # toy_model writes extra manifest fields as given
    a = handlers.Service.load(model)(Request(image=gps_jpeg(size=32, block=None), k=10, lat=SYDNEY[0], lon=SYDNEY[1]))
    return a, {p['breed']: p['probability'] for p in a['predictions']}, {p['breed']: p['probability'] for p in a['predictions_with_prior']}


def test_train_counts_change_the_adjusted_answer(tmp_path, monkeypatch):
    place = {'dingo': 500, 'beagle': 5}
    a, photo_only, uniform = adjusted(tmp_path, monkeypatch, 'u')
    assert a['prior']['train'].startswith('uniform') and 'no train_counts' in a['prior']['train']
    assert uniform == pytest.approx(combine(photo_only, place, 1.0, 1.0))
    train = {b: 100 for b in BREEDS} | {'dingo': 900}     # the model saw 9x more dingoes
    b, photo_only2, skewed = adjusted(tmp_path, monkeypatch, 's', train_counts=train)
    assert b['prior']['train'] == 'train_counts' and photo_only2 == photo_only
    # by hand: p_train(dingo) = 901/1810, p_train(other) = 101/1810; p_place(dingo) = 501/515, p_place(beagle) = 6/515,
    # p_place(other) = 1/515; adjusted ∝ p(photo) · p_place / p_train
    raw = {x: photo_only[x] * ({'dingo': 501, 'beagle': 6}.get(x, 1) / 515) / ((901 if x == 'dingo' else 101) / 1810) for x in BREEDS}
    z = sum(raw.values())
    assert skewed == pytest.approx({x: v / z for x, v in raw.items()})
    # dingo is now divided by its larger training share: it gains less than under a uniform p(breed | train)
    assert skewed['dingo'] / skewed['beagle'] == pytest.approx(uniform['dingo'] / uniform['beagle'] * (101 / 901))
    assert skewed['dingo'] < uniform['dingo'] and skewed['beagle'] > uniform['beagle']
    c, _, bad = adjusted(tmp_path, monkeypatch, 'b', train_counts={'dingo': -3})
    assert 'unusable' in c['prior']['train'] and bad == pytest.approx(uniform)


def test_run_info_carries_train_counts_and_old_runs_do_without(tmp_path):
    from dogbreeds.core import ParameterError, write_json
    from dogbreeds.export import _check_train_counts, run_info
    write_json(tmp_path / 'params.json', dict(arch='mobilenet_v2'))
    assert 'train_counts' not in run_info(tmp_path)                  # a run from before data reports: no train_counts
    write_json(tmp_path / 'data_report.json', dict(counts={'beagle': dict(train=7, valid=2), 'dingo': dict(train=3, valid=1)}))
    assert run_info(tmp_path)['train_counts'] == {'beagle': 7, 'dingo': 3}
    assert _check_train_counts({'dingo': 3}, ['beagle', 'dingo']) == {'beagle': 0, 'dingo': 3}   # every breed, model order
    for bad in ({'wolf': 1}, {'dingo': -1}, {'dingo': 1.5}, [3]):
        with pytest.raises(ParameterError): _check_train_counts(bad, ['beagle', 'dingo'])


@pytest.mark.slow
@pytest.mark.parametrize('recipe', ['imagenet-head', 'fine-tune'])
def test_both_recipes_export_train_counts(recipe, request):
    "The sample's training runs (shared with the export and recipe tests): the manifest has the training photos per breed."
    from dogbreeds.core import read_json
    run = request.getfixturevalue('head_run' if recipe == 'imagenet-head' else 'trained_run')
    m = read_json(run.run_dir / 'model' / 'manifest.json')
    d = run.data
    assert m['train_counts'] == {b: sum(1 for l, v in zip(d.labels, d.is_valid) if l == b and not v) for b in d.breeds}
    assert list(m['train_counts']) == m['breeds'] and sum(m['train_counts'].values()) == d.n_train
