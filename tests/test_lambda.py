"""The Lambda handler: every event source (AWS's own example events, in tests/events/), every bad photo at each,
request errors, photos named by S3 URI, S3 uploads end to end on a real S3 server, a registry model pulled once and
checked, and proxy mode against `dogbreeds serve` answering the SageMaker runtime API."""
import base64, copy, json, os, shutil, subprocess, sys, uuid
from pathlib import Path

import pytest

from dogbreeds import lambda_handler as lh
from dogbreeds.inference import Predictor
from dogbreeds.registry import Registry
from test_inference import bad_inputs, good_odd_inputs

EVENTS = Path(__file__).parent / 'events'
SAMPLE = Path(__file__).resolve().parent.parent / 'data' / 'sample'
HTTP_KINDS = {'apigateway-rest': 'rest-api', 'apigateway-http': 'http-api', 'function-url': 'function-url', 'alb': 'alb'}
BAD_STATUS = {'empty': 400, 'text': 415, 'truncated jpeg': 400, '1x1': 400, 'png claiming 20000x20000': 413}
ENV = ('MODEL_URI', 'SAGEMAKER_ENDPOINT', 'RESULTS_PREFIX', 'INPUT_PREFIXES', 'MAX_PAYLOAD_BYTES', 'AWS_LAMBDA_FUNCTION_NAME')


def event(name): return json.loads((EVENTS / f'{name}.json').read_text())


def http_event(name, body: bytes = b'', content_type='image/jpeg', method='POST', b64=True, headers=None):
    "AWS's example event of that source, carrying `body`."
    e = event(name)
    if name in ('apigateway-http', 'function-url'): e['requestContext']['http']['method'] = method
    else: e['httpMethod'] = method
    hs = {'Content-Type': content_type, **(headers or {})}
    e['headers'].update(hs)
    if 'multiValueHeaders' in e: e['multiValueHeaders'].update({k: [v] for k, v in hs.items()})
    e['body'] = base64.b64encode(body).decode() if b64 else body.decode()
    e['isBase64Encoded'] = b64
    return e


def call(e):
    "`(status, JSON body)` of the handler's answer to the event `e`, whatever the event's source."
    r = lh.handler(e)
    if 'body' in r:
        assert r['headers' if 'headers' in r else 'multiValueHeaders'] in ({'Content-Type': 'application/json'},
                                                                         {'Content-Type': ['application/json']})
        return r['statusCode'], json.loads(r['body'])
    return r['statusCode'], {k: v for k, v in r.items() if k != 'statusCode'}


def direct(body: bytes, **kw): return {'image': base64.b64encode(body).decode(), **kw}


@pytest.fixture(scope='module')
def photo(): return sorted((SAMPLE / 'val' / 'n02111889').glob('*'))[0]  # a Samoyed


@pytest.fixture
def clean_env(monkeypatch):
    for k in ENV: monkeypatch.delenv(k, raising=False)
    lh.reset()
    yield monkeypatch
    lh.reset()


@pytest.fixture
def local_model(model_dir, clean_env):
    clean_env.setenv('MODEL_URI', str(model_dir))
    return model_dir


@pytest.fixture(scope='module')
def expected(model_dir, photo):
    return [dict(breed=b, probability=p) for b, p in Predictor.load(model_dir, backend='onnx').predict(photo.read_bytes(), k=5).top]


def same(preds, want):
    assert [p['breed'] for p in preds] == [w['breed'] for w in want]
    assert all(abs(p['probability'] - w['probability']) < 1e-5 for p, w in zip(preds, want))


def test_event_sources_are_told_apart():
    kinds = {name: lh.event_kind(event(name)) for name in HTTP_KINDS}
    assert kinds == HTTP_KINDS
    assert lh.event_kind(event('s3-put')) == 's3'
    assert lh.event_kind({'image': 'abc'}) == 'direct'
    assert [lh.event_kind(e) for e in ([], {'Records': [{'eventSource': 'aws:sqs'}]}, {'requestContext': {}})] == ['unknown'] * 3


def test_every_http_source_classifies(local_model, photo, expected):
    data = photo.read_bytes()
    for name in HTTP_KINDS:
        r = lh.handler(http_event(name, data))
        status, body = call(http_event(name, data))
        assert status == 200, (name, body)
        same(body['predictions'], expected)
        assert body['model']['name'] and body['model']['version'].startswith('sha256:')
        assert r['isBase64Encoded'] is False
        if name == 'alb': assert r['statusDescription'] == '200 OK'
        # the same photo as JSON, not base64-encoded by the source
        status, body = call(http_event(name, json.dumps(direct(data, k=2)).encode(), 'application/json', b64=False))
        assert status == 200 and len(body['predictions']) == 2, (name, body)
        status, body = call(http_event(name, method='GET'))  # health
        assert status == 200 and body['model']['version'], (name, body)


def test_direct_invocation(local_model, photo, expected):
    status, body = call(direct(photo.read_bytes()))
    assert status == 200
    same(body['predictions'], expected)
    status, body = call(direct(photo.read_bytes(), k=3))
    assert status == 200 and len(body['predictions']) == 3


def test_bad_photos_at_every_entry_point(local_model, photo):
    bad = {n: d for n, (d, _) in bad_inputs(photo).items()}
    odd = good_odd_inputs(photo)
    for name in [*HTTP_KINDS, 'direct']:
        for what, data in {**bad, **odd}.items():
            e = direct(data) if name == 'direct' else http_event(name, data, 'application/x-image')
            status, body = call(e)
            assert status == BAD_STATUS.get(what, 200), (name, what, body)
            assert (status == 200) == ('predictions' in body) and (status == 200 or body['error']), (name, what, body)


def test_request_errors(local_model, photo):
    data = photo.read_bytes()
    big = b'\xff\xd8' + b'\0' * (6 * 2**20)
    for name in HTTP_KINDS:
        assert call(http_event(name, big))[0] == 413
        assert call(http_event(name, data, 'text/plain'))[0] == 415
        assert call(http_event(name, b'{"image": "abc', 'application/json', b64=False))[0] == 400       # malformed JSON
        assert call(http_event(name, b'{"image": "not base64!"}', 'application/json', b64=False))[0] == 400
        assert call(http_event(name, b'{"url": "http://169.254.169.254/"}', 'application/json', b64=False))[0] == 400  # no SSRF
        e = http_event(name, data); e['body'] = 'not base64!'
        assert call(e)[0] == 400
        assert call(http_event(name, data, method='DELETE'))[0] == 405
        assert call(http_event(name, data, headers={'Accept': 'text/csv'}))[0] == 406
    assert call(direct(big))[0] == 413
    assert call({'image': 'not base64!'})[0] == 400
    assert call({'image': 42})[0] == 400
    assert call({'url': 'http://169.254.169.254/latest/meta-data/'})[0] == 400
    assert call(direct(data, k=0))[0] == 400
    assert call(['not', 'an', 'event'])[0] == 400
    status, body = call({'s3_uri': 's3://bucket/photo.jpg'})  # INPUT_PREFIXES unset: reading S3 is off
    assert status == 403 and 'INPUT_PREFIXES' in body['error']


def test_no_model_is_503_not_500(clean_env, photo):
    status, body = call(direct(photo.read_bytes()))
    assert status == 503 and 'MODEL_URI' in body['error']
    clean_env.setenv('MODEL_URI', '/nowhere/model')
    status, body = call(http_event('function-url', photo.read_bytes()))
    assert status == 503 and '/nowhere' not in body['error']  # the cause goes to the log, not to the client


@pytest.fixture
def s3_env(s3_server, clean_env):
    clean_env.setenv('AWS_ENDPOINT_URL', s3_server.endpoint)
    return s3_server


def test_photo_by_s3_uri(s3_env, clean_env, local_model, photo, expected):
    c, b, p = s3_env.client(), s3_env.bucket, f'in-{uuid.uuid4().hex[:8]}'
    c.put_object(Bucket=b, Key=f'{p}/dog.jpg', Body=photo.read_bytes())
    c.put_object(Bucket=b, Key=f'elsewhere-{p}/dog.jpg', Body=photo.read_bytes())
    clean_env.setenv('INPUT_PREFIXES', f's3://{b}/{p}, s3://other-bucket/x')
    status, body = call({'s3_uri': f's3://{b}/{p}/dog.jpg'})
    assert status == 200
    same(body['predictions'], expected)
    assert call({'s3_uri': f's3://{b}/elsewhere-{p}/dog.jpg'})[0] == 403    # outside the prefixes
    assert call({'s3_uri': f's3://{b}/{p}/../elsewhere-{p}/dog.jpg'})[0] == 403
    assert call({'s3_uri': f's3://{b}/{p}/missing.jpg'})[0] == 404
    assert call({'s3_uri': f's3://{b}/{p}/dog.jpg', 'image': 'abc'})[0] == 400
    assert call({'s3_uri': 'https://example.com/dog.jpg'})[0] == 400


def test_s3_upload_event_writes_results(s3_env, clean_env, local_model, photo, expected):
    c, b, p = s3_env.client(), s3_env.bucket, f'up-{uuid.uuid4().hex[:8]}'
    uploads = {f'{p}/photos/my dog.jpg': photo.read_bytes(), f'{p}/photos/notes.txt': b'not a photo',
               f'{p}/photos/cmyk.jpg': good_odd_inputs(photo)['cmyk jpeg']}
    for k, v in uploads.items(): c.put_object(Bucket=b, Key=k, Body=v)
    template = event('s3-put')['Records'][0]
    records = []
    for key in [*uploads, f'{p}/results/x.json']:
        r = copy.deepcopy(template)
        r['s3']['bucket'].update(name=b, arn=f'arn:aws:s3:::{b}')
        r['s3']['object']['key'] = key.replace(' ', '+')  # S3 URL-encodes keys in events
        records.append(r)
    with pytest.raises(lh.ServiceUnavailableError, match='RESULTS_PREFIX'):  # results need a place to go
        lh.handler({'Records': records})
    clean_env.setenv('RESULTS_PREFIX', f's3://{b}')
    with pytest.raises(lh.ServiceUnavailableError, match='whole bucket'):
        lh.handler({'Records': records})
    clean_env.setenv('RESULTS_PREFIX', f's3://{b}/{p}/results')
    out = lh.handler({'Records': records})
    assert out['statusCode'] == 200
    assert [r.get('status', r.get('skipped')) for r in out['results']] == [200, 415, 200, 'under the results prefix']
    res = {k: json.loads(c.get_object(Bucket=b, Key=f'{p}/results/{k}.json')['Body'].read()) for k in uploads}
    good = res[f'{p}/photos/my dog.jpg']
    same(good['predictions'], expected)
    assert good['input'] == f's3://{b}/{p}/photos/my dog.jpg' and good['model']['version'] and good['time']
    assert res[f'{p}/photos/notes.txt']['status'] == 415 and res[f'{p}/photos/notes.txt']['error']
    assert res[f'{p}/photos/cmyk.jpg']['predictions'][0]['breed'] == expected[0]['breed']
    # a photo deleted before it was read: its result says so (retrying would not bring it back)
    missing = copy.deepcopy(records[0]); missing['s3']['object']['key'] = f'{p}/photos/gone.jpg'
    assert lh.handler({'Records': [missing]})['results'][0]['status'] == 404
    assert json.loads(c.get_object(Bucket=b, Key=f'{p}/results/{p}/photos/gone.jpg.json')['Body'].read())['status'] == 404
    # results that cannot be written fail the invocation (Lambda retries it), after the other records are done
    clean_env.setenv('RESULTS_PREFIX', f's3://no-such-bucket-{p}/results')
    with pytest.raises(RuntimeError, match='2 of 2 photos failed'):
        lh.handler({'Records': records[:2]})


def test_registry_model_pulled_once_and_verified(s3_env, clean_env, model_dir, tmp_path, photo, expected):
    b, prefix = s3_env.bucket, f'reg-{uuid.uuid4().hex[:8]}'
    reg = Registry(f's3://{b}/{prefix}', progress=False)
    version = reg.push(model_dir, name='dogbreeds', alias='production')
    cache = tmp_path / 'cache'
    clean_env.setenv('DOGBREEDS_CACHE', str(cache))
    clean_env.setenv('MODEL_URI', f's3://{b}/{prefix}/dogbreeds@production')
    status, body = call(direct(photo.read_bytes()))
    assert status == 200 and body['model'] == {'name': 'dogbreeds', 'version': version}
    same(body['predictions'], expected)
    pulled = cache / 'dogbreeds' / version
    assert (pulled / 'manifest.json').is_file()
    # warm: the loaded model is reused, nothing is pulled again (the cache can even be gone)
    shutil.rmtree(cache)
    assert call(direct(photo.read_bytes()))[0] == 200 and not cache.exists()
    # cold start with a damaged cached copy: the sha256 check finds it, and a fresh copy is pulled
    lh.reset()
    assert call(direct(photo.read_bytes()))[0] == 200
    onnx_file = pulled / 'model.onnx'
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10] + b'x' * 10)
    lh.reset()
    status, body = call(direct(photo.read_bytes()))
    assert status == 200 and body['model']['version'] == version
    # a model file changed in the registry: refused (503), never served
    c = s3_env.client()
    key = next(o['Key'] for o in c.list_objects_v2(Bucket=b, Prefix=f'{prefix}/dogbreeds/versions/{version}/')['Contents']
               if o['Key'].endswith('/model.onnx'))
    c.put_object(Bucket=b, Key=key, Body=b'tampered')
    shutil.rmtree(cache); lh.reset()
    status, body = call(direct(photo.read_bytes()))
    assert status == 503, body


def test_model_loaded_in_init_phase_to_tmp(model_dir, clean_env):
    "On Lambda (AWS_LAMBDA_FUNCTION_NAME set) the model is loaded when the module is imported, before any request."
    clean_env.setenv('AWS_LAMBDA_FUNCTION_NAME', 'dogbreeds')
    from dogbreeds.registry import default_cache
    assert str(default_cache()).startswith('/tmp/')
    code = "import json, dogbreeds.lambda_handler as h; print(json.dumps(sorted(h._services)))"
    env = {**os.environ, 'MODEL_URI': str(model_dir)}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [str(model_dir)]


def test_proxy_mode(served, clean_env, photo, expected):
    "With SAGEMAKER_ENDPOINT set, photos go to the endpoint (here `dogbreeds serve`, via the runtime API's path)."
    for k, v in dict(AWS_ACCESS_KEY_ID='test', AWS_SECRET_ACCESS_KEY='test', AWS_DEFAULT_REGION='us-east-1',
                     AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=served.url, SAGEMAKER_ENDPOINT='dogbreeds',
                     AWS_CONFIG_FILE='/nonexistent', AWS_SHARED_CREDENTIALS_FILE='/nonexistent').items():
        clean_env.setenv(k, v)
    clean_env.delenv('AWS_PROFILE', raising=False)
    status, body = call(http_event('function-url', photo.read_bytes()))
    assert status == 200, body
    same(body['predictions'], expected)
    assert not lh._services  # no model loaded in the function
    assert call(direct(photo.read_bytes(), k=2))[1]['predictions'].__len__() == 2
    for what, (data, _) in bad_inputs(photo).items():  # the endpoint's refusals keep their status
        status, body = call(http_event('apigateway-http', data, 'application/x-image'))
        assert status == BAD_STATUS[what] and body['error'], (what, body)
    assert call(http_event('alb', photo.read_bytes(), 'text/plain'))[0] == 415  # checked before the endpoint is asked
    assert call(http_event('alb', method='GET'))[1]['mode'] == 'proxy'
    from conftest import free_ports
    clean_env.setenv('AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME', f'http://127.0.0.1:{free_ports(1)[0]}')  # nothing listens
    lh.reset()
    status, body = call(direct(photo.read_bytes()))
    assert status == 502, body
