"""Experiment tracking (`dogbreeds.tracking`) against a REAL MLflow tracking server (`mlflow server`, SQLite
backend, local artifact root, 127.0.0.1 on a free port): `train` logs over HTTP and the run is read back with MLflow's
client (parameters, metric history, artifacts, the id in params.json and the manifest); a server that goes away
mid-run; a `sqlite:///` URI through `dogbreeds train`; `retrain` records the decision and the registry version;
`dogbreeds train -f params.yaml`; `cbs=` reaches fastai's loop; nothing imports MLflow when tracking is off."""
import csv, json, os, subprocess, sys, tarfile, warnings
from pathlib import Path

import pytest

from conftest import ROOT
from dogbreeds.core import ParameterError, read_json, read_manifest
from dogbreeds.testing import MLflowServer

# the fine-tune recipe as cheap as it gets: 64 px, one frozen and one unfrozen epoch, a fixed learning rate
TINY = dict(recipe='fine-tune', arch='mobilenet_v2', size=64, epochs=1, freeze_epochs=1, lr=1e-3, bs=32, quiet=True)
BREEDS = ('beagle', 'Samoyed', 'dingo', 'Shih-Tzu')


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch):
    "No tracking settings from the environment the tests run in."
    for k in ('MLFLOW_TRACKING_URI', 'MLFLOW_RUN_ID', 'MLFLOW_EXPERIMENT_NAME'): monkeypatch.delenv(k, raising=False)


@pytest.fixture
def four_breeds(make_tree):
    "Four breeds of the sample, ten real photos each, as a folder."
    return make_tree({f'{b}/{b}{i}.jpg': b for b in BREEDS for i in range(10)})


def client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def artifact_paths(c, run_id, path=None) -> set:
    "Every file of the run's artifacts, recursively."
    out = set()
    for a in c.list_artifacts(run_id, path):
        out |= artifact_paths(c, run_id, a.path) if a.is_dir else {a.path}
    return out


# ---------------------------------------------------------------------------------------------------------
# No tracking asked: nothing of MLflow is imported; callbacks where there is no loop for them are refused

def test_off_by_default_imports_no_mlflow():
    "What `make run` and `dogbreeds retrain` load before training, and a Tracker with no URI: no mlflow module."
    code = ("import sys; import dogbreeds.cli, dogbreeds.distributed, dogbreeds.train, dogbreeds.retrain, dogbreeds.tracking; "
            "t = dogbreeds.tracking.Tracker().start('x'); t.log(params={'a': 1}); t.end(); "
            "print(t.on, sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))")
    env = {k: v for k, v in os.environ.items() if not k.startswith('MLFLOW_')}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, env={**env, 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ['False', '[]'], r.stdout


def test_cbs_refused_without_a_training_loop(tmp_path):
    from fastai.callback.progress import CSVLogger
    from dogbreeds.train import train
    with pytest.raises(ParameterError, match='imagenet-head recipe has no training loop for fastai callbacks'):
        train('sample', cbs=[CSVLogger()], out_dir=tmp_path)
    with pytest.raises(ParameterError, match='cannot be sent to them'):
        train('sample', cbs=[CSVLogger()], nproc=2, out_dir=tmp_path, **{**TINY, 'quiet': True})
    assert not list(tmp_path.iterdir())  # refused before any work


def test_missing_client_is_an_error_before_work(monkeypatch):
    from dogbreeds import tracking
    monkeypatch.setitem(sys.modules, 'mlflow', None)
    monkeypatch.setitem(sys.modules, 'mlflow.tracking', None)
    with pytest.raises(tracking.TrackingError, match=r"pip install 'dogbreeds\[tracking\]'"):
        tracking.Tracker('http://127.0.0.1:1')


# ---------------------------------------------------------------------------------------------------------
# train over HTTP to the real server, read back with the client

@pytest.mark.slow
def test_train_records_its_run_on_a_real_mlflow_server(mlflow_server, tmp_path):
    from fastai.callback.progress import CSVLogger
    from dogbreeds.export import git_commit
    from dogbreeds.train import train
    r = train('sample', out_dir=tmp_path, run_name='tracked', tracking_uri=mlflow_server.url, experiment='test-train',
              cbs=[CSVLogger(fname='fastai_log.csv', append=True)], **TINY)
    d = r.run_dir
    # cbs reached fastai's loop: CSVLogger wrote both stages' epochs, and history.csv is intact beside it
    rows = list(csv.reader(open(d/'fastai_log.csv')))
    assert [row[0] for row in rows] == ['epoch', '0', 'epoch', '0'] and len(rows[1]) == len(rows[0])
    hist = list(csv.DictReader(open(d/'history.csv')))
    assert [h['stage'] for h in hist] == ['0', '1', '2']
    # the links: params.json and the manifest name the MLflow run
    ref = read_json(d/'params.json')['mlflow']
    assert ref['tracking_uri'] == mlflow_server.url and ref['url'].endswith(f"/runs/{ref['run_id']}") and 'incomplete' not in ref
    assert read_manifest(d/'model')['mlflow'] == ref
    c = client(mlflow_server.url)
    run = c.get_run(ref['run_id'])
    assert run.info.status == 'FINISHED' and run.info.run_name == 'tracked'
    assert c.get_experiment(run.info.experiment_id).name == 'test-train'
    p, tags, m = run.data.params, run.data.tags, run.data.metrics
    assert (p['recipe'], p['arch'], p['size'], p['lr'], p['epochs'], p['data']) == ('fine-tune', 'mobilenet_v2', '64', '0.001', '1', 'sample')
    # the data summary: photos per breed in each split, photos skipped
    counts = read_json(d/'data_report.json')['counts']
    assert (p['data.n_train'], p['data.n_valid'], p['data.skipped'], p['data.n_breeds']) == ('200', '80', '0', '10')
    assert all(p[f'data.counts.{b}.train'] == str(n['train']) and p[f'data.counts.{b}.valid'] == str(n['valid']) for b, n in counts.items())
    # versions and commit
    import torch
    assert tags['versions.torch'] == torch.__version__ and tags['mlflow.source.git.commit'] == (git_commit() or 'unknown')
    # the metric history: one step per history.csv row; the evaluation's figures at the last step
    acc = sorted(c.get_metric_history(run.info.run_id, 'accuracy'), key=lambda x: (x.step, x.timestamp))
    assert sorted({x.step for x in acc}) == [0, 1, 2]  # the last step also holds the evaluation's figure (unless the same)
    assert [x.value for x in acc[:3]] == pytest.approx([float(h['accuracy']) for h in hist])
    assert [x.step for x in c.get_metric_history(run.info.run_id, 'train_loss')] == [1, 2]
    metrics = read_json(d/'metrics.json')
    assert m['accuracy'] == pytest.approx(metrics['accuracy']) and m['ece'] == pytest.approx(metrics['ece'])
    assert m['top5_accuracy'] == pytest.approx(metrics['top5_accuracy']) and m['loss'] == pytest.approx(metrics['loss'])
    nd = metrics['not_a_dog']
    assert m['not_a_dog.val_dogs_flagged'] == pytest.approx(nd['val_dogs_flagged']) and m['not_a_dog.threshold'] == pytest.approx(nd['threshold'])
    assert c.get_metric_history(run.info.run_id, 'ece')[0].step == 2
    # artifacts: the plots, JSON and CSV files and the manifest, uploaded to the server; no weights
    files = artifact_paths(c, run.info.run_id)
    assert {'params.json', 'metrics.json', 'data_report.json', 'history.csv', 'per_breed.csv', 'fastai_log.csv',
            'confusion_matrix.png', 'calibration.png', 'top_losses.png', 'model/manifest.json'} <= files
    assert not any(f.endswith(('.pth', '.pkl', '.onnx', '.pt')) for f in files)
    got = c.download_artifacts(run.info.run_id, 'metrics.json', str(tmp_path/'dl'))
    assert Path(got).read_bytes() == (d/'metrics.json').read_bytes()
    assert (mlflow_server.root/'artifacts').is_dir() and any((mlflow_server.root/'artifacts').rglob('metrics.json'))  # the server stored it


@pytest.mark.slow
def test_a_server_that_goes_away_mid_run_does_not_fail_training(tmp_path):
    "The server stops after the frozen stage: one warning, the run folder complete, the run in MLflow left as far as it got."
    from fastai.callback.core import Callback
    from dogbreeds.datasets import load_data
    from dogbreeds.train import train
    server = MLflowServer(tmp_path/'mlflow').start()
    class StopServer(Callback):
        def after_fit(self): server.stop()
    data = load_data('sample', progress=False).subset(n_train=8, n_valid=4, breeds=list(BREEDS))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            r = train(data, out_dir=tmp_path, run_name='gone', tracking_uri=server.url, cbs=[StopServer()], **TINY)
    finally: server.stop()
    ours = [w for w in caught if 'MLflow tracking at' in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning), [str(w.message) for w in caught]
    assert 'the run goes on without it' in str(ours[0].message)
    for f in ('params.json', 'metrics.json', 'history.csv', 'model/manifest.json', 'model/model.onnx', 'confusion_matrix.png'):
        assert (r.run_dir/f).stat().st_size > 0, f
    ref = read_json(r.run_dir/'params.json')['mlflow']
    assert ref['incomplete'].startswith('log: ') and read_manifest(r.run_dir/'model')['mlflow']['run_id'] == ref['run_id']
    run = client(server.store).get_run(ref['run_id'])  # read from the server's SQLite file: it is gone
    assert run.info.status == 'RUNNING' and run.data.params['arch'] == 'mobilenet_v2' and run.data.params['data.n_train'] == '32'
    assert 'accuracy' not in run.data.metrics


# ---------------------------------------------------------------------------------------------------------
# from a shell: MLFLOW_TRACKING_URI=sqlite:///... with the default recipe; -f params.yaml with tracking off

def cli(*args, env=None, code='from dogbreeds.cli import main; main()', timeout=900, cwd=ROOT):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith('MLFLOW_')}, 'PYTHONPATH': str(ROOT), 'MPLBACKEND': 'Agg', **(env or {})}
    return subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


@pytest.mark.slow
def test_cli_train_with_a_sqlite_tracking_uri(tmp_path):
    "`MLFLOW_TRACKING_URI=sqlite:///... dogbreeds train --data sample`: the default recipe (imagenet-head), no server."
    store = f"sqlite:///{tmp_path/'mlflow.db'}"
    r = cli('train', '--data', 'sample', '--arch', 'mobilenet_v2', '--size', '128', '--out-dir', str(tmp_path), '--run-name', 'head',
            '--quiet', env={'MLFLOW_TRACKING_URI': store, 'MLFLOW_EXPERIMENT_NAME': 'cli'}, cwd=tmp_path)  # artifacts: ./mlruns
    assert r.returncode == 0, r.stdout + r.stderr
    d = tmp_path/'head'
    ref = read_manifest(d/'model')['mlflow']
    assert ref == read_json(d/'params.json')['mlflow'] and ref['tracking_uri'] == store
    c = client(store)
    run = c.get_run(ref['run_id'])
    assert run.info.status == 'FINISHED' and c.get_experiment(run.info.experiment_id).name == 'cli'
    assert (run.data.params['recipe'], run.data.params['epochs'], run.data.params['lr']) == ('imagenet-head', '0', 'None')
    hist = list(csv.DictReader(open(d/'history.csv')))  # stage 0: ImageNet's rows; stage 1: the fitted heads
    acc = sorted(c.get_metric_history(run.info.run_id, 'accuracy'), key=lambda x: (x.step, x.timestamp))
    assert sorted({x.step for x in acc}) == [0, 1] and [x.value for x in acc[:2]] == pytest.approx([float(h['accuracy']) for h in hist])
    assert run.data.metrics['accuracy'] == pytest.approx(read_json(d/'metrics.json')['accuracy'])
    assert {'params.json', 'metrics.json', 'model/manifest.json', 'confusion_matrix.png'} <= artifact_paths(c, run.info.run_id)
    assert (tmp_path/'mlruns').is_dir()  # without a server, MLflow keeps artifacts in ./mlruns of the current folder


@pytest.mark.slow
def test_cli_train_params_file_and_no_mlflow_when_off(tmp_path, four_breeds):
    "`dogbreeds train -f params.yaml` (read as `retrain -f` reads it; options given win), with tracking off: MLflow is never imported."
    (tmp_path/'params.yaml').write_text(f"data: {four_breeds}\nrecipe: fine-tune\narch: mobilenet_v2\nsize: 64\nepochs: 0\n"
                                        f"freeze_epochs: 1\nlr: 2e-3\nbs: 16\nseed: 3\n")
    code = ("import sys; from dogbreeds.cli import main\ntry: main()\n"
            "finally: print('mlflow modules:', sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))")
    r = cli('train', '-f', str(tmp_path/'params.yaml'), '--seed', '7', '--out-dir', str(tmp_path), '--run-name', 'fromfile',
            '--quiet', '--no-export', code=code)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'mlflow modules: []' in r.stdout
    p = read_json(tmp_path/'fromfile'/'params.json')
    assert (p['recipe'], p['size'], p['epochs'], p['freeze_epochs'], p['lr'], p['bs'], p['seed']) == ('fine-tune', 64, 0, 1, 2e-3, 16, 7)
    assert p['data'] == str(four_breeds) and 'mlflow' not in p
    (tmp_path/'bad.yaml').write_text('learning_rate: 1e-3\n')
    r = cli('train', '-f', str(tmp_path/'bad.yaml'))
    assert r.returncode == 2 and "unknown parameter 'learning_rate'" in r.stderr


# ---------------------------------------------------------------------------------------------------------
# retrain: one MLflow run, with the training notebook's figures, the decision and the registry version

@pytest.mark.slow
def test_retrain_records_decision_and_registry_version(mlflow_server, first_retrain):
    "conftest's `first_retrain`: `dogbreeds retrain ... --tracking-uri URL --experiment test-retrain` (size 64, bs 16), promoted."
    from dogbreeds.retrain import RetrainResult
    assert first_retrain.r.returncode == 0, first_retrain.r.stdout + first_retrain.r.stderr
    res = RetrainResult(first_retrain.run_dir, read_json(first_retrain.run_dir/'status.json'))
    assert res.ok and res.decision['promoted']
    c = client(mlflow_server.url)
    exp = c.get_experiment_by_name('test-retrain')
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1  # one run: the training notebook logged into retrain's
    run = runs[0]
    assert run.info.run_name == 'first' and run.info.status == 'FINISHED' and res.status['mlflow']['run_id'] == run.info.run_id
    t, p, m = run.data.tags, run.data.params, run.data.metrics
    assert t['registry_version'] == res.decision['version'] and t['model_uri'] == res.model_uri and t['promoted'] == 'True'
    assert t['mlflow.source.name'] == 'dogbreeds retrain' and t['decision'] == res.decision['reason']
    assert m['decision.promoted'] == 1 and m['decision.challenger'] == pytest.approx(res.decision['challenger'])
    assert (p['retrain.metric'], p['retrain.alias'], p['retrain.push']) == ('accuracy', 'production', 'True')
    assert (p['size'], p['recipe'], p['data.n_train']) == ('64', 'imagenet-head', '32')  # from the training notebook's kernel
    assert sorted({x.step for x in c.get_metric_history(run.info.run_id, 'accuracy')}) == [0, 1]  # the start, then the fitted heads
    files = artifact_paths(c, run.info.run_id)
    assert {'retrain/status.json', 'retrain/decision.json', 'retrain/params.yaml', 'retrain/27_train.ipynb', 'metrics.json',
            'model/manifest.json'} <= files
    assert read_manifest(res.run_dir/'train'/'model')['mlflow']['run_id'] == run.info.run_id


# ---------------------------------------------------------------------------------------------------------
# SageMaker: the job gets the tracking URI and MLflow's client (and AWS's plugin for an ARN); moto cannot run MLflow

def test_sagemaker_job_carries_the_tracking_uri(monkeypatch, tmp_path):
    from dogbreeds.jobs import requirements, source_bundle
    from dogbreeds.jobs import ENTRY_SCRIPT
    from dogbreeds.launch import job_extras, launch_sagemaker
    for k, v in dict(AWS_ACCESS_KEY_ID='x', AWS_SECRET_ACCESS_KEY='x', AWS_EC2_METADATA_DISABLED='true').items(): monkeypatch.setenv(k, v)
    arn = 'arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/dogbreeds'
    req = launch_sagemaker(dict(data='s3://b/dogs'), registry='s3://b/models', role_arn='arn:aws:iam::123456789012:role/r',
                           region='us-east-1', dry_run=True, quiet=True, tracking_uri=arn, experiment='nightly')
    assert req['Environment']['MLFLOW_TRACKING_URI'] == arn and req['Environment']['MLFLOW_EXPERIMENT_NAME'] == 'nightly'
    monkeypatch.setenv('MLFLOW_TRACKING_URI', 'https://mlflow.example.com')
    req = launch_sagemaker(dict(data='s3://b/dogs'), registry='s3://b/models', role_arn='arn:aws:iam::123456789012:role/r',
                           region='us-east-1', dry_run=True, quiet=True)
    assert req['Environment']['MLFLOW_TRACKING_URI'] == 'https://mlflow.example.com'
    with pytest.raises(ParameterError, match='cannot reach the tracking URI'):
        launch_sagemaker(dict(data='s3://b/dogs'), registry='s3://b/models', role_arn='arn:aws:iam::123456789012:role/r',
                         region='us-east-1', dry_run=True, quiet=True, tracking_uri=f"sqlite:///{tmp_path/'m.db'}")
    bundle = source_bundle(tmp_path/'sourcedir.tar.gz', ENTRY_SCRIPT, job_extras(req['Environment'] | {'MLFLOW_TRACKING_URI': arn}))
    with tarfile.open(bundle) as tar: reqs = tar.extractfile('requirements.txt').read().decode().split('\n')
    assert any(r.startswith('mlflow-skinny') for r in reqs) and any(r.startswith('sagemaker-mlflow') for r in reqs)
    assert not any(r.startswith('mlflow') for r in requirements(job_extras({})))  # not tracked: no MLflow in the job
