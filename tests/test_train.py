"End-to-end training on real photos: a complete run folder, reproducibility, and nothing half-written on failure."
import csv

import pytest
import torch

import dogbreeds.fit as T  # train() calls evaluate as dogbreeds.fit.evaluate
from dogbreeds.core import ParameterError, read_json
from dogbreeds.datasets import load_data
from dogbreeds.train import train

FAST = dict(recipe='fine-tune', arch='mobilenet_v2', size=64, epochs=1, freeze_epochs=1, lr=1e-3, bs=32, quiet=True, export=False)


@pytest.fixture(scope='module')
def tiny():
    "Four breeds of the sample, 8 train and 4 valid photos each."
    return load_data('sample', progress=False).subset(n_train=8, n_valid=4, breeds=['beagle', 'Samoyed', 'dingo', 'Shih-Tzu'])


@pytest.fixture(scope='module')
def run(trained_run):
    "One tiny but real run on the whole sample, exported: conftest's `trained_run` (96 px, lr 2e-3, run 'run'), read only."
    return trained_run


def test_run_folder_is_complete(run):
    d = run.run_dir
    assert d.name == 'run' and d.is_dir()
    for f in ('params.json', 'data_report.json', 'history.csv', 'metrics.json', 'per_breed.csv', 'model_state.pth',
              'learner.pkl', 'confusion_matrix.png', 'calibration.png', 'top_losses.png', 'model/manifest.json',
              'model/model.pt', 'model/model.onnx'):
        assert (d / f).stat().st_size > 0, f
    assert not [p for p in d.parent.iterdir() if p.name.startswith('.')]  # no staging folder left
    p = read_json(d / 'params.json')
    assert (p['arch'], p['size'], p['lr'], p['n_train'], p['n_valid']) == ('mobilenet_v2', 96, 2e-3, 200, 80)
    assert p['versions']['torch'] == torch.__version__
    rows = list(csv.DictReader(open(d / 'history.csv')))
    assert [r['stage'] for r in rows] == ['0', '1', '2']  # the untrained start, one frozen epoch, one unfrozen


def test_metrics_agree_with_the_model(run):
    "metrics.json is what the saved weights give on the validation set, recomputed independently."
    m = read_json(run.run_dir / 'metrics.json')
    learn = run.learn
    sd = torch.load(run.run_dir / 'model_state.pth', weights_only=True)
    learn.model.load_state_dict(sd)
    probs, targs = learn.get_preds()
    assert m['n_valid'] == 80 and m['breeds'] == list(learn.dls.vocab)
    assert m['accuracy'] == pytest.approx((probs.argmax(1) == targs).float().mean().item())
    assert m['top5_accuracy'] == pytest.approx((probs.topk(5).indices == targs[:, None]).any(1).float().mean().item())
    assert sum(map(sum, m['confusion_matrix'])) == 80
    assert m['accuracy'] > 0.25  # chance is 0.1; the ImageNet-initialised head knows these breeds even at 96 px
    assert run.metrics['accuracy'] == m['accuracy']


def test_reproducible_with_a_seed(tiny, tmp_path):
    a = train(tiny, out_dir=tmp_path, run_name='a', seed=7, **FAST)
    b = train(tiny, out_dir=tmp_path, run_name='b', seed=7, **FAST)
    sa, sb = (torch.load(r.run_dir / 'model_state.pth', weights_only=True) for r in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.metrics['loss'] == b.metrics['loss']


def test_lr_find_when_no_lr(tiny, tmp_path):
    r = train(tiny, out_dir=tmp_path, run_name='lrf', **{**FAST, 'lr': None, 'epochs': 0})
    assert (r.run_dir / 'lr_find.png').exists()
    assert 1e-6 < read_json(r.run_dir / 'params.json')['lr'] < 1


def test_failure_after_training_keeps_a_marked_partial_run(tiny, tmp_path, monkeypatch):
    def broken(*a, **k): raise RuntimeError('disk full')
    monkeypatch.setattr(T, "evaluate", broken)
    with pytest.raises(RuntimeError, match='disk full'): train(tiny, out_dir=tmp_path, run_name='x', **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.failed']  # no 'x', no staging folder
    assert 'disk full' in (tmp_path / 'x.failed' / 'error.txt').read_text()
    assert (tmp_path / 'x.failed' / 'model_state.pth').exists()


@pytest.mark.parametrize('kw, words', [
    (dict(epochs='three'), "epochs must be a whole number >= 0, got 'three'"),
    (dict(size=2.5), 'size must be a whole number'),
    (dict(lr=-1.0), 'lr must be a number'),
    (dict(tta='yes'), 'tta must be True or False'),
    (dict(arch='alexnet'), 'unknown arch'),
    (dict(run_name='../escape'), 'run_name must be'),
    (dict(epochs=0, freeze_epochs=0), 'nothing to train'),
    (dict(data='no/such/dir'), "data path 'no/such/dir' not found"),
])
def test_bad_parameters_fail_before_any_work(kw, words, tmp_path):
    out = tmp_path / 'out'
    with pytest.raises(Exception, match=words) as e: train(**{**FAST, 'out_dir': out, **kw})
    assert isinstance(e.value, (ParameterError, ValueError))
    assert not out.exists() or not any(out.iterdir())


def test_existing_run_folder_is_not_overwritten(run):
    with pytest.raises(ParameterError, match='already exists'):
        train('sample', out_dir=run.run_dir.parent, run_name='run', **FAST)
