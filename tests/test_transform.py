"""SageMaker Batch Transform (`dogbreeds predict --on sagemaker`): the job request on moto and against botocore's service
model, a failed job's reason, the container's contract on the real local server (`GET /execution-parameters`,
one raw photo per request), and gathering `.out` objects from SeaweedFS into the table a local run writes."""
import json, urllib.request, uuid
from pathlib import Path

import pytest

from conftest import SAMPLE
from dogbreeds.results import read_results, result_columns
from dogbreeds.predict import batch_predict, gather_transform, transform_prefix
from dogbreeds.testing import ServeProcess

ROLE = 'arn:aws:iam::123456789012:role/dogbreeds-sagemaker'
IMAGE = '123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreeds:1'



@pytest.fixture(scope='module')
def server(toy_dir):
    with ServeProcess(toy_dir, workers=2) as s: yield s


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for k, v in dict(AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing', AWS_DEFAULT_REGION='us-east-1',
                     AWS_CONFIG_FILE=str(tmp_path / 'none'), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / 'none')).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv('AWS_ENDPOINT_URL', raising=False); monkeypatch.delenv('AWS_PROFILE', raising=False)


def test_job_request_on_moto_and_botocore_model(aws_env):
    import boto3, botocore.session, botocore.validate
    from moto import mock_aws
    from dogbreeds.transform import start_transform
    with mock_aws():
        job = start_transform('s3://photos/in/', 's3://photos/results-transform/', IMAGE, ROLE, 's3://reg/models/dogbreeds@production',
                              instance_count=3, instance_type='ml.c6i.xlarge', workers=2)
        req = job['request']
        report = botocore.validate.ParamValidator().validate(
            req, botocore.session.get_session().get_service_model('sagemaker').operation_model('CreateTransformJob').input_shape)
        assert not report.has_errors(), report.generate_report()
        sm = boto3.client('sagemaker', region_name='us-east-1')
        d = sm.describe_transform_job(TransformJobName=job['job'])
        assert d['TransformInput']['SplitType'] == 'None' and d['TransformInput']['ContentType'] == 'application/x-image'
        assert (d['MaxPayloadInMB'], d['MaxConcurrentTransforms'], d['BatchStrategy']) == (6, 2, 'SingleRecord')
        assert d['TransformResources'] == {'InstanceType': 'ml.c6i.xlarge', 'InstanceCount': 3}
        assert d['TransformOutput']['S3OutputPath'] == 's3://photos/results-transform/'
        m = sm.describe_model(ModelName=d['ModelName'])
        assert m['PrimaryContainer']['Image'] == IMAGE
        assert m['PrimaryContainer']['Environment'] == {'MODEL_URI': 's3://reg/models/dogbreeds@production', 'SAGEMAKER_MODEL_SERVER_WORKERS': '2'}


def test_failed_job_reports_sagemakers_reason(aws_env, monkeypatch):
    import boto3
    from botocore.stub import Stubber
    from dogbreeds import transform
    sm = boto3.client('sagemaker', region_name='us-east-1')
    base = dict(TransformJobName='j', TransformJobArn='arn:aws:sagemaker:us-east-1:123456789012:transform-job/j', ModelName='m',
                TransformInput=dict(DataSource=dict(S3DataSource=dict(S3DataType='S3Prefix', S3Uri='s3://b/in/'))),
                TransformResources=dict(InstanceType='ml.c6i.xlarge', InstanceCount=1), CreationTime='2026-11-29T00:00:00Z')
    reason = 'ClientError: See job logs for more information'
    with Stubber(sm) as st:  # the stubbed answers are checked against botocore's service model too
        st.add_response('describe_transform_job', dict(base, TransformJobStatus='InProgress'))
        st.add_response('describe_transform_job', dict(base, TransformJobStatus='Failed', FailureReason=reason))
        monkeypatch.setattr(transform, 'aws_client', lambda *a, **k: sm)
        said = []
        with pytest.raises(transform.TransformError, match=f'transform job j failed: {reason}'):
            transform.wait_transform('j', delay=0, say=said.append)
    assert said == ['j: InProgress', 'j: Failed']


@pytest.mark.parametrize('answers, max_attempts, said, error', [
    (['InProgress', 'Stopped', 'Stopped'], 5, ['j: InProgress', 'j: Stopped'], 'transform job j stopped: stopped by ci'),
    (['InProgress', 'InProgress'], 1, ['j: InProgress'], 'transform job j is still InProgress after 1 looks 0 s apart'),
])
def test_wait_uses_boto3s_waiter_stopped_or_out_of_attempts(aws_env, monkeypatch, answers, max_attempts, said, error):
    "Stopped ends boto3's waiter as a success: still an error, with its reason; a waiter out of attempts says so."
    import boto3
    from botocore.stub import Stubber
    from dogbreeds import transform
    sm = boto3.client('sagemaker', region_name='us-east-1')
    base = dict(TransformJobName='j', TransformJobArn='arn:aws:sagemaker:us-east-1:123456789012:transform-job/j', ModelName='m',
                TransformInput=dict(DataSource=dict(S3DataSource=dict(S3DataType='S3Prefix', S3Uri='s3://b/in/'))),
                TransformResources=dict(InstanceType='ml.c6i.xlarge', InstanceCount=1), CreationTime='2026-11-29T00:00:00Z')
    waits = []
    real = sm.get_waiter
    monkeypatch.setattr(sm, 'get_waiter', lambda name: waits.append(name) or real(name))
    with Stubber(sm) as st:
        for a in answers:
            st.add_response('describe_transform_job', dict(base, TransformJobStatus=a,
                                                           **({'FailureReason': 'stopped by ci'} if a == 'Stopped' else {})))
        monkeypatch.setattr(transform, 'aws_client', lambda *a, **k: sm)
        got = []
        with pytest.raises(transform.TransformError, match=error):
            transform.wait_transform('j', delay=0, max_attempts=max_attempts, say=got.append)
        st.assert_no_pending_responses()
    assert got == said and waits == ['transform_job_completed_or_stopped']


def test_wait_for_a_job_on_moto(aws_env):
    "moto's SageMaker answers the waiter's DescribeTransformJob: its jobs complete at once."
    from moto import mock_aws
    from dogbreeds.transform import start_transform, wait_transform
    with mock_aws():
        job = start_transform('s3://photos/in/', 's3://photos/out/', IMAGE, ROLE, 's3://reg/models/dogbreeds@production')
        said = []
        d = wait_transform(job['job'], delay=0, max_attempts=2, say=said.append)
    assert d['TransformJobStatus'] == 'Completed' and d['TransformJobName'] == job['job']
    assert said == [f"{job['job']}: Completed"]


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r: return r.status, json.loads(r.read())


def _post(url, body, ctype='application/x-image'):
    req = urllib.request.Request(url, data=body, headers={'content-type': ctype})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())


def test_container_contract(server):
    assert _get(server.url + '/execution-parameters') == (200, dict(MaxConcurrentTransforms=2, BatchStrategy='SINGLE_RECORD', MaxPayloadInMB=6))
    photo = sorted(SAMPLE.rglob('*.JPEG'))[0].read_bytes()
    status, a = _post(server.url + '/invocations', photo)  # what Batch Transform sends: the object's bytes, as application/x-image
    assert status == 200 and len(a['predictions']) >= 3 and a['model']['name'] == 'toy'
    assert _post(server.url + '/invocations', b'not a photo')[0] == 415  # refused: Batch Transform writes no .out for it


def test_gather_out_files_into_the_local_table(server, s3_server, toy_dir, tmp_path):
    c, bucket = s3_server.client(), s3_server.bucket
    run = f'bt-{uuid.uuid4().hex[:8]}'
    photos = sorted(SAMPLE.rglob('*.JPEG'))[::40][:6]
    local = tmp_path / 'photos'
    for i, p in enumerate(photos):
        key = f'{i % 2}/{p.name}'
        c.put_object(Bucket=bucket, Key=f'{run}/in/{key}', Body=p.read_bytes())
        (local / key).parent.mkdir(parents=True, exist_ok=True); (local / key).write_bytes(p.read_bytes())
    c.put_object(Bucket=bucket, Key=f'{run}/in/bad.jpg', Body=b'not a photo')
    out_uri = f's3://{bucket}/{run}/results.csv'
    prefix = transform_prefix(out_uri)
    assert prefix == f's3://{bucket}/{run}/results-transform/'
    # the .out objects as Batch Transform writes them: the container's answer to each photo, at its key under the input prefix
    for o in c.list_objects_v2(Bucket=bucket, Prefix=f'{run}/in/')['Contents']:
        status, a = _post(server.url + '/invocations', c.get_object(Bucket=bucket, Key=o['Key'])['Body'].read())
        if status == 200:
            c.put_object(Bucket=bucket, Key=f"{run}/results-transform/{o['Key'][len(run) + 4:]}.out", Body=json.dumps(a).encode())
    for fmt in ('csv', 'parquet'):
        out = tmp_path / f'gathered.{fmt}'
        g = gather_transform(f's3://{bucket}/{run}/in/', prefix, out, k=3, endpoint_url=s3_server.endpoint,
                             failure='transform job j failed: ClientError')
        assert (g['items'], g['errors'], g['k']) == (7, 1, 3)
        rows = read_results(out)
        assert list(rows[0]) == result_columns(3)
        bad = [r for r in rows if r['source'].endswith('bad.jpg')]
        assert len(bad) == 1 and bad[0]['error'].startswith('TransformError: no answer') and 'ClientError' in bad[0]['error']
        here = tmp_path / f'local.{fmt}'
        batch_predict(local, here, str(toy_dir), k=3, progress=False)
        mine = {r['source'].split(f'{run}/in/')[1]: r for r in rows if not r['error']}
        theirs = {str(Path(r['source']).relative_to(local)): r for r in read_results(here)}
        assert mine.keys() == theirs.keys()
        for key, r in mine.items():
            t = theirs[key]
            assert [r[c] for c in ('breed', 'breed_2', 'breed_3', 'is_dog', 'model')] == [t[c] for c in ('breed', 'breed_2', 'breed_3', 'is_dog', 'model')]
            for col in ('probability', 'probability_2', 'probability_3', 'dog'):
                assert r[col] == pytest.approx(t[col], abs=2e-5), (key, col)


def test_cli_starts_the_job_and_refuses_bad_input(aws_env, capsys):
    import boto3
    from moto import mock_aws
    from dogbreeds.cli import main
    args = ['predict', 's3://photos/in/', '--out', 's3://photos/results.parquet', '--on', 'sagemaker', '--model',
            's3://reg/models/dogbreeds@production', '--image-uri', IMAGE, '--role-arn', ROLE, '--instance-count', '2', '--container-workers', '4']
    with mock_aws():
        main(args)
        out = capsys.readouterr().out
        assert 'answers under s3://photos/results-transform/' in out and '--wait' in out
        jobs = boto3.client('sagemaker', region_name='us-east-1').list_transform_jobs()['TransformJobSummaries']
        assert len(jobs) == 1 and out.startswith(f"transform job {jobs[0]['TransformJobName']}")
    for bad, msg in ((['--on', 'lambda'], "--on 'lambda'"), (['--out', 'results.csv'], 'writes to S3'),
                     (['--model', 'exported_models/x/model'], 'registry URI'), (['--instance-count', '0'], 'instance_count')):
        a = list(args)
        i = a.index(bad[0]); a[i + 1] = bad[1]
        with pytest.raises(SystemExit): main(a)
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and msg in err, err
