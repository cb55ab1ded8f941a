"""Every script in benchmarks/ runs, on a tiny setting, so that none can rot unseen: each must finish, report 0 errors
and write its JSON with the conditions it ran under (load average before and after, thread settings). Their figures
are not checked here: timings are taken on a quiet machine (see each script's docstring)."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from conftest import ROOT

BENCH = ROOT / 'benchmarks'
SMOKED = {'accuracy', 'batch', 'coldstart', 'feedback_token', 'geo', 'inference', 'int8', 'load', 'merge_memory', 'options',
          'phone', 'registry', 'serve_size'}


def bench(script:str, *args, out:Path, timeout:int=600) -> dict:
    "Run `benchmarks/SCRIPT.py ARGS --out OUT` in a fresh interpreter; its JSON, checked."
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'MPLBACKEND': 'Agg'}
    r = subprocess.run([sys.executable, str(BENCH / f'{script}.py'), *map(str, args), '--out', str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    c = res['conditions']
    assert len(c['load_average_before']) == 3 and len(c['load_average_after']) == 3 and c['threads']['cpus'] == os.cpu_count()
    assert res.get('errors') == 0, res
    return res


def test_every_benchmark_has_a_smoke_test():
    scripts = {p.stem for p in BENCH.glob('*.py')} - {'conditions'}
    assert scripts == SMOKED, f"benchmarks without a smoke test here: {scripts - SMOKED}"


def test_phone(toy_dir, tmp_path):
    r = bench('phone', '--model', toy_dir, '-n', 2, '--agree', 2, '--pixels', '1008x756', out=tmp_path / 'p.json')
    assert r['agreement_serving']['photos'] == 2 and r['agreement_coarsest']['photos'] == 2 and len(r['photos']) == 2


def test_phone_writes_noisy_12mp_jpegs(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH / 'phone.py'), '--write', str(tmp_path), '--count', '1'], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr
    (f,) = tmp_path.glob('*.jpg')
    from PIL import Image
    assert Image.open(f).size == (4032, 3024) and 2e6 <= f.stat().st_size <= 4e6


def test_batch(toy_dir, tmp_path):
    bench('batch', '--model', toy_dir, '--copies', 1, '--reps', 1, '--photos', 8, out=tmp_path / 'b.json')
    bench('batch', '--model', toy_dir, '--copies', 1, '--reps', 1, '--photos', 8, '--shard', out=tmp_path / 's.json')


def test_load(toy_dir, tmp_path):
    r = bench('load', '--model', toy_dir, '--clients', 2, '--requests', 3, '--workers', 1, '--metrics', 'on', out=tmp_path / 'l.json')
    assert r['rows'][0]['done'] == 6


def test_geo(tmp_path):
    r = bench('geo', '--requests', 100, '--cells', 50, '--clients', 4, out=tmp_path / 'g.json')
    assert r['no_cache']['db_queries_per_1000'] > r['lru_steady']['db_queries_per_1000']  # no cache reads the database


def test_feedback_token(tmp_path):
    bench('feedback_token', '--n', 20, out=tmp_path / 'f.json')


def test_merge_memory(tmp_path):
    subprocess_out = tmp_path / 'm.json'
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, str(BENCH / 'merge_memory.py'), '2000', 'csv', '--out', str(subprocess_out)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(subprocess_out.read_text())['errors'] == 0


def test_registry(tmp_path):
    bench('registry', '--mb', 1, '--repeats', 1, out=tmp_path / 'r.json')


def test_serve_size(toy_dir, tmp_path):
    r = bench('serve_size', '--model', toy_dir, '--no-deps', out=tmp_path / 's.json')
    assert r['heavy_modules'] == []


@pytest.mark.slow
def test_coldstart(model_dir, tmp_path):
    r = bench('coldstart', '--model', model_dir, '--reps', 1, out=tmp_path / 'c.json')
    assert r['ratio_pulled_to_loaded'] <= 1.1 and 'model.pt' not in r['rows']['what the backend loads']['files']


def test_int8_variants_are_well_formed():
    "Every variant's settings are arguments `quantize` takes (the smoke run below quantizes one variant only)."
    import inspect
    sys.path.insert(0, str(BENCH))
    import int8
    for v, kw in int8.VARIANTS.items(): inspect.signature(int8.quantize).bind(Path('m'), Path('o.onnx'), None, [], **kw)


@pytest.mark.slow
def test_int8(model_dir, tmp_path):
    r = bench('int8', '--model', model_dir, '--variants', 'qdq-pc', '--val', 4, '--calib', 2, '--reps', 1, '-n', 1,
              out=tmp_path / 'i.json')
    assert set(r['rows']) == {'fp32', 'qdq-pc'} and r['val_photos'] == 4


def test_options(toy_dir, model_dir, tmp_path):
    r = bench('options', '--models', toy_dir, model_dir, '--val', 4, '--reps', 1, '-n', 1, out=tmp_path / 'o.json')
    assert len(r['rows']) >= 2 and r['val_photos'] == 4 and next(iter(r['rows'].values()))['speed_b1'] == 1


@pytest.mark.slow
def test_inference(trained_run, tmp_path):
    bench('inference', '--run', trained_run.run_dir, '-n', 3, '--cold-reps', 1, '--skip', 'phone', 'heic', 'int8',
          'coldstart', out=tmp_path / 'i.json')


def test_inference_heic(toy_dir, tmp_path):
    "The HEIC section of inference.py, on a phone photo of a quarter of 12 MP's sides: the full size takes seconds."
    r = bench('inference', '--heic-only', '--model', toy_dir, '--size', '1008x756', '-n', 2, out=tmp_path / 'h.json')
    assert r['heic']['pixels'] == '1008x756' and r['heic']['heic']['bytes'] > 0


@pytest.mark.slow
def test_accuracy(tmp_path):
    r = bench('accuracy', '--data', 'sample', '--size', 64, '--no-export', '--out-dir', tmp_path / 'runs',
              out=tmp_path / 'a.json')
    assert 0 < r['top1'] <= 1
