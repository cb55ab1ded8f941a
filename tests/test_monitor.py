"""Drift: the export records the validation baseline; `dogbreeds monitor` flags real shifts (photos without a
dog; a real model on val photos of two breeds) and not a random val sample, from predict results, logs and SageMaker
capture files; exits 1 on drift; draws the plot; writes the drift gauges."""
import base64, glob, json, random, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dogbreeds.predict import batch_predict
from dogbreeds.core import write_json
from dogbreeds.handlers import load_model
from dogbreeds.monitor import monitor, window_from_capture
from dogbreeds.signals import signals_from
from dogbreeds.testing import toy_model

ROOT = Path(__file__).resolve().parent.parent
VAL = sorted((ROOT / 'data' / 'sample' / 'val').rglob('*.JPEG'))


def run_cli(*args):
    return subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'monitor', *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    "The toy model, with the baseline of its own answers on the sample's val photos in its manifest."
    d = toy_model(tmp_path_factory.mktemp('mon') / 'toy', threshold=0.45)
    p = load_model(d)
    base = signals_from((lambda x: (x.top[0][0], x.top[0][1], x.is_dog))(p.predict_one(f.read_bytes(), 1)) for f in VAL)
    m = json.loads((d / 'manifest.json').read_text()); m['baseline'] = base; write_json(d / 'manifest.json', m)
    return d


def folder(dest, files):
    dest.mkdir()
    for i, f in enumerate(files): shutil.copy(f, dest / f"{i:03d}{Path(f).suffix}")
    return dest


def test_no_dogs_flagged_random_val_not(toy, tmp_path):
    import skimage
    nodog = sorted(glob.glob(str(Path(skimage.__file__).parent / 'data' / '*.png')))
    shifted = batch_predict(folder(tmp_path / 'nodog', nodog * 2), tmp_path / 'nodog.csv', str(toy), k=1)
    same = batch_predict(folder(tmp_path / 'half', random.Random(0).sample(VAL, 40)), tmp_path / 'half.csv', str(toy), k=1)
    r = run_cli('--model', toy, '--predictions', tmp_path / 'nodog.csv', '--plot', tmp_path / 'd.png',
                '--textfile', tmp_path / 'drift.prom', '--min-answers', 20)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'DRIFT' in r.stdout and (tmp_path / 'd.png').stat().st_size > 5000
    fams = {s.labels.get('signal', s.name): s.value for f in text_string_to_metric_families((tmp_path / 'drift.prom').read_text())
            for s in f.samples}
    assert fams['dogbreeds_drift_detected'] == 1 and fams['not_a_dog'] > 0.25
    r = run_cli('--model', toy, '--predictions', tmp_path / 'half.csv', '--min-answers', 20, '--json-out')
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)['verdict'] == 'stable'


def test_logs_and_capture_windows(toy, tmp_path):
    p = load_model(toy)
    answers = [dict(p.predict_one(f.read_bytes(), 3).__dict__) for f in VAL[:40]]
    from dogbreeds.protocol import make_answer
    bodies = [make_answer(a['top'], dict(name='toy', version='1'), a['dog'], a['is_dog']) for a in answers]
    cap = tmp_path / 'capture' / 'AllTraffic' / '2026' / '11' / '29'
    cap.mkdir(parents=True)
    (cap / 'x.jsonl').write_text('\n'.join(json.dumps(dict(captureData=dict(
        endpointInput=dict(observedContentType='image/jpeg', mode='INPUT', data='AAAA', encoding='BASE64'),
        endpointOutput=dict(observedContentType='application/json', mode='OUTPUT', encoding='BASE64',
                            data=base64.b64encode(json.dumps(b).encode()).decode())),
        eventMetadata=dict(eventId=str(i)))) for i, b in enumerate(bodies)))
    w = window_from_capture(tmp_path / 'capture')
    assert w == signals_from(bodies) and w['n'] == 40
    logs = tmp_path / 'serve.log'
    logs.write_text('\n'.join([json.dumps(dict(event='request', status=200, breed=b['predictions'][0]['breed'],
                                                probability=b['predictions'][0]['probability'], is_dog=b['is_dog'])) for b in bodies]
                              + ['not json', json.dumps(dict(event='request', status=415, error_type='X'))]))
    r = monitor(str(toy), logs=logs, min_answers=20)
    assert r['window'] == w and r['verdict'] == 'stable'
    assert monitor(str(toy), capture=tmp_path / 'capture', min_answers=20)['verdict'] == 'stable'
    with pytest.raises(Exception, match='exactly one'): monitor(str(toy), logs=logs, capture=logs)


@pytest.mark.slow
def test_real_model_two_breeds_flagged(trained_run, tmp_path):
    "A trained model: its manifest holds the baseline from its validation metrics; two breeds only is drift, a random val half is not."
    model = trained_run.run_dir / 'model'
    base = json.loads((model / 'manifest.json').read_text())['baseline']
    assert base['n'] == len(VAL) and sum(base['top1']['counts']) == base['n'] and len(base['breeds']) >= 2
    by = {}
    for f in VAL: by.setdefault(f.parent.name, []).append(f)
    two = [f for k in sorted(by)[:2] for f in by[k]]
    batch_predict(folder(tmp_path / 'two', two), tmp_path / 'two.csv', str(model), k=1)
    batch_predict(folder(tmp_path / 'half', random.Random(0).sample(VAL, 40)), tmp_path / 'half.csv', str(model), k=1)
    r2 = monitor(str(model), predictions=tmp_path / 'two.csv', min_answers=10)
    rh = monitor(str(model), predictions=tmp_path / 'half.csv', min_answers=10)
    assert r2['drift'] and [s['signal'] for s in r2['signals'] if s['drift']][0] == 'breeds', r2
    assert not rh['drift'], rh
