"""The default recipe: classifiers fitted on frozen ImageNet bodies, an ensemble, the untrained start
reported as epoch 0, "is it a dog" from ImageNet's own classifier, every format giving the same two answers."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SAMPLE
from dogbreeds.core import load_rgb, read_json, verify_files
from dogbreeds.datasets import DOG_CLASSES, not_dog_photos
from dogbreeds.inference import Predictor


def cat():
    return next(p for p in not_dog_photos() if p.stem == 'chelsea')  # scikit-image's tabby cat


@pytest.mark.slow
def test_run_reports_its_start_and_beats_it(head_run):
    rows = list(csv.DictReader(open(head_run.run_dir / 'history.csv')))
    assert [r['stage'] for r in rows] == ['0', '1']  # epoch 0: ImageNet's rows, untrained
    start, end = float(rows[0]['accuracy']), float(rows[1]['accuracy'])
    assert start > 0.5 and end > start - 0.1  # 80 val photos: one photo is 1.25 pt, so only a loose bound here
    assert float(rows[1]['accuracy']) == pytest.approx(head_run.metrics['accuracy'], abs=1e-6)
    p = read_json(head_run.run_dir / 'params.json')
    assert p['recipe'] == 'imagenet-head' and p['arch'] == 'mobilenet_v2+efficientnet_lite0' and p['size'] == 128
    h = p['heads']
    assert set(h['members']) == {'mobilenet_v2', 'efficientnet_lite0'} and h['n_held'] > 0 and h['n_fit'] + h['n_held'] == 200
    assert all(m['lam'] in ('start', 0.1, 0.3, 1.0, 3.0) for m in h['members'].values()) and sum(h['weights']) == pytest.approx(1)
    # what the recipe guarantees: on train photos held out from fitting, it never ends below its start
    assert h['held_top1'] >= h['held_top1_start'] or all(m['lam'] == 'start' for m in h['members'].values())


@pytest.mark.slow
def test_every_format_gives_both_answers(head_model_dir):
    import onnxruntime as ort
    m = verify_files(head_model_dir)
    assert m['ensemble']['archs'] == ['mobilenet_v2', 'efficientnet_lite0'] and m['not_a_dog']['output'] == 'imagenet'
    ts = torch.jit.load(str(head_model_dir / 'model.pt'))
    sess = ort.InferenceSession(str(head_model_dir / 'model.onnx'))
    for f in sorted((SAMPLE / 'val').rglob('*.JPEG'))[::10] + [cat()]:
        x = np.array(load_rgb(f))[None]
        p_ts, q_ts = (o.numpy() for o in ts(torch.from_numpy(x)))
        p_onnx, q_onnx = sess.run(None, {'input': x})
        assert np.abs(p_ts - p_onnx).max() < 1e-4 and np.abs(q_ts - q_onnx).max() < 1e-4, f
        assert abs(p_onnx.sum() - 1) < 1e-4 and abs(q_onnx.sum() - 1) < 1e-4


@pytest.mark.slow
def test_not_a_dog(head_run, head_model_dir):
    nd = read_json(head_model_dir / 'manifest.json')['not_a_dog']
    assert nd['dog_classes'] == list(DOG_CLASSES) and 0 < nd['threshold'] < 1 and 'train photos' in nd['chosen_on']
    assert nd['n_val'] == 80 and nd['n_non_dogs'] == len(not_dog_photos()) >= 25
    assert nd['non_dogs_flagged'] >= 0.9 and nd['val_dogs_flagged'] <= 0.05  # measured, on the sample's 80 dogs
    p = Predictor.load(head_model_dir)
    c = p.predict_one(cat())
    assert c.is_dog is False and c.dog < nd['threshold'] and 'cat' in c.looks_like and len(c.top) == 5  # breeds still listed
    dog = p.predict_one(sorted((SAMPLE / 'val' / 'n02111889').glob('*'))[0])
    assert dog.is_dog is True and dog.looks_like is None and dog.top[0][0] == 'Samoyed'


@pytest.mark.slow
def test_run_rebuilds_and_evaluates_again(head_run, tmp_path):
    "The run's model comes back from model_state.pth without a pickle, and evaluating it again gives the same figures."
    import shutil
    from dogbreeds.evaluate import evaluate_run
    run = tmp_path / 'again'
    shutil.copytree(head_run.run_dir, run)
    m = evaluate_run(run, quiet=True)
    assert m['accuracy'] == pytest.approx(head_run.metrics['accuracy'], abs=1e-6)
    assert m['not_a_dog']['val_dogs_flagged'] == pytest.approx(head_run.metrics['not_a_dog']['val_dogs_flagged'])
