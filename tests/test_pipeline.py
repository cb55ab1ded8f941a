"""One request pipeline: coordinates in the URL's query reach the place prior through every Lambda HTTP event
(API Gateway REST and HTTP APIs, Function URLs, ALB; AWS's own example events, in tests/events/), and proxy mode
forwards the whole request (coordinates, k, feedback) to a real `dogbreeds serve`: the same answer everywhere."""
import base64, json

import pytest

from dogbreeds import handlers, lambda_handler as lh
from dogbreeds.featurestore import FeatureStore
from dogbreeds.location import cells
from dogbreeds.protocol import Request
from dogbreeds.testing import ServeProcess
from conftest import gps_jpeg
from test_geo import LONDON, SYDNEY
from test_lambda import ENV, call, http_event

QUERY_KINDS = ('apigateway-rest', 'apigateway-http', 'function-url', 'alb')
JPEG = gps_jpeg(size=32)  # no EXIF GPS: the place can only come from the request


@pytest.fixture
def geo_model(toy_dir, tmp_path, monkeypatch):
    "A toy model (`MODEL_URI`), a SQLite feature store (Sydney: 500 dingo, 5 beagle) and the geo settings; no endpoint."
    model, db = toy_dir, tmp_path / 'geo.db'
    FeatureStore(db).add_many([(*SYDNEY, 'dingo', 500), (*SYDNEY, 'beagle', 5)])
    for k in ENV: monkeypatch.delenv(k, raising=False)
    env = dict(GEO_DB=str(db), GEO_CACHE='lru', GEO_MIN_OBS='20', GEO_ALPHA='1', MODEL_URI=str(model),
               FEEDBACK_KEY='pipeline-test-' + 'k' * 32)
    for k, v in env.items(): monkeypatch.setenv(k, v)
    lh.reset()
    yield model, db, env
    lh.reset()


def counts_at(db, point) -> dict:
    c = cells(*point)[0]
    return FeatureStore(db).fetch([c])[c]


def query_event(name: str, lat, lon, body: bytes = JPEG, path: str | None = None) -> dict:
    "AWS's example event of the source `name`, carrying `body` and `?lat=&lon=` as that source carries a URL's query."
    e = http_event(name, body)
    q = {'lat': str(lat), 'lon': str(lon)}
    e['queryStringParameters'] = q
    if 'multiValueQueryStringParameters' in e or name == 'apigateway-rest':
        e['multiValueQueryStringParameters'] = {k: [v] for k, v in q.items()}
    if name in ('apigateway-http', 'function-url'): e['rawQueryString'] = f'lat={lat}&lon={lon}'
    if path: e['rawPath' if name in ('apigateway-http', 'function-url') else 'path'] = path
    return e


def reference(model, k: int = 5) -> dict:
    "The answer of the pipeline itself, in process, to the photo at Sydney given as fields of the request."
    return handlers.Service.load(model)(Request(image=JPEG, k=k, lat=SYDNEY[0], lon=SYDNEY[1]))


def same_place_answer(a: dict, want: dict):
    "`a` found Sydney from the request, used its prior, and moved the answer as the pipeline does."
    assert a['location']['source'] == 'explicit' and a['location']['cells'][0] == cells(*SYDNEY)[0], a
    assert (a['prior']['cell'], a['prior']['resolution'], a['prior']['observations']) == (cells(*SYDNEY)[0], 7, 505)
    assert a['prior']['source'] in ('db', 'cache') and a['prior']['train'] == want['prior']['train']
    for key in ('predictions', 'predictions_with_prior'):
        assert [p['breed'] for p in a[key]] == [p['breed'] for p in want[key]], key
        assert [p['probability'] for p in a[key]] == pytest.approx([p['probability'] for p in want[key]], abs=1e-6)
    assert a['predictions_with_prior'] != a['predictions']  # the prior moved it
    assert len(a['photo_id']) == 16 and a['request_id'] and a['feedback_token']


@pytest.mark.parametrize('name', QUERY_KINDS)
def test_query_coordinates_through_every_http_event(geo_model, name):
    model, _, _ = geo_model
    want = reference(model)
    lh.reset()
    with_prior = None
    for _ in range(2):  # a cold and a warm container
        status, a = call(query_event(name, *SYDNEY))
        assert status == 200, a
        same_place_answer(a, want)
        with_prior = with_prior or a['predictions_with_prior']
        assert a['predictions_with_prior'] == with_prior
    status, plain = call(http_event(name, JPEG))  # no query: no coordinates, and the answer says so
    assert status == 200 and plain['location'] is None and 'no coordinates' in plain['prior']['note']
    status, err = call(query_event(name, 95, 0))   # bad ones are refused, as at every entry point
    assert status == 400 and '"lat"' in err['error']


def test_query_wins_over_the_body_and_feedback_at_the_feedback_path(geo_model):
    model, db, _ = geo_model
    body = json.dumps(dict(image=base64.b64encode(JPEG).decode(), lat=LONDON[0], lon=LONDON[1])).encode()
    e = query_event('apigateway-http', *SYDNEY, body=body)
    e['headers']['Content-Type'] = 'application/json'
    status, a = call(e)
    assert status == 200 and a['prior']['cell'] == cells(*SYDNEY)[0]  # the URL's coordinates win, as in `dogbreeds serve`
    fb = json.dumps(dict(feedback_token=a['feedback_token'], breed='beagle')).encode()
    outs = []
    for name in ('apigateway-rest', 'function-url'):
        e = query_event(name, 0, 0, body=fb, path='/prod/feedback')  # the query's coordinates are not feedback's
        e['headers']['Content-Type'] = 'application/json'
        outs.append(call(e))
    assert outs[0] == (200, dict(applied=True, request_id=a['request_id'], cell=cells(*SYDNEY)[0], breed='beagle')), outs
    assert outs[1][0] == 409 and outs[1][1]['type'] == 'TokenUsed'                         # one vote per token
    assert counts_at(db, SYDNEY) == {'dingo': 500, 'beagle': 6}
    assert [v['source'] for v in FeatureStore(db).votes()] == ['ip:192.0.2.1']              # the REST event's caller


def test_sagemaker_handlers_take_feedback_in_the_body(geo_model):
    model, db, _ = geo_model
    svc = handlers.model_fn(str(model))
    status, out = handlers.invoke(svc, JPEG, 'image/jpeg', query={'lat': str(SYDNEY[0]), 'lon': str(SYDNEY[1])})
    a = json.loads(out)
    fb = json.dumps(dict(feedback=dict(feedback_token=a['feedback_token'], lat=SYDNEY[0], lon=SYDNEY[1], breed='dingo'))).encode()
    status, out = handlers.invoke(svc, fb, 'application/json')
    assert status == 200 and json.loads(out) == dict(applied=True, request_id=a['request_id'], cell=cells(*SYDNEY)[0], breed='dingo')
    assert counts_at(db, SYDNEY)['dingo'] == 501 and FeatureStore(db).votes()[0]['source'] == 'sagemaker'
    forged = json.dumps(dict(feedback=dict(request_id='s-1', lat=SYDNEY[0], lon=SYDNEY[1], breed='dingo'))).encode()
    assert handlers.invoke(svc, forged, 'application/json')[0] == 403
    status, out = handlers.invoke(svc, JPEG, 'image/jpeg', query={'lat': str(SYDNEY[0]), 'lon': str(SYDNEY[1])})
    assert status == 200 and json.loads(out)['prior']['observations'] == 506


@pytest.fixture
def proxy(geo_model, monkeypatch):
    "The Lambda in proxy mode in front of a real `dogbreeds serve` of the toy model with the feature store."
    model, db, env = geo_model
    want = reference(model)  # the pipeline's own answer, in process, before the function loses its settings
    with ServeProcess(model, env=env) as server:
        for k, v in dict(AWS_ACCESS_KEY_ID='test', AWS_SECRET_ACCESS_KEY='test', AWS_DEFAULT_REGION='us-east-1',
                         AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=server.url, SAGEMAKER_ENDPOINT='dogbreeds',
                         AWS_CONFIG_FILE='/nonexistent', AWS_SHARED_CREDENTIALS_FILE='/nonexistent').items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv('AWS_PROFILE', raising=False)
        for k in env: monkeypatch.delenv(k)  # the function itself has no feature store: the endpoint does the work
        lh.reset()
        yield want, db, server
    assert not server.listening()


def test_proxy_mode_forwards_the_whole_request(proxy):
    want, db, _ = proxy
    tokens = []
    for name in ('apigateway-rest', 'apigateway-http', 'function-url'):  # the URL's query
        status, a = call(query_event(name, *SYDNEY))
        assert status == 200, a
        same_place_answer(a, want)
        tokens.append(a['feedback_token'])
    status, a = call(dict(image=base64.b64encode(JPEG).decode(), lat=SYDNEY[0], lon=SYDNEY[1]))  # JSON fields
    assert status == 200, a
    same_place_answer(a, want)
    status, two = call(dict(image=base64.b64encode(JPEG).decode(), k=2, lat=SYDNEY[0], lon=SYDNEY[1]))
    assert status == 200 and len(two['predictions']) == len(two['predictions_with_prior']) == 2  # k went too
    status, err = call(query_event('function-url', 95, 0))  # the endpoint's refusal keeps its status
    assert status == 400 and '"lat"' in err['error']
    assert not lh._services  # no model, no feature store in the function
    fb = dict(feedback_token=a['feedback_token'], breed='beagle')
    status, out = call(dict(feedback=fb))
    assert status == 200 and out == dict(applied=True, request_id=a['request_id'], cell=cells(*SYDNEY)[0], breed='beagle'), out
    e = query_event('function-url', 0, 0, body=json.dumps(dict(feedback_token=tokens[0], breed='beagle')).encode(), path='/feedback')
    e['headers']['Content-Type'] = 'application/json'
    status, out = call(e)
    assert status == 200 and out['applied'] is True, out
    assert counts_at(db, SYDNEY) == {'dingo': 500, 'beagle': 7}
    status, out = call(dict(feedback=fb))                                             # the endpoint's refusals pass on
    assert status == 409 and out['type'] == 'TokenUsed'
    status, out = call(dict(feedback=dict(feedback_token=tokens[1], breed='wolf')))
    assert status == 400 and 'wolf' in out['error']
    status, out = call(dict(feedback=dict(request_id='x-4', photo_id='0' * 16, breed='beagle')))
    assert status == 403 and out['type'] == 'TokenError'
