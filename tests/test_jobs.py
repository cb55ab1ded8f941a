"""SageMaker training jobs: the training image's address in every region AWS lists (and a clear refusal elsewhere), and
`--wait` following a job through boto3's waiter while showing its CloudWatch log lines as they come (moto's SageMaker
and CloudWatch Logs: there is no local SageMaker)."""
import json, time

import pytest

from dogbreeds.core import DogbreedsError, ParameterError
from dogbreeds.jobs import LOG_GROUP, JobLogs, default_image_uri, dlc_images, training_job_request, wait_for_job
from dogbreeds.launch import launch_sagemaker

ROLE = 'arn:aws:iam::123456789012:role/dogbreeds-retrain'
MOST = '763104351884'  # the account of AWS's Deep Learning Containers in most regions


def test_the_address_table_is_awss_with_its_source_and_date():
    t = dlc_images()
    assert t['version'] == '2.8.0' and t['repository'] == 'pytorch-training'
    assert 'image_uri_config/pytorch.json' in t['source']
    assert time.strptime(t['date'], '%Y-%m-%d')
    regs = t['registries']
    assert regs['us-east-1'] == regs['eu-west-1'] == MOST
    elsewhere = {r for r, a in regs.items() if a != MOST}
    assert {'af-south-1', 'ap-east-1', 'me-south-1', 'eu-south-1', 'il-central-1', 'cn-north-1', 'cn-northwest-1',
            'us-gov-west-1', 'us-gov-east-1'} <= elsewhere and len(elsewhere) >= 20
    assert all(a.isdigit() and len(a) == 12 for a in regs.values())


def test_image_address_in_every_region_listed():
    import botocore.session
    partitions = {r: botocore.session.get_session().get_partition_for_region(r) for r in dlc_images()['registries']}
    for region, account in dlc_images()['registries'].items():
        gpu, cpu = default_image_uri(region), default_image_uri(region, 'ml.m5.xlarge')
        domain = 'amazonaws.com.cn' if partitions[region] == 'aws-cn' else 'amazonaws.com'
        repo = f"{account}.dkr.ecr.{region}.{domain}/pytorch-training"
        assert gpu == f"{repo}:2.8.0-gpu-py312-cu129-ubuntu22.04-sagemaker"
        assert cpu == f"{repo}:2.8.0-cpu-py312-ubuntu22.04-sagemaker"


def test_unlisted_region_is_refused_naming_image_uri(aws):
    with pytest.raises(ParameterError, match=r"no PyTorch 2\.8\.0 training image for region 'xx-nowhere-1'.*image-uri"):
        default_image_uri('xx-nowhere-1')
    args = dict(registry='s3://b/models', role_arn=ROLE, region='xx-nowhere-1', dry_run=True, quiet=True)
    with pytest.raises(ParameterError, match='--image-uri'): launch_sagemaker(dict(data='s3://b/dogs'), **args)
    mine = '123456789012.dkr.ecr.xx-nowhere-1.amazonaws.com/my-training:1'
    req = launch_sagemaker(dict(data='s3://b/dogs'), image_uri=mine, **args)
    assert req['AlgorithmSpecification']['TrainingImage'] == mine


def test_launch_uses_the_regions_registry(aws, capsys):
    from dogbreeds.cli import main
    main(['retrain', '--on', 'sagemaker', '-p', 'data', 's3://b/dogs', '--registry', 's3://b/models', '--role-arn', ROLE,
          '--region', 'me-south-1', '--dry-run'])
    image = json.loads(capsys.readouterr().out)['AlgorithmSpecification']['TrainingImage']
    account = dlc_images()['registries']['me-south-1']
    assert image.startswith(f"{account}.dkr.ecr.me-south-1.amazonaws.com/pytorch-training:") and account != MOST


# --- following a job: boto3's waiter, CloudWatch log lines as they come

def moto_job(name):
    from moto.sagemaker.models import sagemaker_backends
    return sagemaker_backends['123456789012']['us-east-1'].training_jobs[name]


@pytest.fixture
def job(aws):
    "A training job in moto's SageMaker, still in progress, and the client its status can be driven through."
    sm = aws.client('sagemaker')
    name = 'dogbreeds-retrain-20261207-101500-abcd'
    image = default_image_uri('us-east-1')
    sm.create_training_job(**training_job_request(name, dict(epochs=1), 's3://b/dogs', 's3://b/models', ROLE, image,
                                                  's3://b/src.tar.gz', 's3://b/out', 'us-east-1'))
    j = moto_job(name)
    j.training_job_status, j.secondary_status = 'InProgress', 'Training'
    return sm, aws.client('logs'), name


def put(logs, stream, *lines):
    try: logs.create_log_group(logGroupName=LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException: pass
    try: logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException: pass
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                        logEvents=[dict(timestamp=now + i, message=m) for i, m in enumerate(lines)])


def script(sm, steps):
    "Run `steps[i]()` after the i-th DescribeTrainingJob the waiter makes: the job moves on while it is followed."
    calls = []
    def after(**kw):
        calls.append(1)
        if len(calls) <= len(steps): steps[len(calls) - 1]()
    sm.meta.events.register('after-call.sagemaker.DescribeTrainingJob', after)
    return calls


def test_wait_shows_log_lines_as_they_come(job, capsys):
    sm, logs, name = job
    s1 = f"{name}/algo-1-1765102500"
    def finish(): moto_job(name).training_job_status = moto_job(name).secondary_status = 'Completed'
    calls = script(sm, [lambda: None,                                               # first look: no log group yet
                        lambda: put(logs, s1, 'epoch 1 loss 0.9', 'epoch 1 accuracy 0.71'),
                        lambda: put(logs, s1, 'epoch 2 loss 0.5'),
                        lambda: (put(logs, s1, 'pushed dogbreeds sha256:abc'), finish())])
    d = wait_for_job(sm, name, poll=0.01, logs=logs)
    out = capsys.readouterr().out.splitlines()
    assert d['TrainingJobStatus'] == 'Completed' and len(calls) >= 4
    assert out == [f"{name}: InProgress (Training)", 'epoch 1 loss 0.9', 'epoch 1 accuracy 0.71', 'epoch 2 loss 0.5',
                   'pushed dogbreeds sha256:abc', f"{name}: Completed (Completed)"]  # each line once, as it came


def test_wait_tells_instances_apart_and_reports_a_failure(job, capsys):
    sm, logs, name = job
    def fail():
        j = moto_job(name)
        j.training_job_status = j.secondary_status = 'Failed'
        j.failure_reason = 'AlgorithmError: out of memory'
    script(sm, [lambda: (put(logs, f"{name}/algo-1-1", 'node 0 of 2'), put(logs, f"{name}/algo-2-1", 'node 1 of 2')),
                lambda: (put(logs, f"{name}/algo-2-1", 'CUDA out of memory'), fail())])
    with pytest.raises(DogbreedsError, match=f"training job {name} failed: AlgorithmError: out of memory"):
        wait_for_job(sm, name, poll=0.01, logs=logs)
    out = capsys.readouterr().out
    assert out.index('[algo-1-1] node 0 of 2\n[algo-2-1] node 1 of 2\n') < out.index('[algo-2-1] CUDA out of memory\n')
    assert out.endswith(f"{name}: Failed (Failed)\n") and out.count('CUDA') == 1


def test_wait_quiet_and_timeout_and_unknown_job(job, capsys):
    sm, logs, name = job
    put(logs, f"{name}/algo-1-1", 'a line')
    with pytest.raises(DogbreedsError, match=f"still InProgress after 0 s: it goes on running"):
        wait_for_job(sm, name, poll=0.01, timeout=0.001, logs=logs)
    assert 'a line' in capsys.readouterr().out
    moto_job(name).training_job_status = 'Stopped'
    with pytest.raises(DogbreedsError, match='stopped'): wait_for_job(sm, name, poll=0.01, quiet=True, logs=logs)
    assert capsys.readouterr().out == ''                       # quiet: neither status nor log lines
    with pytest.raises(DogbreedsError, match='Could not find training job'): wait_for_job(sm, 'no-such-job', poll=0.01)
    assert JobLogs(logs, 'no-such-job').lines() == []
