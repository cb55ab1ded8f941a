"""Observability of the serving entry points: every Prometheus metric family on `/metrics`, multiprocess mode
with several workers, `/metrics` kept off SageMaker's port, one JSON log line per request (never the photo) from
`dogbreeds serve`, the SageMaker handlers and Lambda, and Lambda's EMF lines checked against the EMF specification."""
import base64, io, json, logging, urllib.request
from pathlib import Path

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dogbreeds import telemetry
from dogbreeds.testing import ServeProcess, toy_model

SAMPLE = Path(__file__).resolve().parent.parent / 'data' / 'sample'
UNITS = ['Seconds', 'Microseconds', 'Milliseconds', 'Bytes', 'Kilobytes', 'Megabytes', 'Gigabytes', 'Terabytes', 'Bits',
         'Kilobits', 'Megabits', 'Gigabits', 'Terabits', 'Percent', 'Count', 'Bytes/Second', 'Kilobytes/Second',
         'Megabytes/Second', 'Gigabytes/Second', 'Terabytes/Second', 'Bits/Second', 'Kilobits/Second', 'Megabits/Second',
         'Gigabits/Second', 'Terabits/Second', 'Count/Second', 'None']
# The structure the EMF specification prescribes (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
# CloudWatch_Embedded_Metric_Format_Specification.html): the metadata object, MetricDirective, DimensionSet, MetricDefinition.
EMF_SCHEMA = {
    'type': 'object', 'required': ['_aws'],
    'properties': {'_aws': {
        'type': 'object', 'required': ['Timestamp', 'CloudWatchMetrics'],
        'properties': {
            'Timestamp': {'type': 'integer', 'minimum': 0},
            'CloudWatchMetrics': {'type': 'array', 'minItems': 1, 'items': {
                'type': 'object', 'required': ['Namespace', 'Dimensions', 'Metrics'], 'additionalProperties': False,
                'properties': {
                    'Namespace': {'type': 'string', 'minLength': 1, 'maxLength': 1024},
                    'Dimensions': {'type': 'array', 'items': {'type': 'array', 'maxItems': 30,
                                                              'items': {'type': 'string', 'minLength': 1, 'maxLength': 250}}},
                    'Metrics': {'type': 'array', 'maxItems': 100, 'items': {
                        'type': 'object', 'required': ['Name'], 'additionalProperties': False,
                        'properties': {'Name': {'type': 'string', 'minLength': 1, 'maxLength': 1024},
                                       'Unit': {'enum': UNITS}, 'StorageResolution': {'enum': [1, 60]}}}}}}}}}}}


def check_emf(doc: dict):
    "The document is valid EMF: the schema, and every target member present (dimensions strings, metrics numbers)."
    jsonschema.validate(doc, EMF_SCHEMA)
    for d in doc['_aws']['CloudWatchMetrics']:
        for dims in d['Dimensions']:
            for k in dims: assert isinstance(doc.get(k), str) and doc[k], (k, doc.get(k))
        for m in d['Metrics']:
            v = doc.get(m['Name'])
            assert isinstance(v, (int, float)) and not isinstance(v, bool), (m['Name'], v)


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp('obs') / 'm', threshold=0.3)


@pytest.fixture(scope='module')
def photos():
    return [p.read_bytes() for p in sorted((SAMPLE / 'val').rglob('*.JPEG'))[:6]]


def samples(text: str) -> list:
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def value(text, name, **labels):
    return sum(s.value for s in samples(text) if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
def log_lines():
    "The JSON lines the `dogbreeds` loggers write during the test."
    buf = io.StringIO()
    telemetry.setup_logging('json', buf)
    yield lambda: [json.loads(l) for l in buf.getvalue().splitlines()]
    lg = logging.getLogger('dogbreeds')
    for h in [h for h in lg.handlers if getattr(h, '_dogbreeds', False)]: lg.removeHandler(h)
    lg.propagate = True


def app_client(model, monkeypatch, **env):
    from fastapi.testclient import TestClient
    from dogbreeds.handlers import load_model
    from dogbreeds.serve import make_app
    for k, v in env.items(): monkeypatch.setenv(k, v)
    return TestClient(make_app(load_model(model)))


def test_every_metric_family(model, photos, monkeypatch, log_lines):
    from dogbreeds.handlers import load_model
    with app_client(model, monkeypatch) as c:
        before = c.get('/metrics').text
        answers = [c.post('/invocations', content=p, headers={'content-type': 'image/jpeg'}).json() for p in photos]
        bad = c.post('/invocations', content=b'not a photo', headers={'content-type': 'image/jpeg'})
        r = c.get('/metrics')
    assert bad.status_code == 415 and r.status_code == 200 and r.headers['content-type'].startswith('text/plain')
    after, v = r.text, answers[0]['model']['version']
    d = lambda name, **l: value(after, name, **l) - value(before, name, **l)
    n, kind = len(photos), bad.json()['type']
    assert d('dogbreeds_requests_total', route='/invocations', status='200', model_version=v) == n
    assert d('dogbreeds_requests_total', route='/invocations', status='415', model_version=v) == 1
    for st in ('decode', 'inference', 'total'):
        assert d('dogbreeds_request_duration_seconds_count', stage=st) == (n + 1 if st != 'inference' else n), st
    buckets = {s.labels['le'] for s in samples(after) if s.name == 'dogbreeds_request_duration_seconds_bucket'}
    assert {'0.001', '10.0', '+Inf'} <= buckets
    assert d('dogbreeds_request_bytes_count') == n + 1
    assert d('dogbreeds_request_bytes_sum') == sum(map(len, photos)) + len(b'not a photo')
    top = [a['predictions'][0] for a in answers]
    for b in {t['breed'] for t in top}:
        assert d('dogbreeds_predictions_total', breed=b, model_version=v) == sum(t['breed'] == b for t in top)
    assert d('dogbreeds_top1_probability_count', model_version=v) == n
    assert d('dogbreeds_top1_probability_sum', model_version=v) == pytest.approx(sum(t['probability'] for t in top), rel=1e-6)
    assert d('dogbreeds_dog_checked_total', model_version=v) == n
    assert d('dogbreeds_not_a_dog_total', model_version=v) == sum(not a['is_dog'] for a in answers)
    assert d('dogbreeds_errors_total', type=kind) == 1
    info = [s for s in samples(after) if s.name == 'dogbreeds_model_info' and s.labels['version'] == v]
    sha = json.loads((model / 'manifest.json').read_text())['files']['model.onnx']['sha256']
    assert info and info[0].value == 1 and info[0].labels['sha256'] == sha and info[0].labels['name']
    # one JSON line per request, with the answer and its timings, never the photo
    reqs = [l for l in log_lines() if l.get('event') == 'request']
    assert len(reqs) == n + 1
    ok = reqs[0]
    assert (ok['status'], ok['breed'], ok['model_version'], ok['bytes']) == (200, top[0]['breed'], v, len(photos[0]))
    assert set(ok['timings_ms']) >= {'decode', 'inference', 'total'} and ok['request_id']
    assert (reqs[-1]['status'], reqs[-1]['error_type']) == (415, kind)
    big = max(len(json.dumps(l)) for l in reqs)
    assert big < 1000, big  # no body in the log (the photos are tens of KB)


def test_geo_counters_and_server_timing(model, photos, monkeypatch, tmp_path, log_lines):
    "The geo step's source and queries reach the log line and the counters; every answer has a Server-Timing header."
    from dogbreeds import handlers
    from dogbreeds.featurestore import FeatureStore
    FeatureStore(tmp_path / 'g.db').add_many([(-33.87, 151.21, 'dingo', 50)])
    try:
        with app_client(model, monkeypatch, GEO_DB=str(tmp_path / 'g.db'), GEO_CACHE='lru') as c:
            before = c.get('/metrics').text
            rs = [c.post('/invocations?lat=-33.87&lon=151.21', content=photos[0], headers={'content-type': 'image/jpeg'}) for _ in range(3)]
            after = c.get('/metrics').text
    finally: pass
    d = lambda name, **l: value(after, name, **l) - value(before, name, **l)
    assert [r.json()['prior']['source'] for r in rs] == ['db', 'cache', 'cache']
    assert (d('dogbreeds_geo_lookups_total', source='db'), d('dogbreeds_geo_lookups_total', source='cache')) == (1, 2)
    assert d('dogbreeds_geo_db_queries_total') == 1
    timing = dict(part.strip().split(';dur=') for part in rs[1].headers['server-timing'].split(','))
    assert set(timing) == {'decode', 'inference', 'photo_id', 'geo', 'token', 'total'}  # photo_id and token: what feedback presents
    assert 0 <= float(timing['geo']) < float(timing['total'])
    reqs = [l for l in log_lines() if l.get('event') == 'request']
    assert [(l['geo_source'], l.get('geo_db_query', False)) for l in reqs] == [('db', True), ('cache', False), ('cache', False)]


def test_metrics_off_and_not_on_sagemakers_port(model, photos, monkeypatch):
    with app_client(model, monkeypatch, SAGEMAKER_BIND_TO_PORT='8080') as c:
        assert c.get('/metrics').status_code == 404
        assert c.post('/invocations', content=photos[0], headers={'content-type': 'image/jpeg'}).status_code == 200
    monkeypatch.delenv('SAGEMAKER_BIND_TO_PORT')
    before = telemetry.exposition()[0].decode()
    with app_client(model, monkeypatch, DOGBREEDS_METRICS='off') as c:
        assert c.get('/metrics').status_code == 404
        assert c.post('/invocations', content=photos[0], headers={'content-type': 'image/jpeg'}).status_code == 200
    after = telemetry.exposition()[0].decode()
    assert value(after, 'dogbreeds_requests_total') == value(before, 'dogbreeds_requests_total')


def test_sagemaker_handlers_log_one_line(model, photos, log_lines):
    from dogbreeds.handlers import Context, input_fn, invoke, model_fn, output_fn, predict_fn
    m = model_fn(str(model))
    for body in (photos[0], b'junk'):  # as the inference toolkit calls them, one request after the other
        ctx = Context()
        out, _ = output_fn(predict_fn(input_fn(body, 'image/jpeg', ctx), m, ctx), 'application/json', ctx)
    invoke(m, photos[1], 'image/jpeg')  # no outer entry point: the handlers record it
    reqs = [l for l in log_lines() if l.get('event') == 'request']
    assert [(l['entry'], l['status']) for l in reqs] == [('sagemaker', 200), ('sagemaker', 415), ('sagemaker', 200)]
    assert reqs[0]['breed'] and reqs[1]['error_type'] and reqs[1]['model_version']


def test_lambda_json_log_and_emf(model, photos, monkeypatch, capsys, log_lines):
    from dogbreeds import lambda_handler as lh
    lh.reset(); monkeypatch.setattr(lh, '_cold', [True])
    for k, v in dict(MODEL_URI=str(model), AWS_LAMBDA_FUNCTION_NAME='classify', EMF_NAMESPACE='dogbreeds-test').items():
        monkeypatch.setenv(k, v)
    assert not telemetry.metrics_enabled()  # on Lambda: EMF, not Prometheus
    lh.get_model()  # the init phase: the pull time
    capsys.readouterr()
    for body in (photos[0], photos[1], b'junk'):
        lh.handler({'image': base64.b64encode(body).decode()}, None)
    docs = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith('{')]
    assert len(docs) == 3
    for doc in docs: check_emf(doc)
    assert [d['ColdStart'] for d in docs] == [1, 0, 0] and 'ModelPullTime' in docs[0] and 'ModelPullTime' not in docs[1]
    assert docs[0]['FunctionName'] == 'classify' and docs[0]['_aws']['CloudWatchMetrics'][0]['Namespace'] == 'dogbreeds-test'
    assert (docs[0]['Requests'], docs[0]['Errors'], docs[2]['ClientErrors']) == (1, 0, 1)
    assert docs[0]['DecodeLatency'] > 0 and docs[0]['InferenceLatency'] > 0 and docs[0]['TotalLatency'] >= docs[0]['InferenceLatency']
    assert docs[0]['Breed'] and docs[0]['Prediction'] == 1 and docs[0]['NotADog'] in (0, 1) and 0 < docs[0]['Top1Probability'] <= 1
    assert docs[0]['RequestBytes'] == len(photos[0])
    reqs = [l for l in log_lines() if l.get('event') == 'request']
    assert [(l['entry'], l['status']) for l in reqs] == [('lambda', 200), ('lambda', 200), ('lambda', 415)]
    with pytest.raises(jsonschema.ValidationError): check_emf({'_aws': {'CloudWatchMetrics': []}})  # the check can fail
    lh.reset()


def test_multiprocess_workers_and_metrics_port(model, photos):
    "Two workers (prometheus_client multiprocess mode): /metrics sums both; with METRICS_PORT it is on that port only."
    from dogbreeds.testing import free_ports
    mport = free_ports(1)[0]
    with ServeProcess(model, workers=2, env={'METRICS_PORT': str(mport)}) as s:
        for p in photos:
            req = urllib.request.Request(s.url + '/invocations', data=p, headers={'content-type': 'image/jpeg'})
            with urllib.request.urlopen(req, timeout=30) as r: assert r.status == 200
        with pytest.raises(urllib.error.HTTPError): urllib.request.urlopen(s.url + '/metrics', timeout=5)
        text = urllib.request.urlopen(f'http://127.0.0.1:{mport}/metrics', timeout=5).read().decode()
    assert value(text, 'dogbreeds_requests_total', route='/invocations', status='200') == len(photos)
    assert value(text, 'dogbreeds_model_info') >= 1


def test_serving_runs_without_prometheus_client(model, photos, tmp_path):
    "The Lambda package and SageMaker's PyTorch container have no prometheus_client: serving works, metrics are off."
    import subprocess, sys
    (tmp_path / 'p.jpg').write_bytes(photos[0])
    code = f'''
import sys, json, base64
sys.modules['prometheus_client'] = None  # not installed: importing it fails, find_spec says None
from dogbreeds import telemetry, handlers
assert not telemetry.metrics_enabled()
from dogbreeds.handlers import invoke, load_model
status, out = invoke(load_model({str(model)!r}), open({str(tmp_path / 'p.jpg')!r}, 'rb').read(), 'image/jpeg')
assert status == 200, out
assert sys.modules['prometheus_client'] is None
print('ok')
'''
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), r.stdout + r.stderr


def test_batch_logs_one_line_per_photo(model, photos, tmp_path, log_lines):
    from dogbreeds.predict import batch_predict
    src = tmp_path / 'in'; src.mkdir()
    for i, p in enumerate(photos[:3]): (src / f'{i}.jpg').write_bytes(p)
    (src / 'bad.jpg').write_bytes(b'not a photo')
    batch_predict(src, tmp_path / 'out.csv', str(model), k=1)
    reqs = [l for l in log_lines() if l.get('event') == 'request']
    assert len(reqs) == 4 and {l['entry'] for l in reqs} == {'batch'}
    assert sorted(l['status'] for l in reqs) == [200, 200, 200, 400]
    bad = next(l for l in reqs if l['status'] == 400)
    assert bad['error_type'] and bad['request_id'].endswith('bad.jpg') and all(l['model_version'] for l in reqs)
