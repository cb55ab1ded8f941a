"Sharded batch prediction (`dogbreeds predict --shard I/N`, `--merge`): exact cover, resuming, refusals, and the merge."
import copy, json, shutil
from pathlib import Path

import pytest

from conftest import SAMPLE
from dogbreeds.sources import open_source, shard_key
from dogbreeds.results import ResultsError, open_results, read_results
from dogbreeds.shards import job_file, merge_shards, parse_shard, shard_file, shard_of
from dogbreeds.predict import batch_predict
from dogbreeds.cli import main
from dogbreeds.core import ParameterError

K = 3


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "60 real sample photos in nested folders, and a file that is not a photo (a row with its error)."
    d = tmp_path_factory.mktemp('photos') / 'in'
    for i, p in enumerate(sorted(SAMPLE.rglob('*.JPEG'))[::4][:60]):
        dst = d / f'g{i % 3}' / p.name; dst.parent.mkdir(parents=True, exist_ok=True); shutil.copy(p, dst)
    (d / 'g0' / 'broken.jpg').write_bytes(b'not a photo')
    return d


def run(src, out, toy_pred, **kw): return batch_predict(src, out, toy_pred, k=K, batch_size=8, progress=False, **kw)


@pytest.mark.parametrize('fmt', ['csv', 'parquet'])
def test_three_shards_cover_every_photo_once_and_merge_equals_one_run(toy_pred, photos, tmp_path, fmt):
    single = tmp_path / f'single.{fmt}'
    assert run(photos, single, toy_pred)['items'] == 61
    out = tmp_path / 'job' / f'results.{fmt}'
    parts = [run(photos, out, toy_pred, shard=f'{i}/3') for i in range(3)]
    sources = [[r['source'] for r in read_results(shard_file(out, i, 3))] for i in range(3)]
    flat = [s for part in sources for s in part]
    assert sorted(flat) == [r['source'] for r in read_results(single)], "every photo once, none twice"
    assert all(15 <= len(s) <= 26 for s in sources), [len(s) for s in sources]  # a hash split: about a third each
    assert [p['predicted'] for p in parts] == [len(s) for s in sources]
    assert json.loads(job_file(out).read_text())['shards'] == 3
    m = merge_shards(out)
    assert (m['rows'], m['shards'], m['errors']) == (61, 3, 1)
    assert read_results(out) == read_results(single), "the merge is what one process writes"


def test_split_depends_on_the_name_under_src_not_the_mount_point(toy_pred, photos, tmp_path):
    other = tmp_path / 'elsewhere' / 'mounted'
    shutil.copytree(photos, other)
    def split(root):
        s = open_source(str(root))
        return {shard_key(s, it): shard_of(shard_key(s, it), 4) for it in s.list()}
    a, b = split(photos), split(other)
    assert a == b and len(a) == 61 and set(a.values()) == {0, 1, 2, 3}
    assert all(k.startswith('g') and '/' in k for k in a)  # relative names: g0/n0209....JPEG


class Interrupt(BaseException): pass


def test_killed_shard_resumes_with_resume_only(toy_pred, photos, tmp_path):
    out = tmp_path / 'results.csv'
    p, calls = copy.copy(toy_pred), []
    def predict_prepared(x, k):
        calls.append(1)
        if len(calls) == 2: raise Interrupt()  # the pod is killed during its second batch
        return toy_pred.predict_prepared(x, k)
    p.predict_prepared = predict_prepared
    with pytest.raises(Interrupt): run(photos, out, p, shard='1/3')
    f = shard_file(out, 1, 3)
    assert len(read_results(f)) == 8, "the first batch is kept"
    with pytest.raises(ResultsError, match='not finished|have not finished'):
        for i in (0, 2): run(photos, out, toy_pred, shard=f'{i}/3')
        merge_shards(out)
    with pytest.raises(ResultsError, match='--resume'): run(photos, out, toy_pred, shard='1/3')
    r = run(photos, out, toy_pred, shard='1/3', resume=True)
    assert r['skipped'] == 8 and r['predicted'] == r['items'] - 8
    merge_shards(out)
    single = tmp_path / 'single.csv'; run(photos, single, toy_pred)
    assert read_results(out) == read_results(single)


def test_another_jobs_results_are_refused(toy_pred, photos, tmp_path):
    out = tmp_path / 'results.csv'
    run(photos, out, toy_pred, shard='0/2')
    with pytest.raises(ResultsError, match='another job.*shards 2'): run(photos, out, toy_pred, shard='0/3', resume=True)
    with pytest.raises(ResultsError, match='another job.*src'): run(photos / 'g1', out, toy_pred, shard='1/2', resume=True)
    with pytest.raises(ResultsError, match='another job.*k 3'):
        batch_predict(photos, out, toy_pred, k=2, shard='1/2', progress=False)
    with pytest.raises(ResultsError, match='1 of the 2 shards.*not finished \\(1\\)'): merge_shards(out)
    run(photos, out, toy_pred, shard='1/2'); merge_shards(out)
    with pytest.raises(ResultsError, match='merged results.*--resume'): run(photos, out, toy_pred, shard='1/2')
    with pytest.raises(ResultsError, match='is the job over'): merge_shards(out, src=str(photos / 'g1'))
    with pytest.raises(ResultsError, match='no sharded job'): merge_shards(tmp_path / 'other.csv')


@pytest.mark.parametrize('spec', ['3/2', '0/0', 'a/b', '1', '1/2/3', '-1/2', ''])
def test_bad_shard_is_a_one_line_error(spec, toy_pred, photos, tmp_path, capsys):
    with pytest.raises(ParameterError): parse_shard(spec)
    with pytest.raises(SystemExit) as e:
        main(['predict', str(photos), '--out', str(tmp_path / 'r.csv'), '--model', str(toy_pred.model_dir), f'--shard={spec}'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count('\n') == 1 and err.startswith('dogbreeds: error: --shard'), err
    assert not list(tmp_path.iterdir()), "nothing written"


def test_cli_shards_and_merge(toy_pred, photos, tmp_path, capsys):
    out = tmp_path / 'results.parquet'
    for i in range(2):
        main(['predict', str(photos), '--out', str(out), '--model', str(toy_pred.model_dir), '--shard', f'{i}/2', '--quiet', '-k', '3'])
    main(['predict', '--merge', '--out', str(out)])
    assert '61 rows from 2 shards' in capsys.readouterr().out
    assert sorted(r['source'] for r in read_results(out)) == sorted(str(p) for p in photos.rglob('*') if p.is_file())
    with pytest.raises(SystemExit): main(['predict', '--out', str(out)])
    assert 'name the photos' in capsys.readouterr().err
    with pytest.raises(SystemExit): main(['predict', str(photos), '--out', str(tmp_path / 'x.csv'), '--resume'])
    assert '--resume goes with --shard' in capsys.readouterr().err
    with pytest.raises(SystemExit): main(['predict', 's3://b/in/', '--out', 's3://b/r.csv', '--on', 'sagemaker', '--shard', '0/2'])
    assert '--on sagemaker splits' in capsys.readouterr().err


def test_s3_source_splits_like_the_same_photos_on_disk(toy_pred, photos, s3_server, tmp_path):
    import uuid
    c, bucket = s3_server.client(), s3_server.bucket
    prefix = f'shards-{uuid.uuid4().hex[:8]}/in'
    for p in sorted(photos.rglob('*')):
        if p.is_file(): c.put_object(Bucket=bucket, Key=f'{prefix}/{p.relative_to(photos).as_posix()}', Body=p.read_bytes())
    src = f's3://{bucket}/{prefix}'
    s3, disk = open_source(src, endpoint_url=s3_server.endpoint), open_source(str(photos))
    split = lambda s: {shard_key(s, i): shard_of(shard_key(s, i), 3) for i in s.list()}
    assert split(s3) == split(disk) and len(split(s3)) == 61  # a worker reading S3 and one reading a copy agree
    out = tmp_path / 'results.csv'
    for i in range(3): run(src, out, toy_pred, shard=f'{i}/3', endpoint_url=s3_server.endpoint)
    assert merge_shards(out)['rows'] == 61
    rows = read_results(out)
    assert len({r['source'] for r in rows}) == 61 and all(r['source'].startswith(src + '/') for r in rows)


@pytest.mark.parametrize('fmt', ['csv', 'parquet'])
def test_merge_streams_unsorted_shards_into_the_same_file(toy_pred, photos, tmp_path, fmt, monkeypatch):
    """The merge sorts each shard and merges them as streams: shards whose rows are out of order (a resumed
    or retried shard appends where it can) give the very file the in-memory sort-everything merge wrote, row groups
    included; a photo in two shards is refused and leaves no output."""
    import dogbreeds.results, dogbreeds.shards
    for m in (dogbreeds.results, dogbreeds.shards):  # several row groups, and a chunk boundary inside a shard
        monkeypatch.setattr(m, 'ROW_GROUP', 7)
    out = tmp_path / 'job' / f'results.{fmt}'
    for i in range(3): run(photos, out, toy_pred, shard=f'{i}/3')
    job = json.loads(job_file(out).read_text())
    def rewrite(f, rows):
        f.unlink()
        with open_results(f, job['k'], tuple(job['model'])) as r: r.append(rows)
    for i in range(3):  # every shard's rows in reverse order
        f = shard_file(out, i, 3); rewrite(f, read_results(f)[::-1])
    # what the former merge wrote: every row in memory, sorted, appended a row group at a time
    ref = tmp_path / f'reference.{fmt}'
    rows = sorted((r for i in range(3) for r in read_results(shard_file(out, i, 3))), key=lambda r: r['source'])
    with open_results(ref, job['k'], tuple(job['model'])) as r:
        for j in range(0, len(rows), 7): r.append(rows[j:j + 7])
    m = merge_shards(out)
    assert (m['rows'], m['errors']) == (61, 1)
    assert read_results(out) == read_results(ref) and [r['source'] for r in read_results(out)] == sorted(r['source'] for r in rows)
    if fmt == 'csv': assert out.read_bytes() == ref.read_bytes()
    else:
        import pyarrow.parquet as pq
        assert pq.ParquetFile(out).metadata.num_row_groups == pq.ParquetFile(ref).metadata.num_row_groups == 9
    assert not list(out.parent.glob('.*')), "no temporary file left"
    # a photo in two shards: refused, and the merged file is left as it was
    before = out.read_bytes()
    f1 = shard_file(out, 1, 3)
    rewrite(f1, read_results(f1) + read_results(shard_file(out, 0, 3))[:1])
    with pytest.raises(ResultsError, match='hold a photo twice'): merge_shards(out)
    assert out.read_bytes() == before and not list(out.parent.glob('.*'))
