"""Batch retraining (`dogbreeds retrain`): the papermill pipeline end to end against a real S3 registry (SeaweedFS),
one promotion and one refused promotion; a failing notebook cell; bad input refused before any work; and the
SageMaker training job, created against moto's SageMaker API (S3 stays the real SeaweedFS server)."""
import json, os, subprocess, sys, tarfile, uuid
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE
from dogbreeds.core import DataError, ParameterError, read_json
from dogbreeds.registry import Registry
from dogbreeds.jobs import ENTRY
from dogbreeds.launch import launch_sagemaker
from dogbreeds.retrain import RetrainFailed, retrain
from dogbreeds.steps import check_retrain_params

# as cheap as training gets: 64-pixel images, one frozen epoch, a fixed learning rate (no lr_find)
TINY = dict(size=64, epochs=0, freeze_epochs=1, lr=2e-3, bs=64)


def cli(*args, env=None, timeout=600):
    "Run `dogbreeds ARGS` in a fresh interpreter with this checkout's code."
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'MPLBACKEND': 'Agg', **(env or {})}
    return subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


# ---------------------------------------------------------------------------------------------------------
# Bad input: one clear line, before any work starts (no run folder is made)

@pytest.mark.parametrize('params, error, message', [
    (dict(epochs='three'), ParameterError, "epochs must be a whole number"),
    (dict(tta=1), ParameterError, "tta must be True or False"),
    (dict(data='/no/such/dogs'), DataError, "data path '/no/such/dogs' not found"),
    (dict(out_dir='/tmp'), ParameterError, "out_dir is set by retrain"),
    (dict(epochs=1), ParameterError, "no registry to push to"),
])
def test_bad_input_refused_before_work(tmp_path, monkeypatch, params, error, message):
    monkeypatch.delenv('DOGBREEDS_REGISTRY', raising=False)
    with pytest.raises(error) as e: retrain(params, runs_dir=tmp_path/'runs', quiet=True)
    assert message in str(e.value) and '\n' not in str(e.value)
    assert not (tmp_path/'runs').exists()


def test_cli_bad_input_one_line(tmp_path):
    r = cli('retrain', '-p', 'epoch', '3', '--runs-dir', str(tmp_path/'runs'))
    assert r.returncode == 2 and r.stdout == '', r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown parameter 'epoch' (did you mean 'epochs'?)" in lines[0], r.stderr
    assert not (tmp_path/'runs').exists()


@pytest.mark.parametrize('on, message', [
    ([], "no registry to push to: pass --registry or set DOGBREEDS_REGISTRY"),
    (['--on', 'sagemaker', '-p', 'data', 's3://b/dogs', '--role-arn', 'arn:aws:iam::123456789012:role/r'],
     "a SageMaker job pushes to a registry in S3"),
])
def test_cli_no_registry_is_bad_usage(tmp_path, on, message):
    "No registry configured (neither --registry nor DOGBREEDS_REGISTRY): exit 2 with one line, like other usage errors."
    r = cli('retrain', *on, env={'DOGBREEDS_REGISTRY': '', 'AWS_EC2_METADATA_DISABLED': 'true'}, timeout=120)
    assert r.returncode == 2 and r.stdout == '', r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('dogbreeds: error: ') and message in lines[0], r.stderr


def test_bad_params_file(tmp_path, monkeypatch):
    f = tmp_path/'p.yaml'
    f.write_text('epochs: 1\nsize: [64\n')
    with pytest.raises(ParameterError, match='is not valid YAML'): retrain(params_file=f, push=False, runs_dir=tmp_path)
    f.write_text('- epochs\n')
    with pytest.raises(ParameterError, match='must map parameter names to values'): retrain(params_file=f, push=False, runs_dir=tmp_path)
    f.write_text('epochs: 1\nlearning_rate: 1e-3\n')
    with pytest.raises(ParameterError, match="unknown parameter 'learning_rate'"): retrain(params_file=f, push=False, runs_dir=tmp_path)
    from dogbreeds.core import DogbreedsError
    from dogbreeds.config import read_params_file
    monkeypatch.setitem(sys.modules, 'yaml', None)  # PyYAML not installed: the message names the extra that brings it
    with pytest.raises(DogbreedsError, match=r"PyYAML: pip install 'dogbreeds\[aws\]'"): read_params_file(f)
    with pytest.raises(DataError, match='--on sagemaker'): check_retrain_params(dict(data='s3://b/dogs'))
    assert list(tmp_path.iterdir()) == [f]


# ---------------------------------------------------------------------------------------------------------
# A failing cell: the run is marked failed, naming the notebook, the cell and the error; nothing is pushed

def tiny_pipeline(folder, fail_in_train: bool) -> Path:
    """Three small notebooks standing in for the pipeline (same parameters cells, no training), so the failure path
    runs through papermill and a real kernel in seconds; the real notebooks run in the end-to-end test below."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    folder.mkdir()
    train_params = "data = 'sample'\nsize = 128\nepochs = 1\nfreeze_epochs = 1\nlr = None\nbs = 32\nseed = 42\narch = 'mobilenet_v2'\n" \
                   "out_dir = None\nrun_name = None\ntta = False\nexport = True"
    body = ("from dogbreeds.core import DataError\nprint('loading', data)\n" +
            ("raise DataError(f'only one breed under {data}')" if fail_in_train else "print('trained')"))
    for nb, params, code in [('27_train.ipynb', train_params, body), ('22_evaluate.ipynb', "run_dir = None\ntta = False", "print(run_dir)"),
                             ('23_export.ipynb', "run_dir = None\npush = True\nname = 'dogbreeds'", "print(run_dir)")]:
        cells = [new_code_cell('import os'), new_code_cell(params, metadata={'tags': ['parameters']}), new_code_cell(code)]
        nbformat.write(new_notebook(cells=cells, metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}),
                       str(folder/nb))
    return folder


def test_failing_cell_marks_run_failed(tmp_path, monkeypatch):
    import dogbreeds.retrain as rt
    monkeypatch.setattr(rt, 'notebooks_dir', lambda: tiny_pipeline(tmp_path/'nbs', fail_in_train=True))
    reg_dir = tmp_path/'registry'
    with pytest.raises(RetrainFailed) as e:
        retrain(dict(TINY, data=str(SAMPLE)), registry=str(reg_dir), runs_dir=tmp_path/'runs', run_id='bad', quiet=True)
    msg = str(e.value)
    # cell 5 of the executed notebook: papermill adds an error banner and the injected parameters before it
    assert msg.startswith("run bad failed in 27_train.ipynb, cell 5 [4] `from dogbreeds.core import DataError`: "
                          f"DataError: only one breed under {SAMPLE}; nothing was pushed or promoted"), msg
    run = tmp_path/'runs'/'bad'
    st = read_json(run/'status.json')
    assert st['state'] == 'failed' and st['failed_step'] == 'train' and st['error']['ename'] == 'DataError'
    nb = json.loads((run/'27_train.ipynb').read_text())  # the executed notebook keeps the outputs and the error, in that cell
    outs = nb['cells'][st['error']['cell']]['outputs']
    assert any(o['output_type'] == 'error' and o['ename'] == 'DataError' for o in outs)
    assert f'loading {SAMPLE}' in (run/'retrain.log').read_text()  # what the notebook printed is in the log
    assert [s['state'] for s in st['steps']] == ['failed', 'pending', 'pending']
    assert not (run/'22_evaluate.ipynb').exists() and not (run/'decision.json').exists()
    assert Registry(str(reg_dir), progress=False).versions('dogbreeds') == []


# ---------------------------------------------------------------------------------------------------------
# End to end against SeaweedFS: the first run is promoted (no production model yet); the second, with a margin
# no model can clear, is pushed but refused promotion. Both decisions are in the run folders and the audit log.

@pytest.mark.slow
def test_retrain_end_to_end_promotion_and_refusal(s3_server, first_retrain):
    # the first run (conftest's `first_retrain`, its MLflow run checked in test_tracking.py): `dogbreeds retrain -f
    # params.yaml -p bs 16` on four breeds, ten real photos each (32 to train on, 8 to compare on), into an empty registry
    r, registry, runs, data = first_retrain.r, first_retrain.registry, first_retrain.runs, first_retrain.data
    assert r.returncode == 0, r.stdout + r.stderr
    assert '[1/3] 27_train.ipynb' in r.stdout and '[3/3] 23_export.ipynb ok' in r.stdout and 'promoted to dogbreeds@production' in r.stdout
    first = runs/'first'
    st = read_json(first/'status.json')
    assert st['state'] == 'ok' and st['decision']['promoted'] and st['decision']['champion'] is None
    assert st['params'] == dict(data=str(data), size=64, epochs=0, freeze_epochs=1, lr=2e-3, bs=16)
    for nb in ('27_train.ipynb', '22_evaluate.ipynb', '23_export.ipynb'):  # executed, with their outputs and plots
        cells = json.loads((first/nb).read_text())['cells']
        assert any(c.get('outputs') for c in cells if c['cell_type'] == 'code'), nb
    assert any('image/png' in o.get('data', {}) for c in json.loads((first/'22_evaluate.ipynb').read_text())['cells']
               for o in c.get('outputs', []))
    for f in ('params.yaml', 'retrain.log', 'decision.json', 'train/metrics.json', 'train/model/model.onnx', 'train/model/manifest.json'):
        assert (first/f).is_file(), f
    reg = Registry(registry, endpoint_url=s3_server.endpoint, progress=False)
    v1 = st['decision']['version']
    assert reg.resolve('dogbreeds', 'production') == v1 and st['model_uri'] == f"{registry}/dogbreeds@{v1}"

    # the challenger: the fine-tune recipe through the same notebooks (its export is the cheaper one: one network)
    res = retrain(dict(TINY, data=str(data), bs=16, seed=7, recipe='fine-tune', arch='mobilenet_v2'), registry=registry,
                  runs_dir=runs, run_id='second', margin=0.5, endpoint_url=s3_server.endpoint, quiet=True)
    d = res.decision
    assert res.ok and not d['promoted'] and d['champion_version'] == v1
    assert 'less than the margin 0.5' in d['reason'] or 'not better' in d['reason'], d['reason']
    assert d['champion'] is not None and d['challenger'] is not None
    assert reg.resolve('dogbreeds', 'production') == v1  # production unchanged
    assert d['version'] in reg.versions('dogbreeds') and d['version'] != v1  # but the new model is in the registry
    dec = read_json(runs/'second'/'decision.json')
    assert dec['figures']['champion']['n_valid'] == dec['figures']['challenger']['n_valid'] > 0
    log = [e for e in reg.log('dogbreeds') if e['action'] == 'decision']
    assert [(e['run'], e['promoted']) for e in log] == [('first', True), ('second', False)]
    assert log[1]['champion'] == d['champion'] and log[1]['challenger'] == d['challenger'] and log[1]['margin'] == 0.5
    assert log[1]['reason'] and log[1]['time'] and log[1]['previous'] == v1


# ---------------------------------------------------------------------------------------------------------
# SageMaker: the training job is created with the right image, instance type, parameters and S3 paths.
# SageMaker is moto's; S3 (data, registry, source bundle) is the real SeaweedFS server, passed through.

def test_sagemaker_job_created(s3_server):
    import boto3, moto
    prefix = f"sm-{uuid.uuid4().hex[:8]}"
    s3 = s3_server.client()
    for f in sorted((SAMPLE/'train').rglob('*.JPEG'))[:3]:
        s3.upload_file(str(f), s3_server.bucket, f"{prefix}/dogs/{f.relative_to(SAMPLE)}")
    registry, data = f"s3://{s3_server.bucket}/{prefix}/models", f"s3://{s3_server.bucket}/{prefix}/dogs"
    role = 'arn:aws:iam::123456789012:role/dogbreeds-retrain'
    with moto.mock_aws(config={'core': {'mock_credentials': False, 'passthrough': {'services': ['s3']}}}):
        session = boto3.session.Session(region_name='eu-west-1')
        out = launch_sagemaker(dict(data=data, arch='resnet34', epochs=5, lr=1e-3), registry=registry, role_arn=role,
                               instance_type='ml.g4dn.xlarge', endpoint_url=s3_server.endpoint, margin=0.01, wait=True,
                               poll=0.01, quiet=True, session=session)
        name = out['TrainingJobName']
        job = session.client('sagemaker').describe_training_job(TrainingJobName=name)
    assert job['TrainingJobStatus'] == 'Completed' and out['description']['TrainingJobName'] == name
    assert job['AlgorithmSpecification']['TrainingImage'] == (
        '763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.8.0-gpu-py312-cu129-ubuntu22.04-sagemaker')
    assert job['ResourceConfig']['InstanceType'] == 'ml.g4dn.xlarge' and job['RoleArn'] == role
    hp = job['HyperParameters']
    assert {k: json.loads(hp[k]) for k in ('arch', 'epochs', 'lr')} == dict(arch='resnet34', epochs=5, lr=1e-3)
    assert json.loads(hp['dogbreeds_options'])['margin'] == 0.01 and json.loads(hp['sagemaker_program']) == ENTRY
    assert job['InputDataConfig'][0]['DataSource']['S3DataSource']['S3Uri'] == data + '/'
    assert job['OutputDataConfig']['S3OutputPath'] == f"s3://{s3_server.bucket}/retrain-jobs"
    assert out['Environment']['DOGBREEDS_REGISTRY'] == registry  # (moto does not keep a job's environment)
    # the source bundle the job runs is in (real) S3, where the job's hyperparameters say
    src = json.loads(hp['sagemaker_submit_directory'])
    assert src == f"s3://{s3_server.bucket}/retrain-jobs/{name}/source/sourcedir.tar.gz"
    body = s3.get_object(Bucket=s3_server.bucket, Key=src.split('/', 3)[3])['Body']
    with tarfile.open(fileobj=body, mode='r|gz') as tar: names = tar.getnames()
    assert ENTRY in names and 'nbs/27_train.ipynb' in names and 'dogbreeds/retrain.py' in names


# What `pip install 'dogbreeds[aws]'` does not bring: the training stack, the notebook runners, the front ends.
NOT_IN_AWS_EXTRA = {'torch', 'torchvision', 'fastai', 'timm', 'papermill', 'nbformat', 'nbclient', 'jupyter_client',
                    'ipykernel', 'IPython', 'jupyterlab', 'ipywidgets', 'pandas', 'matplotlib', 'sklearn', 'scipy',
                    'onnx', 'onnxruntime'}
LEAN_LAUNCH = f"""
import sys
BLOCKED = {NOT_IN_AWS_EXTRA!r}
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED: raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
import moto
with moto.mock_aws(config={{'core': {{'mock_credentials': False, 'passthrough': {{'services': ['s3']}}}}}}):
    from dogbreeds.cli import main
    main(sys.argv[1:])
print(sorted({{m.split('.')[0] for m in sys.modules}} & BLOCKED))
"""


def test_sagemaker_launch_needs_only_the_aws_extra(s3_server, tmp_path):
    "`dogbreeds retrain --on sagemaker -f params.yaml --wait` where torch, papermill or Jupyter cannot be imported."
    prefix = f"lean-{uuid.uuid4().hex[:8]}"
    s3 = s3_server.client()
    for f in sorted((SAMPLE/'train').rglob('*.JPEG'))[:2]:
        s3.upload_file(str(f), s3_server.bucket, f"{prefix}/dogs/{f.relative_to(SAMPLE)}")
    (tmp_path/'params.yaml').write_text(f"data: s3://{s3_server.bucket}/{prefix}/dogs\nepochs: 2\nlr: 1e-3\n")
    args = ['retrain', '--on', 'sagemaker', '-f', str(tmp_path/'params.yaml'), '--wait',
            '--registry', f"s3://{s3_server.bucket}/{prefix}/models", '--role-arn', 'arn:aws:iam::123456789012:role/r',
            '--region', 'eu-south-1', '--endpoint-url', s3_server.endpoint]
    r = subprocess.run([sys.executable, '-c', LEAN_LAUNCH, *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip().splitlines()
    assert out[-1] == '[]', out                                 # none of them was imported
    name = out[0].split('started SageMaker training job ')[1].split()[0]
    assert f"{name}: Completed" in r.stdout
    body = s3.get_object(Bucket=s3_server.bucket, Key=f"retrain-jobs/{name}/source/sourcedir.tar.gz")['Body']
    with tarfile.open(fileobj=body, mode='r|gz') as tar:
        reqs = next(tar.extractfile(m).read().decode().split() for m in tar if m.name == 'requirements.txt')
    assert any(q.startswith('papermill') for q in reqs) and any(q.startswith('fastai') for q in reqs)
    assert not [q for q in reqs if q.startswith(('jupyterlab', 'ipywidgets'))], reqs  # the job installs no JupyterLab


def test_sagemaker_bad_input(s3_server):
    role = 'arn:aws:iam::123456789012:role/r'
    reg = f"s3://{s3_server.bucket}/x/models"
    with pytest.raises(ParameterError, match='give the data'): launch_sagemaker(dict(epochs=1), registry=reg, role_arn=role)
    with pytest.raises(ParameterError, match='must be the S3 folder'):
        launch_sagemaker(dict(data='/local/dogs'), registry=reg, role_arn=role)
    with pytest.raises(ParameterError, match='not an IAM role ARN'):
        launch_sagemaker(dict(data='s3://b/d'), registry=reg, role_arn='admin')
    with pytest.raises(ParameterError, match='registry in S3'):
        launch_sagemaker(dict(data='s3://b/d'), registry='/tmp/reg', role_arn=role)
    with pytest.raises(DataError, match='holds no files'):
        launch_sagemaker(dict(data=f's3://{s3_server.bucket}/empty-{uuid.uuid4().hex[:6]}'), registry=reg, role_arn=role,
                         endpoint_url=s3_server.endpoint, region='us-east-1', quiet=True)


def test_schedule_templates():
    "deploy/retrain: the parameters file passes the checks; the EventBridge schedule is a valid CreateSchedule request that starts a valid job."
    import botocore.session, botocore.validate
    from dogbreeds.jobs import SCHEDULER_TARGET
    from dogbreeds.config import read_params_file
    d = ROOT/'deploy'/'retrain'
    steps = check_retrain_params(read_params_file(d/'params.yaml'), on='sagemaker')
    assert steps['train']['data'].startswith('s3://') and steps['evaluate'] == dict(tta=True)
    sched = json.loads((d/'eventbridge-schedule.json').read_text())
    session, validator = botocore.session.get_session(), botocore.validate.ParamValidator()
    for service, op, req in [('scheduler', 'CreateSchedule', sched),
                             ('sagemaker', 'CreateTrainingJob', job := json.loads(sched['Target']['Input']))]:
        report = validator.validate(req, session.get_service_model(service).operation_model(op).input_shape)
        assert not report.has_errors(), report.generate_report()
    assert sched['Target']['Arn'] == SCHEDULER_TARGET and job['TrainingJobName'] == 'dogbreeds-retrain-<aws.scheduler.execution-id>'
    assert json.loads(job['HyperParameters']['epochs']) == read_params_file(d/'params.yaml')['epochs']
    for f in ('scheduler-role-policy.json', 'execution-role-policy.json'): assert json.loads((d/f).read_text())['Statement']
    assert 'dogbreeds retrain --on sagemaker' in (d/'crontab').read_text()


def test_cli_sagemaker_dry_run(capsys, monkeypatch):
    "`dogbreeds retrain --on sagemaker --dry-run` prints the CreateTrainingJob request and starts nothing."
    from dogbreeds.cli import main
    for k, v in dict(AWS_ACCESS_KEY_ID='x', AWS_SECRET_ACCESS_KEY='x', AWS_EC2_METADATA_DISABLED='true').items(): monkeypatch.setenv(k, v)
    main(['retrain', '--on', 'sagemaker', '-p', 'data', 's3://b/dogs', '-p', 'epochs', '2', '--registry', 's3://b/models',
          '--role-arn', 'arn:aws:iam::123456789012:role/r', '--instance-type', 'ml.m5.xlarge', '--region', 'us-west-2', '--dry-run', '--quiet'])
    req = json.loads(capsys.readouterr().out)
    assert req['ResourceConfig']['InstanceType'] == 'ml.m5.xlarge' and '-cpu-' in req['AlgorithmSpecification']['TrainingImage']
    assert json.loads(req['HyperParameters']['epochs']) == 2 and req['AlgorithmSpecification']['TrainingImage'].startswith(
        '763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:')
    main(['retrain', '--on', 'sagemaker', '-p', 'data', 's3://b/dogs', '--registry', 's3://b/models',
          '--role-arn', 'arn:aws:iam::123456789012:role/r', '--region', 'us-west-2', '--dry-run'])
    req = json.loads(capsys.readouterr().out)
    assert req['ResourceConfig']['InstanceType'] == 'ml.g4dn.xlarge' and '-gpu-' in req['AlgorithmSpecification']['TrainingImage']
    with pytest.raises(SystemExit):
        main(['retrain', '--run-id', 'x', '--on', 'sagemaker', '-p', 'data', 's3://b/dogs', '--dry-run'])
    assert '--runs-dir, --run-id and --kernel are for --on local' in capsys.readouterr().err


def test_container_main_reports_failure(tmp_path, monkeypatch):
    "In the container, a run that cannot start writes its one-line error where SageMaker shows it as the failure reason."
    from dogbreeds.jobs import training_job_request
    from dogbreeds.container import container_main
    req = training_job_request('job-1', dict(epochs=1, epochz=2), 's3://b/dogs', 's3://b/models', 'arn:aws:iam::123456789012:role/r',
                               'image', 's3://b/src.tar.gz', 's3://b/out', 'us-east-1')
    (tmp_path/'config').mkdir()
    (tmp_path/'config'/'hyperparameters.json').write_text(json.dumps(req['HyperParameters']))
    (tmp_path/'train').mkdir()
    for k, v in dict(SM_INPUT_CONFIG_DIR=tmp_path/'config', SM_OUTPUT_DIR=tmp_path/'out', SM_CHANNEL_TRAIN=tmp_path/'train',
                     TRAINING_JOB_NAME='job-1', DOGBREEDS_REGISTRY=tmp_path/'registry').items(): monkeypatch.setenv(k, str(v))
    assert container_main() == 1
    assert "unknown parameter 'epochz'" in (tmp_path/'out'/'failure').read_text()


# ---------------------------------------------------------------------------------------------------------
# Several instances: --instance-count N builds a valid multi-instance job; inside it, every instance
# derives the same torchrun rendezvous from SageMaker's resourceconfig.json; only the leader writes anything.

FINE_TUNE = dict(data='s3://b/dogs', recipe='fine-tune', arch='resnet34', lr=2e-3, bs=64)
ROLE = 'arn:aws:iam::123456789012:role/dogbreeds-retrain'


def test_sagemaker_multi_instance_request(aws):
    "N=3: the request is valid to botocore's model of CreateTrainingJob, moto accepts it, and the job has 3 instances."
    import botocore.session, botocore.validate
    req = launch_sagemaker(FINE_TUNE, registry='s3://b/models', role_arn=ROLE, instance_count=3, instance_type='ml.g4dn.12xlarge',
                           region='us-east-1', dry_run=True, quiet=True, session=aws)
    shape = botocore.session.get_session().get_service_model('sagemaker').operation_model('CreateTrainingJob').input_shape
    report = botocore.validate.ParamValidator().validate(req, shape)
    assert not report.has_errors(), report.generate_report()
    sm = aws.client('sagemaker')
    sm.create_training_job(**req)
    job = sm.describe_training_job(TrainingJobName=req['TrainingJobName'])
    assert job['ResourceConfig']['InstanceCount'] == 3 and job['ResourceConfig']['InstanceType'] == 'ml.g4dn.12xlarge'
    assert job['InputDataConfig'][0]['DataSource']['S3DataSource']['S3DataDistributionType'] == 'FullyReplicated'
    assert {k: json.loads(job['HyperParameters'][k]) for k in ('recipe', 'lr', 'bs')} == dict(recipe='fine-tune', lr=2e-3, bs=64)
    assert 'nproc' not in job['HyperParameters']  # each instance sets it from its GPUs
    one = launch_sagemaker(dict(data='s3://b/dogs'), registry='s3://b/models', role_arn=ROLE, region='us-east-1', dry_run=True,
                           quiet=True, session=aws, data_distribution='ShardedByS3Key')
    assert one['ResourceConfig']['InstanceCount'] == 1
    assert one['InputDataConfig'][0]['DataSource']['S3DataSource']['S3DataDistributionType'] == 'ShardedByS3Key'


@pytest.mark.parametrize('count, params, dist, message', [
    (0, FINE_TUNE, 'FullyReplicated', '--instance-count must be a whole number >= 1, got 0'),
    ('3', FINE_TUNE, 'FullyReplicated', "--instance-count must be a whole number >= 1, got '3'"),
    (2.0, FINE_TUNE, 'FullyReplicated', '--instance-count must be a whole number >= 1, got 2.0'),
    (3, dict(data='s3://b/dogs'), 'FullyReplicated', 'the imagenet-head recipe cannot'),
    (3, {**FINE_TUNE, 'lr': None}, 'FullyReplicated', 'needs -p lr'),
    (3, {**FINE_TUNE, 'nproc': 4}, 'FullyReplicated', 'leave -p nproc out'),
    (3, FINE_TUNE, 'ShardedByS3Key', 'needs --data-distribution FullyReplicated'),
])
def test_sagemaker_multi_instance_bad_input(aws, count, params, dist, message):
    with pytest.raises(ParameterError) as e:
        launch_sagemaker(params, registry='s3://b/models', role_arn=ROLE, instance_count=count, data_distribution=dist,
                         region='us-east-1', dry_run=True, quiet=True, session=aws)
    assert message in str(e.value) and '\n' not in str(e.value)


def test_cli_instance_count(capsys, monkeypatch):
    from dogbreeds.cli import main
    for k, v in dict(AWS_ACCESS_KEY_ID='x', AWS_SECRET_ACCESS_KEY='x', AWS_EC2_METADATA_DISABLED='true').items(): monkeypatch.setenv(k, v)
    base = ['retrain', '--on', 'sagemaker', '-p', 'data', 's3://b/dogs', '-p', 'recipe', 'fine-tune', '-p', 'arch', 'resnet18',
            '-p', 'lr', '2e-3', '--registry', 's3://b/models', '--role-arn', ROLE, '--region', 'us-west-2', '--dry-run']
    main([*base, '--instance-count', '2'])
    assert json.loads(capsys.readouterr().out)['ResourceConfig']['InstanceCount'] == 2
    for bad, msg in [('0', '--instance-count must be a whole number >= 1, got 0'), ('two', "invalid int value: 'two'")]:
        with pytest.raises(SystemExit): main([*base, '--instance-count', bad])
        err = capsys.readouterr().err
        assert msg in err, err
    with pytest.raises(SystemExit): main(['retrain', '-p', 'epochs', '1', '--instance-count', '2'])
    assert '--instance-count is for --on sagemaker' in capsys.readouterr().err


def _resourceconfig(folder, current, hosts=('algo-2', 'algo-3', 'algo-1')):
    folder.mkdir(parents=True, exist_ok=True)
    (folder/'resourceconfig.json').write_text(json.dumps(dict(current_host=current, hosts=list(hosts), network_interface_name='eth0')))
    return folder


def test_rendezvous_from_resourceconfig(tmp_path, monkeypatch):
    "Every instance derives the same master and its own node rank; torchrun gets them as a static multi-node rendezvous."
    from dogbreeds.jobs import node_rendezvous, rendezvous_env
    from dogbreeds.distributed import torchrun_args
    got = {h: node_rendezvous(_resourceconfig(tmp_path/h, h), {}) for h in ('algo-1', 'algo-2', 'algo-3')}
    assert {h: (r['node_rank'], r['leader'], r['master_addr'], r['nnodes']) for h, r in got.items()} == {
        'algo-1': (0, True, 'algo-1', 3), 'algo-2': (1, False, 'algo-1', 3), 'algo-3': (2, False, 'algo-1', 3)}
    for k, v in rendezvous_env(got['algo-3']).items(): monkeypatch.setenv(k, v)
    args = torchrun_args(4)
    assert args[:5] == ['--nnodes=3', '--node-rank=2', '--master-addr=algo-1', '--master-port=29500', '--nproc-per-node=4']
    assert '--standalone' not in args
    # without the file, the toolkit's SM_HOSTS / SM_CURRENT_HOST give the same answer
    env = {'SM_HOSTS': json.dumps(['algo-2', 'algo-3', 'algo-1']), 'SM_CURRENT_HOST': 'algo-2'}
    assert node_rendezvous(tmp_path/'none', env) == got['algo-2']
    # one instance (a file with one host, or none at all): no rendezvous, the run stays on its machine
    assert node_rendezvous(_resourceconfig(tmp_path/'one', 'algo-1', ['algo-1']), {})['nnodes'] == 1
    for k in rendezvous_env(got['algo-3']): monkeypatch.delenv(k)
    assert torchrun_args(2) == ['--standalone', '--nproc-per-node=2']


@pytest.mark.parametrize('host', ['algo-1', 'algo-2'])
def test_container_main_leader_runs_the_pipeline_worker_only_trains(tmp_path, monkeypatch, host):
    "In a 2-instance job, the leader runs retrain (which writes the run); the other instance trains only and writes nothing."
    import dogbreeds.container as rt
    from dogbreeds.jobs import training_job_request
    req = training_job_request('job-2', {k: v for k, v in FINE_TUNE.items() if k != 'data'}, 's3://b/dogs', 's3://b/models', ROLE,
                               'image', 's3://b/src.tar.gz', 's3://b/out', 'us-east-1', instance_count=2)
    cfg = _resourceconfig(tmp_path/'config', host, ['algo-1', 'algo-2'])
    (cfg/'hyperparameters.json').write_text(json.dumps(req['HyperParameters']))
    (tmp_path/'train').mkdir()
    out = tmp_path/'out'
    for k, v in dict(SM_INPUT_CONFIG_DIR=cfg, SM_OUTPUT_DIR=out, SM_OUTPUT_DATA_DIR=out/'data', SM_CHANNEL_TRAIN=tmp_path/'train',
                     TRAINING_JOB_NAME='job-2', DOGBREEDS_REGISTRY='s3://b/models', SM_NUM_GPUS='4').items(): monkeypatch.setenv(k, str(v))
    for k in ('DOGBREEDS_DDP_NODES', 'DOGBREEDS_DDP_NODE_RANK', 'DOGBREEDS_DDP_MASTER'): monkeypatch.setenv(k, '')  # restored after
    calls = []
    monkeypatch.setattr(rt, 'retrain', lambda params, **kw: calls.append(('retrain', params, kw, dict(os.environ))))
    monkeypatch.setattr(rt, 'train_on_worker_node', lambda params: calls.append(('train', params, {}, dict(os.environ))))
    assert rt.container_main() == 0
    [(what, params, kw, env)] = calls
    assert what == ('retrain' if host == 'algo-1' else 'train')
    assert params['nproc'] == 4 and params['recipe'] == 'fine-tune' and params['data'] == str(tmp_path/'train')
    assert (env['DOGBREEDS_DDP_NODES'], env['DOGBREEDS_DDP_NODE_RANK'], env['DOGBREEDS_DDP_MASTER']) == (
        '2', '0' if host == 'algo-1' else '1', 'algo-1:29500')
    if host == 'algo-1': assert kw['runs_dir'] == out/'data'/'runs' and kw['run_id'] == 'job-2'
    else: assert not out.exists(), "an instance other than the leader writes no output, model or failure"


def test_worker_node_trains_with_the_notebooks_arguments():
    "`train_kwargs` gives `train` what 27_train.ipynb's run cell gives it: every parameter its parameters cell declares, nproc too."
    import ast, papermill as pm
    from dogbreeds.container import train_kwargs
    from dogbreeds.steps import managed_params
    nb = json.loads((ROOT/'nbs'/'27_train.ipynb').read_text())
    declared = set(pm.inspect_notebook(str(ROOT/'nbs'/'27_train.ipynb')))
    assert 'nproc' in declared
    run = next(''.join(c['source']) for c in nb['cells'] if 'result = train(' in ''.join(c['source']))
    call = next(n for n in ast.walk(ast.parse(run)) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'train')
    passed = {k.arg for k in call.keywords}
    assert passed == declared, (passed ^ declared)
    assert all(isinstance(k.value, ast.Name) and k.value.id == k.arg for k in call.keywords)  # each as its parameter
    kw = train_kwargs(dict(recipe='fine-tune', arch='resnet18', lr=2e-3, nproc=4, data=str(SAMPLE)))
    assert set(kw) == declared - set(managed_params('.')['train']) and kw['nproc'] == 4 and kw['data'] == str(SAMPLE.resolve())
