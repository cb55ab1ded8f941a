"""SageMaker: the handler functions for every content type and bad photo, model.tar.gz run through SageMaker's own
inference toolkit in a fresh interpreter, `dogbreeds serve` over real HTTP on 127.0.0.1, and deploy/undeploy
against moto's SageMaker and Application Auto Scaling APIs (with botocore's stubber for the endpoint update)."""
import base64, json, os, subprocess, sys, tarfile
from pathlib import Path

import httpx
import pytest

from dogbreeds import deploy as dp, handlers
from dogbreeds.core import DogbreedsError
from dogbreeds.protocol import RequestError
from dogbreeds.inference import Predictor
from test_inference import bad_inputs, good_odd_inputs
from test_lambda import BAD_STATUS, same

SAMPLE = Path(__file__).resolve().parent.parent / 'data' / 'sample'
CONTENT_TYPES = ('image/jpeg', 'image/png', 'application/x-image', 'application/json')


@pytest.fixture(scope='module')
def photo(): return sorted((SAMPLE / 'val' / 'n02111889').glob('*'))[0]


@pytest.fixture(scope='module')
def expected(model_dir, photo):
    return [dict(breed=b, probability=p) for b, p in Predictor.load(model_dir, backend='onnx').predict(photo.read_bytes(), k=5).top]


def as_png(photo):
    import io
    from PIL import Image
    buf = io.BytesIO(); Image.open(photo).save(buf, 'PNG'); return buf.getvalue()


def body_for(ct, photo):
    if ct == 'application/json': return json.dumps({'image': base64.b64encode(photo.read_bytes()).decode()}).encode()
    return as_png(photo) if ct == 'image/png' else photo.read_bytes()


def test_handler_functions(model_dir, photo, expected, monkeypatch):
    monkeypatch.delenv('MODEL_URI', raising=False)
    model = handlers.model_fn(str(model_dir))
    for ct in CONTENT_TYPES:
        out, out_ct = handlers.output_fn(handlers.predict_fn(handlers.input_fn(body_for(ct, photo), ct), model), 'application/json')
        assert out_ct == 'application/json'
        preds = json.loads(out)['predictions']
        if ct == 'image/png': assert preds[0]['breed'] == expected[0]['breed']  # a PNG re-encoding of the same photo
        else: same(preds, expected)
    for what, (data, _) in bad_inputs(photo).items():
        status, out = handlers.invoke(model, data, 'image/jpeg')
        assert status == BAD_STATUS[what] and json.loads(out)['status'] == status, (what, out)
    for what, data in good_odd_inputs(photo).items():
        assert handlers.invoke(model, data, 'application/x-image')[0] == 200, what
    assert handlers.invoke(model, b'\xff' * (6 * 2**20 + 1), 'image/jpeg')[0] == 413
    assert handlers.invoke(model, photo.read_bytes(), 'text/csv')[0] == 415
    assert handlers.invoke(model, b'{"image": ', 'application/json')[0] == 400
    assert handlers.invoke(model, b'{"image": "@@@"}', 'application/json')[0] == 400
    assert handlers.invoke(model, photo.read_bytes(), 'image/jpeg', 'text/csv')[0] == 406
    with pytest.raises(RequestError):  # without the toolkit's context, a refusal raises
        handlers.input_fn(photo.read_bytes(), 'text/csv')


def test_package_runs_in_sagemakers_toolkit(model_dir, photo, expected, tmp_path):
    "model.tar.gz, unpacked as SageMaker does, served by sagemaker-inference's Transformer in a fresh interpreter."
    pkg = dp.package_model(model_dir, tmp_path / 'model.tar.gz')
    with pytest.raises(DogbreedsError, match='already exists'): dp.package_model(model_dir, pkg)
    with tarfile.open(pkg) as t:
        names = set(t.getnames())
        t.extractall(tmp_path / 'opt_ml_model', filter='data')
    assert {'manifest.json', 'model.onnx', 'code/inference.py', 'code/requirements.txt'} <= names
    assert not any(n.endswith(('.pkl', '.pth')) for n in names)  # no fastai learner or state-dict pickle
    reqs = (tmp_path / 'opt_ml_model/code/requirements.txt').read_text()
    assert 'onnxruntime' in reqs and 'torch' not in reqs and 'fastai' not in reqs
    md = tmp_path / 'opt_ml_model'
    script = r'''
import base64, json, sys
import dogbreeds
from sagemaker_inference.transformer import Transformer
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
class Req:
    def __init__(self, ct, accept): self.p = {'Content-Type': ct, 'Accept': accept}
    def get_request_properties(self): return self.p
class Context:  # the parts of the model server's context the toolkit uses; one object for the model's life, as in MMS
    def __init__(self, model_dir):
        self.system_properties, self.request_processor = {'model_dir': model_dir}, [None]
    def next_request(self, ct, accept='application/json'):
        self.request_processor[0], self.status, self.content_type = Req(ct, accept), 200, None
    def set_response_status(self, code=200, phrase=''): self.status = code
    def set_response_content_type(self, i, ct): self.content_type = ct
t = Transformer(default_inference_handler=DefaultInferenceHandler())
out = {'dogbreeds_from': dogbreeds.__file__, 'answers': []}
ctx = Context(sys.argv[1])
for ct, path in json.loads(sys.argv[2]):
    ctx.next_request(ct)
    body = open(path, 'rb').read()
    r = t.transform([{'body': body}], ctx)[0]
    out['answers'].append([ctx.status, ctx.content_type, r.decode() if isinstance(r, bytes) else r])
print(json.dumps(out))
'''
    inputs = []
    for i, ct in enumerate(CONTENT_TYPES):
        (tmp_path / f'in{i}').write_bytes(body_for(ct, photo)); inputs.append([ct, str(tmp_path / f'in{i}')])
    for j, (what, (data, _)) in enumerate(bad_inputs(photo).items()):
        (tmp_path / f'bad{j}').write_bytes(data); inputs.append(['image/jpeg', str(tmp_path / f'bad{j}')])
    (tmp_path / 'csv').write_bytes(b'a,b,c\n'); inputs.append(['text/csv', str(tmp_path / 'csv')])
    # the toolkit itself decodes text/csv and JSON bodies as UTF-8 before input_fn runs: a JPEG sent as text/csv gets
    # the toolkit's own 500 (a known limit of SageMaker's framework containers; `dogbreeds serve` answers 415)
    inputs.append(['text/csv', inputs[0][1]])
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'MODEL_URI')}
    env.update(PYTHONPATH=str(md / 'code'), SAGEMAKER_PROGRAM='inference.py')
    r = subprocess.run([sys.executable, '-c', script, str(md), json.dumps(inputs)], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.splitlines()[-1])
    assert out['dogbreeds_from'].startswith(str(md / 'code'))  # the archive's own copy of the package
    answers = out['answers']
    for (status, ct, body), want_ct in zip(answers[:4], CONTENT_TYPES):
        assert (status, ct) == (200, 'application/json'), (want_ct, body)
        assert json.loads(body)['predictions'][0]['breed'] == expected[0]['breed']
    same(json.loads(answers[0][2])['predictions'], expected)
    assert [a[0] for a in answers[4:]] == [*BAD_STATUS.values(), 415, 500]
    assert 'UnicodeDecodeError' in answers[-1][2] or 'utf-8' in answers[-1][2]
    for status, ct, body in answers[4:-1]:
        assert 'Traceback' not in body and json.loads(body)['error']  # refusals are JSON, without the toolkit's trace


def test_serve_over_http(served, photo, expected):
    with httpx.Client(base_url=served.url, timeout=30) as c:
        ping = c.get('/ping')
        assert ping.status_code == 200 and ping.json()['model']['version']
        for ct in CONTENT_TYPES:
            r = c.post('/invocations', content=body_for(ct, photo), headers={'Content-Type': ct})
            assert r.status_code == 200 and r.headers['content-type'] == 'application/json', (ct, r.text)
            if ct != 'image/png': same(r.json()['predictions'], expected)
        for what, (data, _) in bad_inputs(photo).items():
            r = c.post('/invocations', content=data, headers={'Content-Type': 'image/jpeg'})
            assert r.status_code == BAD_STATUS[what] and r.json()['error'], (what, r.text)
        for what, data in good_odd_inputs(photo).items():
            assert c.post('/invocations', content=data, headers={'Content-Type': 'image/jpeg'}).status_code == 200, what
        big = c.post('/invocations', content=b'\xff' * (6 * 2**20 + 1), headers={'Content-Type': 'image/jpeg'})
        assert big.status_code == 413 and big.json()['type'] == 'PayloadTooLargeError'
        def chunks():  # no Content-Length: refused while it streams
            for _ in range(8): yield b'\0' * 2**20
        assert c.post('/invocations', content=chunks(), headers={'Content-Type': 'image/jpeg'}).status_code == 413
        assert c.post('/invocations', content=photo.read_bytes(), headers={'Content-Type': 'text/plain'}).status_code == 415
        assert c.post('/invocations', content=b'{"image": ', headers={'Content-Type': 'application/json'}).status_code == 400
        assert c.post('/invocations', content=b'{"image": "%%"}', headers={'Content-Type': 'application/json'}).status_code == 400
        assert c.get('/nowhere').json()['status'] == 404
        assert c.get('/invocations').status_code == 405
        rt = c.post('/endpoints/dogbreeds/invocations', content=b'text', headers={'Content-Type': 'image/png'})
        assert rt.status_code == 424 and rt.json()['OriginalStatusCode'] == 415


def test_serve_workers_and_shutdown(model_dir, photo):
    from conftest import ServeProcess
    server = ServeProcess(model_dir, workers=2)
    with server:
        import psutil
        kids = psutil.Process(server.proc.pid).children(recursive=True)
        assert len([k for k in kids if 'spawn_main' in ' '.join(k.cmdline())]) == 2  # uvicorn's worker processes
        r = httpx.post(server.url + '/invocations', content=photo.read_bytes(), headers={'Content-Type': 'image/jpeg'}, timeout=30)
        assert r.status_code == 200
    assert not server.listening()


def test_serve_refuses_bad_settings(tmp_path):
    from conftest import free_ports
    serve = lambda *a: subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'serve', *a],
                                      capture_output=True, text=True, timeout=120)
    for bad in (['--workers', '0'], ['--port', '70000']):
        r = serve('--model', str(tmp_path), *bad)
        assert r.returncode == 2 and bad[0][2:] in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    port = free_ports(1)[0]
    r = serve('--model', str(tmp_path / 'no-such-model'), '--port', str(port))  # the model cannot load: the server stops
    assert r.returncode != 0 and 'no-such-model' in r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------------------
# deploy / undeploy against moto

ROLE = 'arn:aws:iam::123456789012:role/dogbreeds-sagemaker'
IMAGE = '123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreeds-sagemaker:0.1.0'
MODEL_URI = 's3://acme-ml/models/dogbreeds@production'


def test_deploy_serverless(aws):
    out = dp.deploy('dogbreeds-sl', IMAGE, ROLE, model_uri=MODEL_URI, memory_mb=3072, max_concurrency=5,
                    provisioned_concurrency=2, session=aws, wait_delay=1)
    c = aws.client('sagemaker')
    assert out['kind'] == 'serverless' and out['autoscaling'] is None
    assert c.describe_endpoint(EndpointName='dogbreeds-sl')['EndpointStatus'] == 'InService'
    v = c.describe_endpoint_config(EndpointConfigName=out['endpoint_config'])['ProductionVariants'][0]
    assert v['ServerlessConfig'] == {'MemorySizeInMB': 3072, 'MaxConcurrency': 5, 'ProvisionedConcurrency': 2}
    m = c.describe_model(ModelName=out['model'])
    assert m['ExecutionRoleArn'] == ROLE and m['PrimaryContainer']['Environment'] == {'MODEL_URI': MODEL_URI}
    gone = dp.undeploy('dogbreeds-sl', session=aws)
    assert gone == ['endpoint/dogbreeds-sl', f"endpoint-config/{out['endpoint_config']}", f"model/{out['model']}"]
    assert not c.list_endpoints()['Endpoints'] and not c.list_endpoint_configs()['EndpointConfigs'] and not c.list_models()['Models']


def test_deploy_real_time_with_autoscaling_and_model_tar(aws):
    out = dp.deploy('dogbreeds-rt', IMAGE, ROLE, model_data='s3://acme-ml/endpoints/model.tar.gz', instance_type='ml.c5.large',
                    instance_count=2, max_instances=6, target_invocations=600, session=aws, wait_delay=1)
    c, aas = aws.client('sagemaker'), aws.client('application-autoscaling')
    v = c.describe_endpoint_config(EndpointConfigName=out['endpoint_config'])['ProductionVariants'][0]
    assert (v['InstanceType'], v['InitialInstanceCount']) == ('ml.c5.large', 2)
    env = c.describe_model(ModelName=out['model'])['PrimaryContainer']
    assert env['ModelDataUrl'] == 's3://acme-ml/endpoints/model.tar.gz' and env['Environment']['SAGEMAKER_PROGRAM'] == 'inference.py'
    t = aas.describe_scalable_targets(ServiceNamespace='sagemaker')['ScalableTargets']
    assert [(x['ResourceId'], x['MinCapacity'], x['MaxCapacity']) for x in t] == [('endpoint/dogbreeds-rt/variant/AllTraffic', 2, 6)]
    pol = aas.describe_scaling_policies(ServiceNamespace='sagemaker')['ScalingPolicies'][0]
    cfg = pol['TargetTrackingScalingPolicyConfiguration']
    assert pol['PolicyType'] == 'TargetTrackingScaling' and cfg['TargetValue'] == 600.0
    assert cfg['PredefinedMetricSpecification']['PredefinedMetricType'] == 'SageMakerVariantInvocationsPerInstance'
    gone = dp.undeploy('dogbreeds-rt', session=aws)
    assert gone[0] == 'scalable-target/endpoint/dogbreeds-rt/variant/AllTraffic'
    assert not aas.describe_scalable_targets(ServiceNamespace='sagemaker')['ScalableTargets']
    assert not c.list_endpoints()['Endpoints'] and not c.list_models()['Models'] and not c.list_endpoint_configs()['EndpointConfigs']
    with pytest.raises(dp.DeployError, match='no endpoint'): dp.undeploy('dogbreeds-rt', session=aws)


def test_deploy_refuses_bad_settings_and_cleans_up(aws):
    bad = [dict(memory_mb=1500), dict(max_concurrency=0), dict(provisioned_concurrency=11), dict(max_instances=3),
           dict(instance_type='c5.large'), dict(instance_type='ml.c5.large', instance_count=2, max_instances=1),
           dict(instance_type='ml.c5.large', provisioned_concurrency=1)]
    for kw in bad:
        with pytest.raises(dp.DeployError): dp.deploy('dogbreeds', IMAGE, ROLE, model_uri=MODEL_URI, session=aws, **kw)
    for args in [('bad_name!', IMAGE, ROLE), ('dogbreeds', IMAGE, 'not-a-role'), ('dogbreeds', '', ROLE)]:
        with pytest.raises(dp.DeployError): dp.deploy(*args, model_uri=MODEL_URI, session=aws)
    with pytest.raises(dp.DeployError, match='name the model'): dp.deploy('dogbreeds', IMAGE, ROLE, session=aws)
    # SageMaker refuses the endpoint: the model and configuration this call created are deleted again
    c = aws.client('sagemaker')
    real = c.create_endpoint
    from botocore.exceptions import ClientError
    def refuse(**kw): raise ClientError({'Error': {'Code': 'ResourceLimitExceeded', 'Message': 'too many endpoints'}}, 'CreateEndpoint')
    c.create_endpoint = refuse
    with pytest.raises(dp.DeployError, match='ResourceLimitExceeded'):
        dp.deploy('dogbreeds', IMAGE, ROLE, model_uri=MODEL_URI, session=type('S', (), {'client': lambda self, n, **k: c if n == 'sagemaker' else aws.client(n, **k)})())
    c.create_endpoint = real
    assert not c.list_models()['Models'] and not c.list_endpoint_configs()['EndpointConfigs']


def test_deploy_over_a_running_endpoint_switches_and_removes_the_old(aws):
    "moto has no UpdateEndpoint: the switch is checked call by call with botocore's stubber."
    from botocore.stub import Stubber, ANY
    c, aas = aws.client('sagemaker'), aws.client('application-autoscaling')
    old = {'EndpointConfigName': 'dogbreeds-old', 'ProductionVariants': [{'VariantName': 'AllTraffic', 'ModelName': 'dogbreeds-old'}],
           'EndpointConfigArn': 'arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/dogbreeds-old', 'CreationTime': 0}
    ep = {'EndpointName': 'dogbreeds', 'EndpointArn': 'arn:aws:sagemaker:us-east-1:123456789012:endpoint/dogbreeds',
          'EndpointConfigName': 'dogbreeds-old', 'EndpointStatus': 'InService', 'CreationTime': 0, 'LastModifiedTime': 0}
    with Stubber(c) as s, Stubber(aas) as a:
        s.add_response('describe_endpoint', ep, {'EndpointName': 'dogbreeds'})
        s.add_response('create_model', {'ModelArn': 'arn:aws:sagemaker:us-east-1:123456789012:model/x'},
                       {'ModelName': ANY, 'ExecutionRoleArn': ROLE, 'PrimaryContainer': ANY, 'Tags': ANY})
        s.add_response('create_endpoint_config', {'EndpointConfigArn': 'arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/x'},
                       {'EndpointConfigName': ANY, 'ProductionVariants': ANY, 'Tags': ANY})
        s.add_response('describe_endpoint_config', old, {'EndpointConfigName': 'dogbreeds-old'})
        a.add_response('describe_scalable_targets', {'ScalableTargets': []},
                       {'ServiceNamespace': 'sagemaker', 'ResourceIds': ['endpoint/dogbreeds/variant/AllTraffic'],
                        'ScalableDimension': 'sagemaker:variant:DesiredInstanceCount'})
        s.add_response('update_endpoint', {'EndpointArn': ep['EndpointArn']}, {'EndpointName': 'dogbreeds', 'EndpointConfigName': ANY})
        s.add_response('describe_endpoint', ep, {'EndpointName': 'dogbreeds'})  # the waiter: in service
        s.add_response('delete_endpoint_config', {}, {'EndpointConfigName': 'dogbreeds-old'})
        s.add_response('delete_model', {}, {'ModelName': 'dogbreeds-old'})
        s.add_response('describe_endpoint', ep, {'EndpointName': 'dogbreeds'})
        session = type('S', (), {'client': lambda self, n, **k: c if n == 'sagemaker' else aas})()
        out = dp.deploy('dogbreeds', IMAGE, ROLE, model_uri=MODEL_URI, session=session, wait_delay=1)
        s.assert_no_pending_responses(); a.assert_no_pending_responses()
    assert out['updated'] and out['removed'] == ['endpoint-config/dogbreeds-old', 'model/dogbreeds-old']
