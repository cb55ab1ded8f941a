"""Accuracy benchmark: the default training recipe on the full Imagewoof 2 (160 px) validation split.

    python benchmarks/accuracy.py                                   # the default recipe (what `dogbreeds train` does)
    python benchmarks/accuracy.py --arch efficientnet_lite2         # one network instead of the ensemble
    python benchmarks/accuracy.py --recipe fine-tune --arch mobilenet_v2 --size 160 --epochs 1 --lr 1e-3   # fastai
    python benchmarks/accuracy.py --data imagewoof                  # fastai's download, when online
    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python benchmarks/accuracy.py   # also recorded in MLflow (dogbreeds.tracking)

It trains with `dogbreeds.train.train` (the run lands in exported_models/), then prints the run's
history (stage 0 is the untrained start: ImageNet's own rows for the ten breeds), top-1 and top-5,
the not-a-dog rates, and the wall time. Imagewoof 2's validation split is drawn mostly from
ImageNet's *training* set, which the ImageNet-pretrained weights have seen; the photos named
ILSVRC2012_val_* come from ImageNet's validation set and were never trained on. Their top-1 is printed
on its own, as the honest figure for photos the network has never seen.
"""
import argparse, csv, json, sys, time
from pathlib import Path

from conditions import imagewoof

ROOT = Path(__file__).resolve().parent.parent
LOCAL = imagewoof()

# The default recipe: what `dogbreeds train` does when given only the data.
from dogbreeds.learner import DEFAULT_ARCH, DEFAULT_SIZE
RECIPE = dict(recipe='imagenet-head', arch=DEFAULT_ARCH, size=DEFAULT_SIZE, freeze_epochs=1, epochs=3, lr=None, bs=64, tta=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', default=str(LOCAL) if LOCAL else 'imagewoof')
    for k, v in RECIPE.items():
        if isinstance(v, bool): ap.add_argument(f"--{k.replace('_', '-')}", action='store_true', default=v)
        else: ap.add_argument(f"--{k.replace('_', '-')}", type=float if k == 'lr' else type(v) if v is not None else str, default=v)
    ap.add_argument('--run-name', default=None)
    ap.add_argument('--out-dir', default=None, help='where the run goes (default: exported_models/)')
    ap.add_argument('--no-export', action='store_true', help='skip writing the model folder (a smoke run)')
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'accuracy.json'))
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conditions import Conditions
    cond = Conditions()

    from dogbreeds.train import train
    t0 = time.time()
    r = train(data=a.data, recipe=a.recipe, arch=a.arch, size=a.size, epochs=a.epochs, freeze_epochs=a.freeze_epochs, lr=a.lr,
              bs=a.bs, tta=a.tta, out_dir=a.out_dir, export=not a.no_export,
              run_name=a.run_name or f"bench-{a.arch.replace('+', '_')}-{a.size}-{time.strftime('%Y%m%d-%H%M%S')}")
    total = time.time() - t0
    m, p = r.metrics, r.params

    # top-1 on the photos that come from ImageNet's validation set (never seen in pretraining), from the saved predictions
    from dogbreeds.learner import load_run_model, model_outputs
    _, vi = r.data.splits
    unseen = [i for i in vi if Path(r.data.items[i]).name.startswith('ILSVRC2012_val')]
    model, _ = load_run_model(r.run_dir)
    probs = model_outputs(model, [r.data.items[i] for i in unseen], a.size)[0] if unseen else None
    unseen_acc = float((probs.argmax(1) == [r.data.breeds.index(r.data.labels[i]) for i in unseen]).mean()) if unseen else float('nan')

    rows = list(csv.DictReader(open(r.run_dir / 'history.csv')))
    def secs(t): mm, ss = t.split(':')[-2:]; return int(mm) * 60 + int(ss)
    print()
    print(f"recipe: {a.recipe} arch={a.arch} size={a.size}" + (f" freeze_epochs={a.freeze_epochs} epochs={a.epochs} "
          f"lr={p['lr']:.2e} bs={a.bs}" if a.recipe == 'fine-tune' else '') + f" tta={a.tta} device={p['device']}")
    if p.get('heads'):
        h = p['heads']
        lams = ', '.join(f"{k} lam={v['lam']}" for k, v in h['members'].items())
        print(f"heads:  {lams}; ensemble weights {', '.join(f'{w:.2f}' for w in h['weights'])}" + (
              f" (chosen by {h['folds']}-fold cross-validation on the {h['n_held']} train photos: top-1 {h['held_top1']:.4f} "
              f"against the start's {h['held_top1_start']:.4f}, sign test p = {h['sign_test']['p_value']:.2g})" if h['folds'] else ''))
        if h['kept_start']: print(f"kept ImageNet's rows: {h['kept_start']}")
    print(f"data:   {r.data.root} ({r.data.n_train} train / {r.data.n_valid} valid photos)")
    print(f"{'stage':>5} {'epoch':>5} {'valid_loss':>10} {'top-1':>7} {'top-5':>7} {'seconds':>8}")
    for row in rows:
        print(f"{row['stage']:>5} {row['epoch']:>5} {float(row['valid_loss']):>10.4f} {float(row['accuracy']):>7.4f} "
              f"{float(row['top_k_accuracy']):>7.4f} {secs(row['time']):>8}")
    start, end = float(rows[0]['accuracy']), float(rows[-1]['accuracy'])
    print(f"final top-1 {m['accuracy']:.4f}, top-5 {m['top5_accuracy']:.4f}, ECE {m['ece']:.4f} on {m['n_valid']} photos"
          f"{' (TTA)' if a.tta else ''}: {100 * (end - start):+.2f} pt over the untrained start ({start:.4f})")
    print(f"top-1 on the {len(unseen)} photos from ImageNet's validation set (unseen in pretraining): {unseen_acc:.4f}")
    nd = m.get('not_a_dog') or {}
    if nd: print(f"not a dog below p(dog) {nd['threshold']:.4f}: {nd['val_dogs_flagged']:.2%} of {nd['n_val']} val dogs flagged, "
                 f"{nd['non_dogs_flagged']:.1%} of {nd['n_non_dogs']} photos without a dog flagged (missed: {', '.join(nd['non_dogs_missed']) or 'none'})")
    print(f"wall time {total / 60:.1f} min in all (load {p['seconds']['load']:.0f} s, fit {p['seconds']['fit']:.0f} s, "
          f"total before export {p['seconds']['total']:.0f} s); run saved to {r.run_dir}")
    if ml := p.get('mlflow'): print(f"MLflow run {ml['run_id']}: {ml.get('url') or ml['tracking_uri']}")
    cond.save(a.out, dict(recipe=a.recipe, arch=a.arch, size=a.size, data=str(r.data.root), top1=m['accuracy'],
                          top5=m['top5_accuracy'], ece=m['ece'], n_valid=m['n_valid'], unseen_top1=unseen_acc,
                          n_unseen=len(unseen), start_top1=start, minutes=total / 60, heads=p.get('heads'),
                          not_a_dog=nd, run_dir=str(r.run_dir), mlflow=p.get('mlflow'), errors=0))


if __name__ == '__main__': sys.exit(main())
