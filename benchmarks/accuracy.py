"""Accuracy benchmark: the default training recipe on the full Imagewoof 2 (160 px) validation split.

    python benchmarks/accuracy.py                                   # the default recipe
    python benchmarks/accuracy.py --epochs 5 --size 192 --tta       # a variant
    python benchmarks/accuracy.py --data imagewoof                  # fastai's download, when online

It trains with `dogbreeds.train.train` (the run lands in exported_models/), then prints top-1, top-5,
wall time per epoch and in total. Imagewoof 2's validation split is drawn mostly from ImageNet's
*training* set, which the ImageNet-pretrained weights have seen; the photos named ILSVRC2012_val_*
come from ImageNet's validation set and were never trained on. Their top-1 is printed on its own, as
the honest figure for photos the network has never seen.
"""
import argparse, csv, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT.parent / 'shared' / 'datasets' / 'imagewoof2-160'

# The default recipe: what `dogbreeds train` does when given only the data.
RECIPE = dict(arch='mobilenet_v2', size=160, freeze_epochs=1, epochs=3, lr=None, bs=64, tta=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', default=str(LOCAL) if LOCAL.is_dir() else 'imagewoof')
    for k, v in RECIPE.items():
        if isinstance(v, bool): ap.add_argument(f"--{k.replace('_', '-')}", action='store_true', default=v)
        else: ap.add_argument(f"--{k.replace('_', '-')}", type=float if k == 'lr' else type(v) if v is not None else str, default=v)
    ap.add_argument('--run-name', default=None)
    a = ap.parse_args()

    from dogbreeds.train import train
    from dogbreeds.evaluate import predictions
    t0 = time.time()
    r = train(data=a.data, arch=a.arch, size=a.size, epochs=a.epochs, freeze_epochs=a.freeze_epochs, lr=a.lr, bs=a.bs,
              tta=a.tta, run_name=a.run_name or f"bench-{a.arch}-{a.size}-{time.strftime('%Y%m%d-%H%M%S')}")
    total = time.time() - t0
    m = r.metrics

    # top-1 on the photos that come from ImageNet's validation set (never seen in pretraining)
    valid = r.learn.dls.valid
    items = list(valid.items.path)
    unseen = [i for i, p in enumerate(items) if Path(p).name.startswith('ILSVRC2012_val')]
    vocab = list(r.learn.dls.vocab)
    labels = [vocab.index(l) for l in valid.items.breed]
    dl = r.learn.dls.test_dl([items[i] for i in unseen])
    probs = (r.learn.tta(dl=dl)[0] if a.tta else r.learn.get_preds(dl=dl)[0]) if unseen else None
    unseen_acc = float((probs.argmax(1).numpy() == [labels[i] for i in unseen]).mean()) if unseen else float('nan')

    rows = list(csv.DictReader(open(r.run_dir / 'history.csv')))
    def secs(t): mm, ss = t.split(':')[-2:]; return int(mm) * 60 + int(ss)
    print()
    print(f"recipe: arch={a.arch} size={a.size} freeze_epochs={a.freeze_epochs} epochs={a.epochs} "
          f"lr={r.params['lr']:.2e} bs={a.bs} tta={a.tta} device={r.params['device']}")
    print(f"data:   {r.data.root} ({r.data.n_train} train / {r.data.n_valid} valid photos)")
    print(f"{'stage':>5} {'epoch':>5} {'valid_loss':>10} {'top-1':>7} {'top-5':>7} {'seconds':>8}")
    for row in rows:
        print(f"{row['stage']:>5} {row['epoch']:>5} {float(row['valid_loss']):>10.4f} {float(row['accuracy']):>7.4f} "
              f"{float(row['top_k_accuracy']):>7.4f} {secs(row['time']):>8}")
    print(f"final top-1 {m['accuracy']:.4f}, top-5 {m['top5_accuracy']:.4f}, ECE {m['ece']:.4f} on {m['n_valid']} photos"
          f"{' (TTA)' if a.tta else ''}")
    print(f"top-1 on the {len(unseen)} photos from ImageNet's validation set (unseen in pretraining): {unseen_acc:.4f}")
    print(f"wall time {total / 60:.1f} min in all; run saved to {r.run_dir}")


if __name__ == '__main__': sys.exit(main())
