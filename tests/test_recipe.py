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
from dogbreeds.learner import DEFAULT_ARCH


def cat():
    return next(p for p in not_dog_photos() if p.stem == 'chelsea')  # scikit-image's tabby cat


@pytest.mark.slow
def test_run_reports_its_start_and_does_not_lose_it(head_run):
    rows = list(csv.DictReader(open(head_run.run_dir / 'history.csv')))
    assert [r['stage'] for r in rows] == ['0', '1']  # epoch 0: ImageNet's rows, untrained
    start, end = float(rows[0]['accuracy']), float(rows[1]['accuracy'])
    assert start > 0.5 and end >= start  # the sample's own example: the recipe does not lose its start on val
    assert float(rows[1]['accuracy']) == pytest.approx(head_run.metrics['accuracy'], abs=1e-6)
    p = read_json(head_run.run_dir / 'params.json')
    assert p['recipe'] == 'imagenet-head' and p['arch'] == DEFAULT_ARCH and p['size'] == 128
    h = p['heads']
    assert list(h['members']) == DEFAULT_ARCH.split('+') and h['folds'] == 5 and h['n_held'] == 200
    assert all(m['lam'] in ('start', 0.1, 0.3, 1.0, 3.0) for m in h['members'].values()) and sum(h['weights']) == pytest.approx(1)
    assert all(round(w, 2) == w for w in h['weights'])  # 0.7, not 0.7000000000000001
    # what the recipe guarantees: a fitted head only where it beat the start, beyond chance, on every train photo held out once
    if h['kept_start']: assert all(m['lam'] == 'start' for m in h['members'].values()) and 'sign test' in h['kept_start']
    else: assert h['held_top1'] > h['held_top1_start'] and h['sign_test']['p_value'] < 0.05


def toy_model(W0, seed=0):
    "A BreedModel whose one member's body is the identity: its 'features' are what it is given."
    from dogbreeds.learner import BreedModel, TwoHeads
    breed, imagenet = torch.nn.Linear(W0.shape[1], len(W0)), torch.nn.Linear(W0.shape[1], 1000)
    with torch.no_grad(): breed.weight[:], breed.bias[:] = torch.as_tensor(W0), 0
    return BreedModel([TwoHeads(torch.nn.Identity(), breed, imagenet)], archs=['toy']).eval()


def toy_data(n, seed=0, noise=1.0):
    "n photos a class of 3 classes whose features are the class's one-hot direction plus noise."
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(3), n)
    return (np.eye(3, 8)[y] * 3 + noise * rng.randn(len(y), 8)).astype(np.float32), y


def test_recipe_keeps_its_start_when_the_fit_does_not_beat_it():
    from dogbreeds.learner import fit_heads
    X, y = toy_data(20)
    m = toy_model(np.eye(3, 8) * 3)  # the start is already the right classifier: fitting can only tie, or lose to noise
    W = m.members[0].breed.weight.detach().clone()
    rep = fit_heads(m, [X], y)
    assert rep['kept_start'] and 'sign test' in rep['kept_start'] and rep['members']['toy']['lam'] == 'start'
    assert rep['sign_test']['fixed'] <= rep['sign_test']['broken'] + 3 and rep['n_held'] == 60 and rep['folds'] == 5
    assert torch.equal(m.members[0].breed.weight, W)  # untouched
    m1 = toy_model(np.eye(3, 8) * 3)
    rep1 = fit_heads(m1, [X[[0, 1, 20, 21, 40]]], y[[0, 1, 20, 21, 40]])  # the third breed has one train photo
    assert rep1['folds'] == 0 and 'a breed has 1 train photo' in rep1['kept_start'] and torch.equal(m1.members[0].breed.weight, W)


def test_recipe_fits_when_it_beats_its_start():
    from dogbreeds.learner import fit_heads
    X, y = toy_data(30)
    m = toy_model(np.roll(np.eye(3, 8), 1, axis=0) * 3)  # a start that confuses every class: the fit must win
    rep = fit_heads(m, [X], y)
    assert rep['kept_start'] is None and rep['members']['toy']['lam'] != 'start' and rep['sign_test']['p_value'] < 0.05
    assert rep['held_top1'] > rep['held_top1_start'] + 0.2  # L2-SP still pulls towards the bad start: better, not perfect
    with torch.no_grad(): assert (m.members[0].breed(torch.as_tensor(X)).argmax(1).numpy() == y).mean() > rep['held_top1_start'] + 0.2


@pytest.mark.slow
def test_every_format_gives_both_answers(head_model_dir):
    import onnxruntime as ort
    m = verify_files(head_model_dir)
    assert m['ensemble']['archs'] == DEFAULT_ARCH.split('+') and m['not_a_dog']['output'] == 'imagenet'
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
    c = p.predict(cat())
    assert c.is_dog is False and c.dog < nd['threshold'] and 'cat' in c.looks_like and len(c.top) == 5  # breeds still listed
    dog = p.predict(sorted((SAMPLE / 'val' / 'n02111889').glob('*'))[0])
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
