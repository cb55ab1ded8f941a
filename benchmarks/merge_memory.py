#!/usr/bin/env python
"""Time and peak traced Python memory (tracemalloc) of `merge_shards`, which streams, against the former merge, which
sorted every row of the job in memory: 3 shards of ROWS_PER_SHARD synthetic rows each.

    python benchmarks/merge_memory.py ROWS_PER_SHARD csv|parquet [--out FILE.json]
"""
import argparse, json, shutil, sys, tempfile, time, tracemalloc
from pathlib import Path
from dogbreeds.predict import batch_predict
from dogbreeds.results import ROW_GROUP, open_results, read_results, results_format
from dogbreeds.shards import job_file, merge_shards, shard_file
from dogbreeds.testing import toy_model
from dogbreeds.inference import Predictor
from conditions import Conditions

ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
ap.add_argument('rows', type=int, help='rows per shard'); ap.add_argument('fmt', choices=['csv', 'parquet'])
ap.add_argument('--out', default=None, help='results JSON (default: benchmarks/results/merge_memory-FMT.json)')
args = ap.parse_args()
cond, res = Conditions(), {}
N_PER_SHARD, FMT = args.rows, args.fmt
d = Path(tempfile.mkdtemp())
photos = d/'in'; photos.mkdir()
for p in sorted((Path(__file__).resolve().parent.parent/'data'/'sample').rglob('*.JPEG'))[:6]: shutil.copy(p, photos/p.name)
pred = Predictor.load(toy_model(d/'model'))
out = d/'job'/f'results.{FMT}'
for i in range(3): batch_predict(photos, out, pred, k=3, progress=False, shard=f'{i}/3')
job = json.loads(job_file(out).read_text())
tmpl = read_results(shard_file(out, 0, 3))[0]
for i in range(3):
    f = shard_file(out, i, 3); f.unlink()
    with open_results(f, job['k'], tuple(job['model'])) as r:
        for j in range(0, N_PER_SHARD, 50_000):
            r.append([dict(tmpl, source=f"s3://bucket/photos/{(k * 7919) % (3 * N_PER_SHARD):09d}-{i}.jpg")
                      for k in range(j, min(j + 50_000, N_PER_SHARD))])

def old_merge(out):
    out = Path(out); fmt = results_format(out); job = json.loads(job_file(out).read_text())
    rows = []
    for i in range(job['shards']): rows += read_results(shard_file(out, i, job['shards']))
    rows.sort(key=lambda r: r['source'])
    with fmt(out, job['k'], tuple(job['model'])) as res:
        for j in range(0, len(rows), ROW_GROUP): res.append(rows[j:j + ROW_GROUP])

for name, f in [('streaming (merge_shards)', merge_shards), ('in memory (former)', old_merge)]:
    if out.exists(): out.unlink()
    t = time.perf_counter(); f(out); dt = time.perf_counter() - t  # time without tracing
    out.unlink()
    tracemalloc.start(); f(out); peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    print(f"{FMT} {3 * N_PER_SHARD:,} rows, {name}: {dt:.1f} s, peak traced Python memory {peak / 2**20:,.0f} MiB")
    res[name] = dict(seconds=dt, peak_mib=peak / 2**20)
shutil.rmtree(d)
cond.save(args.out or Path(__file__).resolve().parent / 'results' / f'merge_memory-{FMT}.json',
          dict(rows=3 * N_PER_SHARD, format=FMT, runs=res, errors=0))
