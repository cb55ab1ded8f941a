"Export: TorchScript and ONNX give the answers fastai gives, the manifest says what they are, no pickle is needed."
import json, shutil, subprocess, sys

import numpy as np
import pytest
import torch

from conftest import ROOT, SAMPLE
from dogbreeds.core import IntegrityError, load_rgb, read_json, sha256_file, verify_files
from dogbreeds.export import export_run, load_run_model

TOL = 1e-4  # probabilities; top-1 must be identical


@pytest.fixture(scope='module')
def photos():
    "Real photos of every breed from the sample's validation split, all of different sizes."
    return sorted((SAMPLE / 'val').rglob('*.JPEG'))[::4]


def test_parity_fastai_torchscript_onnx(trained_run, model_dir, photos):
    import onnxruntime as ort
    learn = trained_run.learn
    ts = torch.jit.load(str(model_dir / 'model.pt'))
    sess = ort.InferenceSession(str(model_dir / 'model.onnx'))
    worst = {}
    for f in photos:
        _, idx, p_fastai = learn.predict(f)
        x = np.array(load_rgb(f))[None]
        p_ts = ts(torch.from_numpy(x))[0].numpy()[0]  # (breed, ImageNet) probabilities
        p_onnx = sess.run(None, {'input': x})[0][0]
        assert p_ts.argmax() == p_onnx.argmax() == int(idx), f
        for k, p in (('torchscript', p_ts), ('onnx', p_onnx)):
            worst[k] = max(worst.get(k, 0), float(np.abs(p - p_fastai.numpy()).max()))
    print('max |p - p_fastai|:', worst)
    assert max(worst.values()) <= TOL, worst
    assert len(photos) >= 20


def test_manifest(trained_run, model_dir):
    m = verify_files(model_dir)
    run = trained_run.run_dir
    assert m['breeds'] == list(trained_run.learn.dls.vocab) == read_json(run / 'params.json')['breeds']
    assert m['input']['layout'] == 'NHWC' and m['input']['dtype'] == 'uint8'
    assert m['preprocessing']['resize']['size'] == 96 and m['preprocessing']['crop'] == 'central square'
    assert m['arch'] == 'mobilenet_v2' and m['run'] == 'run'
    metrics = read_json(run / 'metrics.json')
    assert m['metrics']['accuracy'] == metrics['accuracy'] and m['metrics']['top5_accuracy'] == metrics['top5_accuracy']
    assert m['training']['lr'] == 2e-3 and m['training']['epochs'] == 1
    assert m['data']['source'] == 'imagewoof' and m['data']['n_valid'] == 80
    assert m['versions']['torch'] == torch.__version__ and m['versions']['onnx']
    assert m['created'] and (m['git_commit'] is None or len(m['git_commit']) >= 40)
    assert set(m['files']) == {'model.pt', 'model.onnx', 'model.onnx.data', 'preprocess.onnx', 'classifier.onnx'}
    # each weight stored once in the ONNX files: the graphs point into model.onnx.data
    graphs = sum(m['files'][f]['bytes'] for f in ('model.onnx', 'preprocess.onnx', 'classifier.onnx'))
    assert graphs < m['files']['model.onnx.data']['bytes'] / 10
    assert m['serving_files'] == {'onnx': ['model.onnx', 'model.onnx.data', 'preprocess.onnx', 'classifier.onnx'],
                                  'torchscript': ['model.pt']}
    for name, rec in m['files'].items():
        assert rec['sha256'] == sha256_file(model_dir / name) and rec['bytes'] == (model_dir / name).stat().st_size


def test_export_run_rebuilds_without_pickle(trained_run, model_dir, tmp_path, photos):
    "export_run loads model_state.pth with weights_only=True (no pickle) and gives the same graph outputs."
    net, params = load_run_model(trained_run.run_dir)
    d = export_run(trained_run.run_dir, dest=tmp_path / 'again', formats=('onnx',))
    import onnxruntime as ort
    a, b = (ort.InferenceSession(str(p / 'model.onnx')) for p in (model_dir, d))
    x = np.array(load_rgb(photos[0]))[None]
    assert np.array_equal(a.run(None, {'input': x})[0], b.run(None, {'input': x})[0])
    assert set(read_json(d / 'manifest.json')['files']) == {'model.onnx', 'model.onnx.data', 'preprocess.onnx', 'classifier.onnx'}


def test_export_cli(trained_run, tmp_path):
    run = tmp_path / 'run'
    shutil.copytree(trained_run.run_dir, run, ignore=shutil.ignore_patterns('model'))
    r = subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'export', str(run)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f"model exported to {run / 'model'}"
    verify_files(run / 'model')
    r = subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'export', str(tmp_path / 'nope')],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and r.stderr.strip() == f"dogbreeds: error: {tmp_path / 'nope'} is not a run folder: it has no params.json"


def test_existing_model_folder_is_kept(trained_run, model_dir):
    before = sha256_file(model_dir / 'model.onnx')
    with pytest.raises(FileExistsError): export_run(trained_run.run_dir)
    assert sha256_file(model_dir / 'model.onnx') == before
