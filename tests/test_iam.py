"""Least-privilege IAM: every policy has no `*` action and a `*` resource only for actions AWS grants on nothing
narrower (checked against AWS's action list in policy_sentry's database), every ARN fits a resource type its actions
accept, each role can do its job and no more, and the S3 calls the Lambda handler really makes are allowed."""
import base64, json, re, subprocess, sys, uuid
from pathlib import Path
from functools import lru_cache

import pytest

from dogbreeds import iam
from dogbreeds.iam import allows, problems

R, A = 'us-east-1', '123456789012'
MODEL = 's3://acme-ml/models/dogbreeds@production'
ROLE_ARN = f'arn:aws:iam::{A}:role/dogbreeds-sagemaker'
KMS = f'arn:aws:kms:{R}:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab'
VPC = dict(subnets=('subnet-0abc',), security_groups=('sg-0abc',))

POLICIES = {
    'lambda': iam.lambda_policy('dogbreeds', R, A, model_uri=MODEL),
    'lambda proxy': iam.lambda_policy('dogbreeds', R, A, endpoint='dogbreeds'),
    'lambda full': iam.lambda_policy('dogbreeds', R, A, model_uri='s3://acme-ml/models/dogbreeds@20261123T101500Z-3fa2c1',
                                     input_prefixes=('s3://acme-uploads/photos',), results_prefix='s3://acme-uploads/results',
                                     kms_key_arn=KMS, **VPC),
    'sagemaker': iam.sagemaker_policy('dogbreeds', R, A, model_uri=MODEL),
    'sagemaker full': iam.sagemaker_policy('dogbreeds', R, A, model_uri=MODEL, model_data='s3://acme-ml/endpoints/model.tar.gz',
                                           ecr_repository='dogbreeds-sagemaker', kms_key_arn=KMS, **VPC),
    'training': iam.training_policy('s3://acme-ml/data/imagewoof', 's3://acme-ml/models', R, A, ecr_repository='dogbreeds-train',
                                    kms_key_arn=KMS),
    'training tracked': iam.training_policy('s3://acme-ml/data/imagewoof', 's3://acme-ml/models', R, A,
                                            tracking_arn=f'arn:aws:sagemaker:{R}:{A}:mlflow-tracking-server/dogbreeds',
                                            tracking_artifacts='s3://acme-mlflow/artifacts'),
    'deployer': iam.deployer_policy('dogbreeds', ROLE_ARN, R, A),
    'deployer without autoscaling': iam.deployer_policy('dogbreeds', ROLE_ARN, R, A, autoscaling=False),
    'batch': iam.batch_policy(ROLE_ARN, 's3://acme-uploads/photos', 's3://acme-uploads/out/results.parquet', R, A, kms_key_arn=KMS),
    'feedback': iam.feedback_policy('dogbreeds', R, A, qualifier='feedback', api_id='a1b2c3d4e5', stage='prod'),
    'transform': iam.transform_policy('s3://acme-uploads/photos', 's3://acme-uploads/out/results.parquet', MODEL, R, A,
                                      ecr_repository='dogbreeds-sagemaker', kms_key_arn=KMS),
    'launcher': iam.launcher_policy(f'arn:aws:iam::{A}:role/dogbreeds-retrain', 's3://acme-ml/data/imagewoof', 's3://acme-ml/models',
                                    R, A, scheduler_role_arn=f'arn:aws:iam::{A}:role/dogbreeds-scheduler', kms_key_arn=KMS),
}


@lru_cache(maxsize=None)
def action_data(action):
    from policy_sentry.querying.actions import get_action_data
    service, name = action.split(':')
    return get_action_data(service, name).get(service, [])


@lru_cache(maxsize=None)
def wildcard_only(service):
    from policy_sentry.querying.actions import get_actions_that_support_wildcard_arns_only
    return {a.lower() for a in get_actions_that_support_wildcard_arns_only(service)}


def fits(arn, fmt):
    "Whether `arn` (which may hold IAM wildcards) is an ARN of the resource type whose format is `fmt`."
    pat = re.escape(fmt)
    pat = re.sub(r'\\\$\\\{Partition\\\}', 'aws', pat)
    pat = re.sub(r'\\\$\\\{[^}]*\\\}', '.+', pat)
    return re.fullmatch(pat, arn) is not None


@pytest.mark.parametrize('name', POLICIES)
def test_least_privilege_rules(name):
    doc = POLICIES[name]
    assert problems(doc) == []
    assert doc['Version'] == '2012-10-17' and json.loads(json.dumps(doc)) == doc
    for s in doc['Statement']:
        assert s['Effect'] == 'Allow' and s['Sid'].isalnum()
        used = set()
        for a in s['Action']:
            assert '*' not in a and '?' not in a
            data = action_data(a)
            assert data, f"{a} is not an IAM action"
            formats = [d['resource_arn_format'] for d in data]
            if s['Resource'] == '*':
                assert a in iam.WILDCARD_ONLY, f"{name}: {a} on '*'"
                assert a.lower() in wildcard_only(a.split(':')[0]) and formats == ['*'], f"AWS grants {a} on {formats}"
            else:  # each action gets an ARN of a resource type it takes, and each ARN serves some action
                assert '*' not in s['Resource']
                ok = [arn for arn in s['Resource'] if any(fits(arn, f) for f in formats)]
                assert ok, f"{name}: {a} takes none of {formats}, not {s['Resource']}"
                used.update(ok)
        if s['Resource'] != '*': assert used == set(s['Resource']), f"{name}: {set(s['Resource']) - used} serve no action"


def test_wildcard_only_actions_really_are():
    for a in iam.WILDCARD_ONLY:
        assert a.lower() in wildcard_only(a.split(':')[0]), f"AWS grants {a} on narrower resources: do not use '*'"


def test_the_checker_finds_broad_policies():
    seed = {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 'sagemaker:*', 'Resource': '*'}]}
    assert problems(seed) == ['statement 0: wildcard action sagemaker:*', "statement 0: sagemaker:* on Resource '*'"]
    star = {'Statement': [{'Sid': 'S', 'Effect': 'Allow', 'Action': ['s3:GetObject'], 'Resource': ['*']}]}
    assert problems(star) == ["S: s3:GetObject on Resource '*'"]
    bucket = {'Statement': [{'Sid': 'S', 'Effect': 'Allow', 'Action': ['s3:GetObject'], 'Resource': ['arn:aws:s3:::*']}]}
    assert problems(bucket) == ['S: resource arn:aws:s3:::* names no resource']
    assert problems({'Statement': [{'Sid': 'N', 'Effect': 'Allow', 'NotAction': 's3:DeleteObject', 'Resource': '*'}]})


def obj(key, bucket='acme-ml'): return f'arn:aws:s3:::{bucket}/{key}'


def test_lambda_reads_its_model_and_nothing_else():
    p = POLICIES['lambda']
    assert allows(p, 's3:GetObject', obj('models/dogbreeds/aliases/production.json'))
    assert allows(p, 's3:GetObject', obj('models/dogbreeds/versions/20261123T101500Z-3fa2c1/model.onnx'))
    assert not allows(p, 's3:GetObject', obj('models/dogbreeds/aliases/staging.json'))
    assert not allows(p, 's3:GetObject', obj('models/other/versions/20261123T101500Z-3fa2c1/model.onnx'))
    assert not allows(p, 's3:GetObject', obj('data/imagewoof/train/x.jpg'))
    for a in ('s3:PutObject', 's3:DeleteObject', 's3:ListBucket'): assert not allows(p, a, obj('models/dogbreeds/versions/x'))
    assert not any(a.startswith('sagemaker:') for s in p['Statement'] for a in s['Action'])
    assert allows(p, 'logs:PutLogEvents', f'arn:aws:logs:{R}:{A}:log-group:/aws/lambda/dogbreeds:log-stream:2026/11/23/abc')
    assert not allows(p, 'logs:PutLogEvents', f'arn:aws:logs:{R}:{A}:log-group:/aws/lambda/other:log-stream:x')
    pinned = POLICIES['lambda full']
    assert allows(pinned, 's3:GetObject', obj('models/dogbreeds/versions/20261123T101500Z-3fa2c1/model.onnx'))
    assert not allows(pinned, 's3:GetObject', obj('models/dogbreeds/versions/20261124T101500Z-aaaaaa/model.onnx'))
    assert allows(pinned, 's3:GetObject', obj('photos/a.jpg', 'acme-uploads'))
    assert allows(pinned, 's3:PutObject', obj('results/photos/a.jpg.json', 'acme-uploads'))
    assert not allows(pinned, 's3:PutObject', obj('photos/a.jpg', 'acme-uploads'))


def test_lambda_proxy_invokes_the_one_endpoint():
    p = POLICIES['lambda proxy']
    ep = f'arn:aws:sagemaker:{R}:{A}:endpoint/dogbreeds'
    assert allows(p, 'sagemaker:InvokeEndpoint', ep)
    assert not allows(p, 'sagemaker:InvokeEndpoint', ep + '-other')
    assert not allows(p, 'sagemaker:InvokeEndpoint', f'arn:aws:sagemaker:{R}:{A}:endpoint/other')
    assert not allows(p, 'sagemaker:InvokeEndpointAsync', ep) and not allows(p, 'sagemaker:DescribeEndpoint', ep)
    assert not any(a.startswith('s3:') for s in p['Statement'] for a in s['Action'])


def test_sagemaker_and_training_roles():
    sm = POLICIES['sagemaker full']
    assert allows(sm, 's3:GetObject', obj('models/dogbreeds/versions/20261123T101500Z-3fa2c1/model.onnx'))
    assert allows(sm, 's3:GetObject', obj('endpoints/model.tar.gz'))
    assert not allows(sm, 's3:PutObject', obj('models/dogbreeds/versions/x/model.onnx'))
    assert not allows(sm, 's3:GetObject', obj('data/imagewoof/train/x.jpg'))
    assert allows(sm, 'ecr:BatchGetImage', f'arn:aws:ecr:{R}:{A}:repository/dogbreeds-sagemaker')
    assert not allows(sm, 'ecr:BatchGetImage', f'arn:aws:ecr:{R}:{A}:repository/other')
    tr = POLICIES['training']
    assert allows(tr, 's3:GetObject', obj('data/imagewoof/train/n02086240/x.JPEG'))
    assert not allows(tr, 's3:PutObject', obj('data/imagewoof/train/n02086240/x.JPEG'))  # the data is read-only
    assert allows(tr, 's3:PutObject', obj('models/dogbreeds/versions/20261123T101500Z-3fa2c1/model.onnx'))
    assert not allows(tr, 's3:PutObject', obj('models/other/versions/x/model.onnx'))
    assert not any('Delete' in a for s in tr['Statement'] for a in s['Action'])
    dep = POLICIES['deployer']
    assert allows(dep, 'iam:PassRole', ROLE_ARN) and not allows(dep, 'iam:PassRole', f'arn:aws:iam::{A}:role/admin')
    assert allows(dep, 'sagemaker:CreateEndpoint', f'arn:aws:sagemaker:{R}:{A}:endpoint/dogbreeds')
    assert not allows(dep, 'sagemaker:DeleteEndpoint', f'arn:aws:sagemaker:{R}:{A}:endpoint/production-fraud-model')
    with pytest.raises(iam.PolicyError): iam.lambda_policy('f', R, A)
    with pytest.raises(iam.PolicyError): iam.lambda_policy('f', 'mars-1', A, model_uri=MODEL)
    with pytest.raises(iam.PolicyError): iam.deployer_policy('dogbreeds', 'not-a-role', R, A)


def test_lambda_policy_allows_the_calls_the_handler_makes(s3_server, model_dir, tmp_path, monkeypatch):
    "Serve a registry model from a real S3 server while recording every AWS call: the policy allows each, by ARN."
    from botocore.client import BaseClient
    from dogbreeds import lambda_handler as lh
    from dogbreeds.registry import Registry
    b, prefix = s3_server.bucket, f'iam-{uuid.uuid4().hex[:8]}'
    Registry(f's3://{b}/{prefix}', endpoint_url=s3_server.endpoint, progress=False).push(model_dir, name='dogbreeds', alias='production')
    uri = f's3://{b}/{prefix}/dogbreeds@production'
    for k in ('SAGEMAKER_ENDPOINT', 'RESULTS_PREFIX', 'INPUT_PREFIXES'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('AWS_ENDPOINT_URL', s3_server.endpoint)
    monkeypatch.setenv('MODEL_URI', uri)
    monkeypatch.setenv('DOGBREEDS_CACHE', str(tmp_path / 'cache'))
    calls, real = [], BaseClient._make_api_call
    def record(self, op, params):
        calls.append((self.meta.service_model.service_name, op, dict(params)))
        return real(self, op, params)
    monkeypatch.setattr(BaseClient, '_make_api_call', record)
    lh.reset()
    try:
        jpg = sorted((Path(__file__).resolve().parent.parent / 'data/sample/val/n02111889').glob('*'))[0].read_bytes()
        r = lh.handler({'image': base64.b64encode(jpg).decode()})
    finally: lh.reset()
    assert r['statusCode'] == 200, r
    assert calls, "no AWS call was recorded"
    doc = iam.lambda_policy('dogbreeds', R, A, model_uri=uri)
    iam_action = {'GetObject': 's3:GetObject', 'HeadObject': 's3:GetObject', 'ListObjectsV2': 's3:ListBucket'}
    for service, op, params in calls:
        assert service == 's3' and op in iam_action, f"an unexpected call: {service} {op}"
        arn = obj(params['Key'], params['Bucket']) if 'Key' in params else f"arn:aws:s3:::{params['Bucket']}"
        assert allows(doc, iam_action[op], arn), f"the Lambda policy does not allow {op} on {arn}"


def test_iam_cli(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'iam', *a],
                                    capture_output=True, text=True, timeout=60)
    r = run('lambda', '--function', 'dogbreeds', '--region', R, '--account', A, '--endpoint', 'dogbreeds')
    assert r.returncode == 0 and json.loads(r.stdout) == POLICIES['lambda proxy']
    r = run('lambda', '--trust')
    assert json.loads(r.stdout)['Statement'][0]['Principal'] == {'Service': 'lambda.amazonaws.com'}
    r = run('lambda', '--region', R, '--account', A)
    assert r.returncode == 2 and '--function' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run('root')
    assert r.returncode == 2 and 'choose one of' in r.stderr


def test_batch_policy_allows_the_calls_predict_on_sagemaker_makes(s3_server, monkeypatch):
    """`dogbreeds predict --on sagemaker --wait` run for real (SageMaker: moto; S3: SeaweedFS) while recording every AWS call:
    `batch_policy` allows each (by ARN, and iam:PassRole of the role the model is given), and `transform_policy` lets the job
    read what it must and write where its answers are gathered from."""
    import moto
    from botocore.client import BaseClient
    from dogbreeds.predict import transform_predict
    b, run = s3_server.bucket, f'iam-bt-{uuid.uuid4().hex[:8]}'
    c = s3_server.client()
    photos = sorted((Path(__file__).resolve().parent.parent / 'data/sample/val').rglob('*.JPEG'))[:3]
    for p in photos: c.put_object(Bucket=b, Key=f'{run}/in/{p.name}', Body=p.read_bytes())
    answer = dict(predictions=[dict(breed='beagle', probability=0.9)], dog=0.99, is_dog=True, model=dict(name='dogbreeds', version='v1'))
    c.put_object(Bucket=b, Key=f'{run}/results-transform/{photos[0].name}.out', Body=json.dumps(answer).encode())
    src, out, model = f's3://{b}/{run}/in/', f's3://{b}/{run}/results.csv', f's3://{b}/models/dogbreeds@production'
    calls, real = [], BaseClient._make_api_call
    def record(self, op, params):
        calls.append((self.meta.service_model.service_name, op, dict(params)))
        return real(self, op, params)
    monkeypatch.setattr(BaseClient, '_make_api_call', record)
    with moto.mock_aws(config={'core': {'mock_credentials': False, 'passthrough': {'services': ['s3']}}}):
        r = transform_predict(src, out, model, 'img', ROLE_ARN, instance_count=2, wait=True, k=1, region=R, endpoint_url=s3_server.endpoint)
    assert (r['items'], r['errors']) == (3, 2), r  # one answer gathered; two photos without one are rows with an error
    doc = iam.batch_policy(ROLE_ARN, src, out, R, A)
    sm = f'arn:aws:sagemaker:{R}:{A}'
    s3_action = {'GetObject': 's3:GetObject', 'HeadObject': 's3:GetObject', 'ListObjectsV2': 's3:ListBucket', 'PutObject': 's3:PutObject',
                 'CreateMultipartUpload': 's3:PutObject', 'UploadPart': 's3:PutObject', 'CompleteMultipartUpload': 's3:PutObject'}
    seen = set()
    for service, op, params in calls:
        seen.add(op)
        if service == 'sagemaker':
            arn = {'CreateModel': f"{sm}:model/{params.get('ModelName', '').lower()}",
                   'DeleteModel': f"{sm}:model/{params.get('ModelName', '').lower()}"}.get(op, f"{sm}:transform-job/{params.get('TransformJobName', '').lower()}")
            assert allows(doc, f'sagemaker:{op}', arn), f"batch_policy does not allow {op} on {arn}"
            if params.get('Tags'): assert allows(doc, 'sagemaker:AddTags', arn), f"{op} tags {arn}: AddTags not allowed"
            if op == 'CreateModel': assert allows(doc, 'iam:PassRole', params['ExecutionRoleArn'])
        else:
            assert service == 's3' and op in s3_action, f"an unexpected call: {service} {op}"
            arn = obj(params['Key'], params['Bucket']) if 'Key' in params else f"arn:aws:s3:::{params['Bucket']}"
            assert allows(doc, s3_action[op], arn), f"batch_policy does not allow {op} on {arn}"
            if op == 'ListObjectsV2': assert params['Prefix'].startswith(f'{run}/in'), params  # within the ListBucket condition
    assert {'CreateModel', 'CreateTransformJob', 'DescribeTransformJob', 'ListObjectsV2', 'GetObject'} <= seen, seen
    assert seen & {'PutObject', 'CompleteMultipartUpload'}, seen
    # the job's own role: the photos and the model in, the answers out (where gathering reads them), nothing else
    job = iam.transform_policy(src, out, model, R, A)
    assert allows(job, 's3:GetObject', obj(f'{run}/in/{photos[1].name}', b))
    assert allows(job, 's3:GetObject', obj('models/dogbreeds/aliases/production.json', b))
    assert allows(job, 's3:PutObject', obj(f'{run}/results-transform/{photos[0].name}.out', b))
    assert allows(doc, 's3:GetObject', obj(f'{run}/results-transform/{photos[0].name}.out', b))
    assert not allows(job, 's3:PutObject', obj(f'{run}/results.csv', b)) and not allows(job, 's3:PutObject', obj(f'{run}/in/x.jpg', b))
    assert not allows(doc, 'sagemaker:CreateEndpoint', f'{sm}:endpoint/dogbreeds-batch-x')
    assert not allows(doc, 'iam:PassRole', f'arn:aws:iam::{A}:role/admin')


def _lists(doc, bucket, prefix):
    "Whether `doc` allows listing `bucket` under `prefix`: an s3:ListBucket statement whose s3:prefix condition matches it."
    import fnmatch
    return any('s3:ListBucket' in s['Action'] and f'arn:aws:s3:::{bucket}' in s['Resource'] and
               any(fnmatch.fnmatchcase(prefix, pat) for pat in s['Condition']['StringLike']['s3:prefix'])
               for s in doc['Statement'])


def _passes(doc, role, service):
    "Whether `doc` allows iam:PassRole of `role`, to `service` only."
    return any(s['Action'] == ['iam:PassRole'] and s['Resource'] == [role] and
               s['Condition'] == {'StringEquals': {'iam:PassedToService': service}} for s in doc['Statement'])


def test_launcher_policy_allows_exactly_the_calls_a_launch_makes(s3_server, monkeypatch, capsys):
    """`dogbreeds retrain --on sagemaker --wait`, then `--schedule`, run for real (SageMaker, CloudWatch Logs and Scheduler:
    moto; S3: SeaweedFS) while recording every AWS call: `launcher_policy` allows each, by ARN, and no action besides."""
    import time, boto3, moto
    from botocore.client import BaseClient
    from dogbreeds import launch
    from dogbreeds.jobs import JOB_PREFIX, LOG_GROUP
    assert (iam.RETRAIN_PREFIX, iam.TRAINING_LOGS) == (JOB_PREFIX, LOG_GROUP)
    b, run = s3_server.bucket, f'iam-launch-{uuid.uuid4().hex[:8]}'
    photo = sorted((Path(__file__).resolve().parent.parent / 'data/sample/train').rglob('*.JPEG'))[0]
    s3_server.client().put_object(Bucket=b, Key=f'{run}/dogs/{photo.parent.name}/{photo.name}', Body=photo.read_bytes())
    data, registry = f's3://{b}/{run}/dogs', f's3://{b}/{run}/models'
    job, scheduler_role = f'{JOB_PREFIX}-{run}', f'arn:aws:iam::{A}:role/dogbreeds-scheduler'
    monkeypatch.setattr(launch, 'job_name', lambda: job)  # known here, so that its log stream can be written first
    calls, real = [], BaseClient._make_api_call
    def record(self, op, params):
        calls.append((self.meta.service_model.service_name, op, dict(params)))
        return real(self, op, params)
    with moto.mock_aws(config={'core': {'mock_credentials': False, 'passthrough': {'services': ['s3']}}}):
        logs = boto3.client('logs', region_name=R)
        logs.create_log_group(logGroupName=LOG_GROUP)
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f'{job}/algo-1-1764410000')
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=f'{job}/algo-1-1764410000',
                            logEvents=[dict(timestamp=int(time.time() * 1000), message='epoch 1 of the job')])
        monkeypatch.setattr(BaseClient, '_make_api_call', record)
        kw = dict(registry=registry, role_arn=ROLE_ARN, region=R, endpoint_url=s3_server.endpoint,
                  session=boto3.session.Session(region_name=R))
        launch.launch_sagemaker(dict(data=data, epochs=1), wait=True, poll=0.01, **kw)
        launch.launch_sagemaker(dict(data=data, epochs=1), schedule='rate(7 days)', scheduler_role_arn=scheduler_role,
                                quiet=True, **kw)
    assert 'epoch 1 of the job' in capsys.readouterr().out  # its log line, shown as it came
    doc = iam.launcher_policy(ROLE_ARN, data, registry, R, A, scheduler_role_arn=scheduler_role)
    sm, g = f'arn:aws:sagemaker:{R}:{A}', f'arn:aws:logs:{R}:{A}:log-group:{LOG_GROUP}'
    s3_action = {'ListObjectsV2': 's3:ListBucket', 'PutObject': 's3:PutObject', 'CreateMultipartUpload': 's3:PutObject',
                 'UploadPart': 's3:PutObject', 'CompleteMultipartUpload': 's3:PutObject'}
    needed = set()
    for service, op, p in calls:
        if service == 's3':
            assert op in s3_action, f"an unexpected call: s3 {op}"
            if op == 'ListObjectsV2': assert _lists(doc, p['Bucket'], p['Prefix']), f"not allowed to list {p['Prefix']}"
            uses = [(s3_action[op], obj(p['Key'], p['Bucket']) if 'Key' in p else f"arn:aws:s3:::{p['Bucket']}")]
        elif service == 'sagemaker':
            arn = f"{sm}:training-job/{p['TrainingJobName'].lower()}"
            uses = [(f'sagemaker:{op}', arn)] + ([('sagemaker:AddTags', arn)] if p.get('Tags') else [])
            if 'RoleArn' in p:
                assert _passes(doc, p['RoleArn'], 'sagemaker.amazonaws.com'); uses.append(('iam:PassRole', p['RoleArn']))
        elif service == 'logs':
            uses = [(f'logs:{op}', f"{g}:log-stream:{p['logStreamName']}" if 'logStreamName' in p else f'{g}:*')]
        else:
            assert (service, op) == ('scheduler', 'CreateSchedule'), f"an unexpected call: {service} {op}"
            assert _passes(doc, p['Target']['RoleArn'], 'scheduler.amazonaws.com')
            uses = [('scheduler:CreateSchedule', f"arn:aws:scheduler:{R}:{A}:schedule/default/{p['Name']}"),
                    ('iam:PassRole', p['Target']['RoleArn'])]
        for action, arn in uses:
            assert allows(doc, action, arn), f"launcher_policy does not allow {action} on {arn}"
            needed.add(action)
    assert {'logs:DescribeLogStreams', 'logs:GetLogEvents', 'sagemaker:DescribeTrainingJob'} <= needed, needed
    assert {a for s in doc['Statement'] for a in s['Action']} == needed  # each action it allows, a call needs
    assert not allows(doc, 'logs:GetLogEvents', f'{g}:log-stream:someone-elses-job/algo-1')
    assert not allows(doc, 's3:PutObject', obj(f'{run}/models/dogbreeds/aliases/production.json', b))  # the job pushes


def test_training_role_logs_to_its_mlflow_tracking_server():
    "With a tracking ARN the job may log runs to that SageMaker MLflow server (the calls dogbreeds.tracking makes) and write its artifacts."
    server = f'arn:aws:sagemaker:{R}:{A}:mlflow-tracking-server/dogbreeds'
    tr, plain = POLICIES['training tracked'], POLICIES['training']
    for a in ('GetExperimentByName', 'CreateExperiment', 'CreateRun', 'GetRun', 'LogBatch', 'UpdateRun'):
        assert allows(tr, f'sagemaker-mlflow:{a}', server) and not allows(plain, f'sagemaker-mlflow:{a}', server)
    assert not allows(tr, 'sagemaker-mlflow:LogBatch', f'arn:aws:sagemaker:{R}:{A}:mlflow-tracking-server/other')
    assert not allows(tr, 'sagemaker-mlflow:DeleteRun', server) and not allows(tr, 'sagemaker-mlflow:DeleteExperiment', server)
    assert allows(tr, 's3:PutObject', obj('artifacts/1/abc/artifacts/metrics.json', 'acme-mlflow'))
    assert not allows(tr, 's3:PutObject', obj('other/x', 'acme-mlflow'))
    with pytest.raises(iam.PolicyError, match='not a SageMaker MLflow tracking server ARN'):
        iam.training_policy('s3://b/d', 's3://b/m', R, A, tracking_arn=f'arn:aws:s3:::bucket')
    with pytest.raises(iam.PolicyError, match='goes with --tracking-arn'):
        iam.training_policy('s3://b/d', 's3://b/m', R, A, tracking_artifacts='s3://acme-mlflow/artifacts')
