"""The speed and accuracy options side by side, in one run: each model folder, and each network of an ensemble alone.

    python benchmarks/options.py --models exported_models/<default run>/model exported_models/<other run>/model
    python benchmarks/options.py --models M --val 4 --reps 1 -n 1 --out /tmp/o.json       # smoke

For every model folder given (trained with `dogbreeds train --arch A --size S`), and for each network of an ensemble
alone (its graph cut at that network's own outputs, as `benchmarks/int8.py` cuts it; training that network alone fits
the same head, because the recipe chooses each member's head on its own), it prints:

- the classifier's forward time at batch 1 and batch 64 (median ms; every graph in turn within each repetition, so a
  change of load hits all of them alike) and its speed relative to the first model given;
- top-1 on the val photos (each decoded as serving decodes it and preprocessed by that model's own `preprocess.onnx`),
  and on those of them named ILSVRC2012_val_* (from ImageNet's validation set: never seen in pretraining);
- the model's size in MB.

An option is worth offering only if no other is both faster and more accurate; the table marks the dominated ones.
"""
import argparse, tempfile
from pathlib import Path

import numpy as np

from conditions import Conditions
from int8 import hits, member_graph, photos, session, size_mb, timings


def graphs(models:list, tmp:Path) -> dict:
    "Label -> (graph, model folder): each model's classifier, then each of its networks alone."
    from dogbreeds.core import read_manifest
    out = {}
    for d in map(Path, models):
        m = read_manifest(d)
        archs = m.get('ensemble', {}).get('archs') or [m.get('arch') or d.parent.name]
        size = m['preprocessing']['resize']['size']
        out[f"{'+'.join(archs)} @{size}"] = (d / 'classifier.onnx', d)
        for i, a in enumerate(archs if len(archs) > 1 else []):
            g = member_graph(d, tmp / f'{d.parent.name}-{i}.onnx', f'members.{i}')
            if g: out[f"{a} alone @{size}"] = (g, d)
    return out


def ready_inputs(folder:Path, val:list) -> list:
    "The val photos as `folder`'s classifier takes them: decoded as serving decodes, preprocessed by its own graph."
    from dogbreeds.inference import Predictor
    pre, decode = session(folder / 'preprocess.onnx'), Predictor.load(folder).decode
    name = pre.get_inputs()[0].name
    return [pre.run(None, {name: decode(f)[None]})[0] for f, _ in val]


def top1s(sess, ready:list, labels:list, unseen:np.ndarray, breeds:list) -> tuple[float, float]:
    "Top-1 on all the val photos, and on the unseen ones."
    h = hits(sess, ready, labels, breeds)
    return float(h.mean()), float(h[unseen].mean()) if unseen.any() else float('nan')


def run(models:list, n_val:int|None=None, reps:int=5, n:int=20, threads:int|None=None, data=None) -> dict:
    from dogbreeds.core import read_manifest
    val = photos('val', n_val, data)
    labels = [l for _, l in val]
    unseen = np.array([f.name.startswith('ILSVRC2012_val') for f, _ in val])
    tmp = Path(tempfile.mkdtemp(prefix='options-'))
    g = graphs(models, tmp)
    ready = {d: ready_inputs(d, val) for d in {d for _, d in g.values()}}
    sess = {k: session(p, threads) for k, (p, _) in g.items()}
    rows = timings(sess, {k: ready[d] for k, (_, d) in g.items()}, reps, n)
    for k, (p, d) in g.items():
        acc, acc_unseen = top1s(sess[k], ready[d], labels, unseen, read_manifest(d)['breeds'])
        rows[k].update(top1=acc, unseen_top1=acc_unseen, mb=size_mb(p, d if p.name == 'classifier.onnx' else None))
    first = rows[next(iter(rows))]
    for k, r in rows.items():
        r.update(speed_b1=first['batch1_ms'] / r['batch1_ms'], speed_b64=first['batch64_ms'] / r['batch64_ms'])
        r['dominated_by'] = [o for o, q in rows.items() if o != k and q['top1'] > r['top1']
                             and q['batch1_ms'] < r['batch1_ms'] and q['batch64_ms'] < r['batch64_ms']]
    print(f"\nclassifier forward, ms (median of {reps}); top-1 on {len(labels)} val photos ({int(unseen.sum())} unseen)")
    print(f"{'option':44}{'MB':>6}{'batch 1':>9}{'speed':>7}{'batch 64':>10}{'speed':>7}{'top-1':>8}{'unseen':>8}")
    for k, r in rows.items():
        print(f"{k:44}{r['mb']:6.1f}{r['batch1_ms']:9.2f}{r['speed_b1']:7.2f}{r['batch64_ms']:10.1f}{r['speed_b64']:7.2f}"
              f"{r['top1']:8.2%}{r['unseen_top1']:8.2%}" + (f"  slower and less accurate than {r['dominated_by'][0]}"
                                                             if r['dominated_by'] else ''))
    import shutil; shutil.rmtree(tmp, ignore_errors=True)
    return dict(models=[str(m) for m in models], val_photos=len(labels), unseen_photos=int(unseen.sum()), reps=reps, n=n,
                rows=rows, errors=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--models', nargs='+', required=True, help='exported model folders; speeds are relative to the first')
    ap.add_argument('--val', type=int, default=None, help='val photos for top-1 (default: all)')
    ap.add_argument('--reps', type=int, default=5); ap.add_argument('-n', type=int, default=20, help='batch-1 runs per repetition')
    ap.add_argument('--threads', type=int, default=None, help='ONNX Runtime intra-op threads (default: its own choice)')
    ap.add_argument('--data', help='an Imagewoof folder with val/ (default: ../shared/datasets/imagewoof2-160, else the sample)')
    ap.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results' / 'options.json'))
    a = ap.parse_args()
    cond = Conditions()
    res = run(a.models, a.val, a.reps, a.n, a.threads, a.data)
    cond.save(a.out, res, onnxruntime_threads=a.threads)


if __name__ == '__main__':
    main()
