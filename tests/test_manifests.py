"""The sharded batch job's manifests: the Kubernetes Indexed Job against Kubernetes' schemas (kubernetes-validate, offline),
the AWS Batch job definition and submission against botocore's service model; and each one's command, run here in a
shell for every index, covers the photos once and merges into what one process writes."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import yaml

from conftest import SAMPLE
from dogbreeds.predict import batch_predict, merge_shards, read_results
from dogbreeds.testing import toy_model

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / 'deploy' / 'k8s' / 'batch-job.yaml'
BATCH = ROOT / 'deploy' / 'aws-batch'


def env_of(pairs) -> dict: return {e['name']: e['value'] for e in pairs}


def test_k8s_indexed_job_is_valid():
    import kubernetes_validate
    doc = yaml.safe_load(K8S.read_text())
    kubernetes_validate.validate(doc, '1.37.0', strict=True)  # raises on any unknown or mistyped field
    spec, c = doc['spec'], doc['spec']['template']['spec']['containers'][0]
    assert spec['completionMode'] == 'Indexed' and spec['completions'] == int(env_of(c['env'])['SHARDS'])
    assert '--shard "${JOB_COMPLETION_INDEX}/${SHARDS}"' in c['args'][0] and '--resume' in c['args'][0]
    for bad in (dict(spec, completions='eight'), dict(spec, completionIndex=True)):  # the check can fail: a wrong type, an unknown field
        with pytest.raises(kubernetes_validate.ValidationError): kubernetes_validate.validate(dict(doc, spec=bad), '1.37.0', strict=True)


def test_aws_batch_array_job_is_valid():
    import botocore.session, botocore.validate
    model = botocore.session.get_session().get_service_model('batch')
    jd, sub = (json.loads((BATCH / f).read_text()) for f in ('job-definition.json', 'submit-job.json'))
    for req, op in ((jd, 'RegisterJobDefinition'), (sub, 'SubmitJob')):
        report = botocore.validate.ParamValidator().validate(req, model.operation_model(op).input_shape)
        assert not report.has_errors(), report.generate_report()
    assert sub['arrayProperties']['size'] == int(env_of(jd['containerProperties']['environment'])['SHARDS'])
    assert '${AWS_BATCH_JOB_ARRAY_INDEX}/${SHARDS}' in jd['containerProperties']['command'][-1]


@pytest.fixture(scope='module')
def job(tmp_path_factory):
    "A toy model and 30 sample photos, and the results of one process over them."
    d = tmp_path_factory.mktemp('job')
    model = toy_model(d / 'model')
    photos = d / 'photos'
    for p in sorted(SAMPLE.rglob('*.JPEG'))[::9][:30]:
        (photos / p.parent.name).mkdir(parents=True, exist_ok=True); shutil.copy(p, photos / p.parent.name / p.name)
    batch_predict(photos, d / 'single.csv', str(model), k=5, progress=False)
    return model, photos, read_results(d / 'single.csv')


@pytest.mark.parametrize('which', ['k8s', 'aws-batch'])
def test_manifest_command_covers_the_photos_once(job, which, tmp_path):
    model, photos, single = job
    if which == 'k8s':
        c = yaml.safe_load(K8S.read_text())['spec']['template']['spec']['containers'][0]
        cmd, env, index = c['command'] + c['args'], env_of(c['env']), 'JOB_COMPLETION_INDEX'
    else:
        p = json.loads((BATCH / 'job-definition.json').read_text())['containerProperties']
        cmd, env, index = p['command'], env_of(p['environment']), 'AWS_BATCH_JOB_ARRAY_INDEX'
    assert cmd[:2] == ['sh', '-c']
    script = cmd[2].replace('/results/', f'{tmp_path}/')  # the shared volume, here
    n = 3  # fewer shards than the manifest's, for time: the command takes N from SHARDS
    base = {**os.environ, **env, 'SHARDS': str(n), 'SRC': str(photos), 'MODEL_URI': str(model), 'PYTHONPATH': str(ROOT),
            'PATH': f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for i in range(n):
        r = subprocess.run(['sh', '-c', script], env={**base, index: str(i)}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    again = subprocess.run(['sh', '-c', script], env={**base, index: '1'}, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and '0 photos' in again.stdout  # a restarted pod finds its shard done
    merge_shards(tmp_path / 'results.csv')
    assert read_results(tmp_path / 'results.csv') == single
