"Batch prediction: folder, glob and s3:// sources; CSV and Parquet outputs; resuming; bad files recorded, never fatal."
import copy, csv, os, shutil, subprocess, sys, uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE
from dogbreeds.sources import SourceError
from dogbreeds.results import ResultsError, open_results, read_results, result_columns
from dogbreeds.predict import batch_predict, model_id
from dogbreeds.inference import Predictor

K = 3


@pytest.fixture(scope='module')
def pred(model_dir): return Predictor.load(model_dir)


@pytest.fixture(scope='module')
def photos():
    "Twelve real photos of several breeds and sizes."
    return sorted(SAMPLE.rglob('*.JPEG'))[::23][:12]


@pytest.fixture(scope='module')
def expected(pred, photos):
    "What `Predictor.predict` says of each photo, by its bytes' file name."
    return {p.name: pred.predict(p, k=K) for p in photos}


@pytest.fixture
def folder(tmp_path, photos):
    "A folder of photos in two levels, with a non-image file, a hidden file and a hidden folder that are left out."
    d = tmp_path / 'photos'
    for i, p in enumerate(photos):
        dst = d / ('a' if i % 2 else 'b') / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    (d / 'notes.txt').write_text('not listed')
    shutil.copy(photos[0], d / '.hidden.JPEG')
    (d / '.cache').mkdir(); shutil.copy(photos[0], d / '.cache' / 'x.JPEG')
    return d


def bad_files(d: Path, photo: Path) -> dict:
    "Write unusable photos into `d`: name -> the error type their row must name."
    data = photo.read_bytes()
    bad = {'empty.jpg': (b'', 'EmptyImageError'), 'text.jpg': (b'{"not": "a photo"}', 'NotAnImageError'),
           'truncated.jpg': (data[: len(data) // 3], 'CorruptImageError')}
    for name, (b, _) in bad.items(): (d / name).write_bytes(b)
    return {name: e for name, (_, e) in bad.items()}


def check_rows(rows, expected, k=K):
    "Every classified row says what `Predictor.predict` says of its photo."
    for r in rows:
        if r['error']: continue
        want = expected[Path(r['source'].split('/')[-1]).name]
        assert [r['breed']] + [r[f'breed_{i}'] for i in range(2, k + 1)] == [b for b, _ in want]
        got = [r['probability']] + [r[f'probability_{i}'] for i in range(2, k + 1)]
        np.testing.assert_allclose(got, [p for _, p in want], atol=1e-5)


def test_folder_to_csv_matches_predict(pred, folder, photos, expected, tmp_path):
    out = tmp_path / 'results.csv'
    r = batch_predict(folder, out, pred, k=K, batch_size=5, progress=False)
    assert (r['items'], r['predicted'], r['skipped'], r['errors']) == (12, 12, 0, 0)
    rows = read_results(out)
    assert [r['source'] for r in rows] == sorted(str(p) for d in 'ab' for p in (folder / d).glob('*.JPEG'))
    assert all(os.path.isabs(r['source']) for r in rows)
    check_rows(rows, expected)
    assert {(r['model'], r['model_version']) for r in rows} == {model_id(pred)}
    with open(out, newline='') as f: assert next(csv.reader(f)) == result_columns(K)


def test_glob_to_parquet(pred, folder, expected, tmp_path):
    import pyarrow.parquet as pa  # the dev extra installs pyarrow (the parquet extra)
    out = tmp_path / 'results.parquet'
    r = batch_predict(str(folder / 'a' / '*.JPEG'), out, pred, k=K, batch_size=4, progress=False)
    assert (r['items'], r['predicted'], r['errors']) == (6, 6, 0)
    t = pa.read_table(out)
    assert t.column_names == result_columns(K) and t.num_rows == 6
    assert str(t.schema.field('probability').type) == 'float'
    check_rows(read_results(out), expected)
    assert not list(tmp_path.glob('.results.parquet*')), "the part files are merged and removed"


def test_bad_files_are_recorded_and_the_rest_classified(pred, folder, photos, expected, tmp_path):
    bad = bad_files(folder / 'a', photos[0])
    out = tmp_path / 'results.csv'
    r = batch_predict(folder, out, pred, k=K, batch_size=4, progress=False)
    assert (r['items'], r['predicted'], r['errors']) == (15, 15, 3)
    rows = {Path(r['source']).name: r for r in read_results(out)}
    for name, err in bad.items():
        assert rows[name]['error'].startswith(err + ':'), rows[name]
        assert rows[name]['breed'] is None and rows[name]['probability'] is None
    good = [r for n, r in rows.items() if n not in bad]
    assert len(good) == 12 and not any(r['error'] for r in good)
    check_rows(good, expected)
    # resuming skips the error rows too, unless asked to retry them
    assert batch_predict(folder, out, pred, k=K, progress=False)['predicted'] == 0
    (folder / 'a' / 'text.jpg').write_bytes(photos[1].read_bytes())  # fixed since
    r = batch_predict(folder, out, pred, k=K, progress=False, retry_errors=True)
    assert (r['skipped'], r['predicted'], r['errors']) == (12, 3, 2)
    rows = read_results(out)
    assert len(rows) == 15 and len({r['source'] for r in rows}) == 15
    assert [r['breed'] for r in rows if r['source'].endswith('text.jpg')] == [expected[photos[1].name][0][0]]


class Interrupt(BaseException): pass


def stop_after(pred, n):
    "A copy of `pred` whose classifier is interrupted on its `n`-th call (as Ctrl-C would stop a run)."
    p, calls = copy.copy(pred), []
    def classify_prepared(x, k):
        calls.append(len(x))
        if len(calls) == n: raise Interrupt()
        return pred.classify_prepared(x, k)
    p.classify_prepared = classify_prepared
    return p


@pytest.mark.parametrize('fmt', ['csv', 'parquet'])
def test_resume_after_interruption(pred, folder, expected, tmp_path, fmt):
    out = tmp_path / f'results.{fmt}'
    with pytest.raises(Interrupt): batch_predict(folder, out, stop_after(pred, 3), k=K, batch_size=5, progress=False)
    first = read_results(out)
    assert len(first) == 10, "the two chunks finished before the interruption are kept"
    check_rows(first, expected)
    r = batch_predict(folder, out, pred, k=K, batch_size=5, progress=False)
    assert (r['skipped'], r['predicted']) == (10, 2)
    rows = read_results(out)
    assert rows[:10] == first and len({r['source'] for r in rows}) == 12
    check_rows(rows, expected)


def test_csv_cut_mid_row_is_repaired(pred, folder, expected, tmp_path, capsys):
    out = tmp_path / 'results.csv'
    batch_predict(folder, out, pred, k=K, batch_size=5, progress=False)
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) - 40])  # the power went out in the middle of the last row
    r = batch_predict(folder, out, pred, k=K, batch_size=5, progress=False)
    assert (r['skipped'], r['predicted']) == (11, 1)
    assert 'incomplete last row' in capsys.readouterr().err
    rows = read_results(out)
    assert len(rows) == 12 and len({r['source'] for r in rows}) == 12
    check_rows(rows, expected)
    # damage anywhere but the end is refused, and the file is left as it is
    lines = out.read_bytes().split(b'\n')
    lines[3] = lines[3][:20]
    out.write_bytes(b'\n'.join(lines))
    before = out.read_bytes()
    with pytest.raises(ResultsError, match='damaged'): batch_predict(folder, out, pred, k=K, progress=False)
    assert out.read_bytes() == before


def test_parquet_killed_before_merge(pred, folder, expected, tmp_path):
    "A run killed mid-way leaves complete part files (and perhaps a half-written one): the next run keeps and merges them."
    from dogbreeds.predict import predict_rows
    out = tmp_path / 'results.parquet'
    items = sorted(str(p) for p in (folder / 'b').glob('*.JPEG'))
    res = open_results(out, K, model_id(pred))
    for rows in predict_rows(pred, items, k=K, batch_size=4): res.append(rows)
    (res.parts / '.part-00000009.parquet.dead.tmp').write_bytes(b'PAR1 half')  # a write cut short
    res.close(merge=False)  # the process dies: no merge, the lock goes with it
    assert not out.exists() and len(list(res.parts.glob('part-*'))) == 2
    r = batch_predict(folder, out, pred, k=K, batch_size=4, progress=False)
    assert (r['skipped'], r['predicted']) == (6, 6)
    rows = read_results(out)
    assert len(rows) == 12 and len({r['source'] for r in rows}) == 12
    check_rows(rows, expected)
    assert not res.parts.exists()


def test_s3_prefix(pred, s3_server, photos, expected, tmp_path, monkeypatch):
    c, bucket = s3_server.client(), s3_server.bucket
    prefix = f'batch-{uuid.uuid4().hex[:8]}/incoming'
    for i, p in enumerate(photos[:6]): c.put_object(Bucket=bucket, Key=f'{prefix}/{i % 2}/{p.name}', Body=p.read_bytes())
    c.put_object(Bucket=bucket, Key=f'{prefix}/broken.jpg', Body=b'not a photo')
    c.put_object(Bucket=bucket, Key=f'{prefix}/readme.txt', Body=b'not listed')
    c.put_object(Bucket=bucket, Key=f'{prefix}-other/x.JPEG', Body=photos[0].read_bytes())  # another prefix: not listed
    out = tmp_path / 'results.csv'
    r = batch_predict(f's3://{bucket}/{prefix}', out, pred, k=K, batch_size=4, progress=False, endpoint_url=s3_server.endpoint)
    assert (r['items'], r['predicted'], r['errors']) == (7, 7, 1)
    rows = {x['source']: x for x in read_results(out)}
    assert all(s.startswith(f's3://{bucket}/{prefix}/') for s in rows)
    assert rows[f's3://{bucket}/{prefix}/broken.jpg']['error'].startswith('NotAnImageError')
    check_rows(rows.values(), expected)
    # the CLI, with the endpoint from the environment: everything is done already
    from dogbreeds.cli import main
    monkeypatch.setenv('AWS_ENDPOINT_URL', s3_server.endpoint)
    main(['predict', f's3://{bucket}/{prefix}/', '--out', str(out), '--model', str(pred.model_dir), '-k', str(K), '--quiet'])
    assert len(read_results(out)) == 7
    with pytest.raises(SourceError, match='does not exist'):
        batch_predict(f's3://no-such-bucket-{uuid.uuid4().hex[:6]}/x', tmp_path / 'o.csv', pred, progress=False,
                      endpoint_url=s3_server.endpoint)
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'wrong')
    with pytest.raises(SourceError, match='AWS_SECRET_ACCESS_KEY'):
        batch_predict(f's3://{bucket}/{prefix}', tmp_path / 'o.csv', pred, progress=False, endpoint_url=s3_server.endpoint)
    assert not (tmp_path / 'o.csv').exists()


def test_cli(model_dir, folder, expected, tmp_path, monkeypatch, capsys):
    from dogbreeds.cli import main
    out = tmp_path / 'r.csv'
    monkeypatch.setenv('DOGBREEDS_MODEL', str(model_dir))
    main(['predict', str(folder), '--out', str(out), '-k', str(K), '--batch-size', '8', '--workers', '2'])
    assert '12 photos' in capsys.readouterr().out
    check_rows(read_results(out), expected)
    def fails(code, *args):  # 2: bad usage (an option missing or refused); 1: what the options name cannot be used
        with pytest.raises(SystemExit) as e: main(['predict', *args])
        assert e.value.code == code
        return capsys.readouterr().err
    assert 'name the results file' in fails(2, str(folder))
    assert '.csv or .parquet' in fails(1, str(folder), '--out', str(tmp_path / 'r.json'))
    assert 'holds the top 3 breeds' in fails(1, str(folder), '--out', str(out), '--top-k', '5')
    assert 'no such folder' in fails(1, str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'x.csv'))
    monkeypatch.delenv('DOGBREEDS_MODEL')
    assert 'DOGBREEDS_MODEL' in fails(2, str(folder), '--out', str(tmp_path / 'x.csv'))


def test_output_of_another_model_or_kind_is_refused(pred, folder, tmp_path):
    out = tmp_path / 'r.csv'
    with open_results(out, K, ('demo', 'v1')) as res: res.append([dict(source='x', breed='a', probability=0.5, model='demo', model_version='v1')])
    with pytest.raises(ResultsError, match='holds results of model demo'): batch_predict(folder, out, pred, k=K, progress=False)
    (tmp_path / 'other.csv').write_text('name,age\nrex,3\n')
    with pytest.raises(ResultsError, match='not a dogbreeds results file'):
        batch_predict(folder, tmp_path / 'other.csv', pred, k=K, progress=False)
    assert (tmp_path / 'other.csv').read_text() == 'name,age\nrex,3\n'


def test_parquet_without_pyarrow_is_a_clear_error(pred, folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'pyarrow', None)
    with pytest.raises(ResultsError, match=r"pip install 'dogbreeds\[parquet\]'"):
        batch_predict(folder, tmp_path / 'r.parquet', pred, progress=False)


@pytest.mark.parametrize('fmt', ['csv', 'parquet'])
def test_killed_run_keeps_its_rows(model_dir, folder, expected, tmp_path, fmt):
    "A run killed with SIGKILL mid-way (no cleanup at all) leaves an output that the next run reads, keeps and completes."
    import signal, subprocess, time
    out = tmp_path / f'results.{fmt}'
    code = ("import sys, time\nfrom dogbreeds.inference import Predictor\nfrom dogbreeds.predict import batch_predict\n"
            f"p = Predictor.load({str(model_dir)!r}); c = p.classify_prepared\n"
            "def slow(x, k): time.sleep(0.5); return c(x, k)\n"  # slow enough to be killed between chunks, or in one
            f"p.classify_prepared = slow\nbatch_predict({str(folder)!r}, {str(out)!r}, p, k={K}, batch_size=2, progress=False)\n")
    proc = subprocess.Popen([sys.executable, '-c', code], env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
    parts = out.with_name(f'.{out.name}.parts')
    written = lambda: (out.exists() and out.read_bytes().count(b'\n') >= 3) if fmt == 'csv' else len(list(parts.glob('part-*'))) >= 1
    deadline = time.monotonic() + 120
    while not written() and proc.poll() is None and time.monotonic() < deadline: time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    pred = Predictor.load(model_dir)
    r = batch_predict(folder, out, pred, k=K, batch_size=4, progress=False)
    assert 2 <= r['skipped'] < 12 and r['skipped'] + r['predicted'] == 12
    rows = read_results(out)
    assert len(rows) == 12 and len({x['source'] for x in rows}) == 12
    check_rows(rows, expected)


LEAN = """
import sys
class NoPandas:  # pandas cannot be imported, as in the lean install (pyarrow imports it, unneeded, where it can)
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'pandas': raise ModuleNotFoundError("No module named 'pandas'", name='pandas')
sys.meta_path.insert(0, NoPandas())
from dogbreeds.cli import main
main(sys.argv[1:])
print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'fastai', 'pandas'}))
"""


def test_runs_on_the_lean_runtime(model_dir, folder, tmp_path):
    "`dogbreeds predict` imports neither torch, torchvision nor fastai, and writes Parquet with pyarrow alone (no pandas)."
    out = tmp_path / 'r.parquet'
    r = subprocess.run([sys.executable, '-c', LEAN, 'predict', str(folder), '--out', str(out), '--model', str(model_dir), '--quiet'],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == '[]' and len(read_results(out)) == 12
