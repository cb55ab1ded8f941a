"""Batch prediction benchmark: `dogbreeds predict` against the bare model, on the same photos, in one run.

    python benchmarks/batch.py                       # newest exported_models/*/model (trains one if none)
    python benchmarks/batch.py --model exported_models/<run>/model --copies 2 --reps 3

Rows:
  onnxruntime floor     bare `session.run` of model.onnx on ready uint8 tensors, batches of 64: the
                        photos decoded beforehand, resized to one common shape, stacked (no decoding,
                        no files, no output)
  batch_predict         `dogbreeds.predict.batch_predict` (the work of `dogbreeds predict`) on a folder
                        of the same photos into a fresh CSV: listing, reading, decoding, preprocessing,
                        classifying and writing included; model loaded beforehand
  dogbreeds predict     the command in a fresh process, wall time: start, imports and model load included

Throughput is photos per second, the median of `--reps` runs taken in turn (the machine may be
shared: interleaving spreads its load over both). The goal is batch_predict >= 85% of the floor.

    python benchmarks/batch.py --shard --model M   # sharding: 1 process against 2 shards in parallel

With `--shard`, each row is `dogbreeds predict` in fresh processes on the same folder, wall time:
  1 process             one `dogbreeds predict` over every photo
  2 shards in parallel  `--shard 0/2` and `--shard 1/2` started together (each with its default ONNX Runtime
                        threads, then with --threads 1), until both have finished
  merge                 `merge_shards` of the two shard files into one
and writes the figures to benchmarks/results/batch_shards.json (the capacity model reads the throughput).
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

from conditions import Conditions

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / 'data' / 'sample'


def copy_sample(photos, folder, copies):
    "`copies` copies of `photos` under `folder` (one subfolder per copy, breed folders inside): `(folder, count)`."
    for c in range(copies):
        for p in photos:
            d = folder / str(c) / p.parent.name; d.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, d / p.name)
    return folder, len(photos) * copies


def find_model(arg):
    if arg: return Path(arg)
    models = sorted((p.parent for p in (ROOT / 'exported_models').glob('*/model/manifest.json')), key=lambda p: p.stat().st_mtime)
    if models: return models[-1]
    print('no exported model found: training a quick one on the sample (one frozen epoch)')
    from dogbreeds.train import train
    return train('sample', epochs=0, freeze_epochs=1, lr=2e-3, quiet=True,
                 run_name=f"bench-batch-{time.strftime('%Y%m%d-%H%M%S')}").run_dir / 'model'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', help='an exported model folder')
    ap.add_argument('--copies', type=int, default=2, help='copies of the 280 sample photos in the folder')
    ap.add_argument('--reps', type=int, default=3, help='timed runs of each')
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--shard', action='store_true', help='1 process against 2 shards in parallel, and the merge')
    ap.add_argument('--photos', type=int, default=None, help='only the first N sample photos (a smoke run)')
    ap.add_argument('--out', default=None, help='results JSON (default: benchmarks/results/batch.json, batch_shards.json with --shard)')
    a = ap.parse_args()
    a.cond = Conditions()
    model = find_model(a.model)
    if a.shard: return shard_bench(model, a)

    import onnxruntime as ort
    from PIL import Image
    from dogbreeds.core import load_rgb
    from dogbreeds.inference import Predictor
    from dogbreeds.predict import batch_predict

    photos = sorted(SAMPLE.rglob('*.JPEG'))[:a.photos]
    work = Path(tempfile.mkdtemp(prefix='bench-batch-'))
    try:
        folder, n = copy_sample(photos, work / 'photos', a.copies)

        # the floor's input: every photo decoded, resized to the commonest shape, in batches
        ready = [np.asarray(load_rgb(p.read_bytes())) for p in photos] * a.copies
        shapes = [r.shape for r in ready]
        h, w, _ = max(set(shapes), key=shapes.count)
        ready = np.stack([r if r.shape == (h, w, 3) else np.asarray(Image.fromarray(r).resize((w, h))) for r in ready])
        batches = [np.ascontiguousarray(ready[i:i + a.batch_size]) for i in range(0, n, a.batch_size)]
        sess = ort.InferenceSession(str(model / 'model.onnx'), providers=['CPUExecutionProvider'])
        name = sess.get_inputs()[0].name
        pred = Predictor.load(model)
        print(f"model {model}; {n} photos ({a.copies} x the {len(photos)} of data/sample, {len(set(shapes))} sizes, "
              f"floor at {h}x{w}); batch {a.batch_size}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}\n")

        def floor():
            t = time.perf_counter()
            for b in batches: sess.run(None, {name: b})
            return n / (time.perf_counter() - t)

        runs = iter(range(10**6))
        def api():
            r = batch_predict(folder, work / f'api-{next(runs)}.csv', pred, batch_size=a.batch_size, progress=False)
            assert r['predicted'] == n and r['errors'] == 0, r
            return n / r['seconds']

        def cli():
            t = time.perf_counter()
            r = subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'predict', str(folder), '--out', str(work / f'cli-{next(runs)}.csv'),
                                '--model', str(model), '--batch-size', str(a.batch_size), '--quiet'],
                               capture_output=True, text=True, cwd=ROOT)
            if r.returncode: raise SystemExit(r.stderr)
            return n / (time.perf_counter() - t)

        floor(); api()  # warm up: first session runs, page cache
        got = {'onnxruntime floor': [], 'batch_predict': [], 'dogbreeds predict': []}
        for _ in range(a.reps):
            got['onnxruntime floor'].append(floor())
            got['batch_predict'].append(api())
            got['dogbreeds predict'].append(cli())
        med = {k: statistics.median(v) for k, v in got.items()}
        print(f"{'':22}{'photos/s (median)':>19}   runs")
        for k, v in got.items(): print(f"{k:22}{med[k]:19.1f}   {', '.join(f'{x:.1f}' for x in v)}")
        f = med['onnxruntime floor']
        print(f"\nbatch_predict:     {med['batch_predict'] / f:.0%} of the floor's throughput (goal >= 85%)")
        print(f"dogbreeds predict: {med['dogbreeds predict'] / f:.0%} of the floor's, process start and model load included")
        a.cond.save(a.out or ROOT / 'benchmarks' / 'results' / 'batch.json',
                    dict(model=str(model), photos=n, batch_size=a.batch_size, reps=a.reps, runs=got,
                         photos_per_s=med, errors=0), onnxruntime_threads='its own choice')
    finally:
        shutil.rmtree(work, ignore_errors=True)


def shard_bench(model, a):
    import json, platform
    from dogbreeds.shards import merge_shards
    photos = sorted(SAMPLE.rglob('*.JPEG'))[:a.photos]
    work = Path(tempfile.mkdtemp(prefix='bench-shard-'))
    try:
        folder, n = copy_sample(photos, work / 'photos', a.copies)
        runs = iter(range(10**6))
        def cmd(out, *extra):
            return [sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'predict', str(folder), '--out', str(out),
                    '--model', str(model), '--batch-size', str(a.batch_size), '--quiet', *extra]
        def one():
            t = time.perf_counter()
            subprocess.run(cmd(work / f'one-{next(runs)}.csv'), check=True, capture_output=True, cwd=ROOT)
            return n / (time.perf_counter() - t), None
        def two(*extra):
            out = work / f'two-{next(runs)}' / 'results.csv'
            t = time.perf_counter()
            ps = [subprocess.Popen(cmd(out, '--shard', f'{i}/2', *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT) for i in range(2)]
            for p in ps:
                if p.wait(): raise SystemExit(p.stderr.read().decode())
            wall = time.perf_counter() - t
            t = time.perf_counter(); m = merge_shards(out); merge = time.perf_counter() - t
            assert m['rows'] == n, m
            return n / wall, merge
        one()  # warm up: page cache, imports
        rows = {'1 process': one, '2 shards in parallel': two, '2 shards, --threads 1 each': lambda: two('--threads', '1')}
        got = {k: [] for k in rows}
        for _ in range(a.reps):
            for k, f in rows.items(): got[k].append(f())
        print(f"model {model}; {n} photos; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
        print(f"{'':28}{'photos/s (median)':>19}{'merge s':>10}   runs")
        med = {}
        for k, v in got.items():
            med[k] = statistics.median(x for x, _ in v)
            merges = [m for _, m in v if m is not None]
            print(f"{k:28}{med[k]:19.1f}{(statistics.median(merges) if merges else float('nan')):10.3f}   {', '.join(f'{x:.1f}' for x, _ in v)}")
        base = med['1 process']
        for k in list(rows)[1:]: print(f"{k}: {med[k] / base:.2f}x one process")
        res = dict(photos=n, cpus=os.cpu_count(), load_average=round(os.getloadavg()[0], 1), model=str(model), reps=a.reps,
                   photos_per_s={k: round(v, 2) for k, v in med.items()},
                   merge_s=round(statistics.median(m for v in got.values() for _, m in v if m is not None), 3),
                   measured=time.strftime('%Y-%m-%dT%H:%M:%S'), errors=0)
        a.cond.save(a.out or ROOT / 'benchmarks' / 'results' / 'batch_shards.json', res)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__': main()
