"""Phone photos at their floor: a 12 MP JPEG through `Predictor` against its floor, and reduced decoding's answers.

    python benchmarks/phone.py --model exported_models/<run>/model       # timings, then agreement on every val photo
    python benchmarks/phone.py --model M --photos DIR                      # time real camera JPEGs of your own too
    python benchmarks/phone.py --model M --n 5 --agree 4 --out /tmp/p.json # a smoke run
    python benchmarks/phone.py --write DIR [--count 4]                     # write noisy 12 MP JPEGs (2-4 MB) to DIR

No package ships real 12 MP camera JPEGs, so the phone photos here are val photos blown up to 4032x3024 with
Gaussian sensor-like noise (sigma 5 per channel) and written at JPEG quality 92, 4:2:0, as phones do: 2-4 MB
each. The noise matters: a smooth upscaled photo entropy-decodes about 3x faster than a real one and hides the cost.

Timed in one run, p50 over `--n` repetitions:
- the floor: the coarsest-scale decode alone (Pillow `draft` to the model's input side, nothing else) plus the
  forward (`model.onnx` on that decoded array); a 12 MP photo and a 224 px model decode at 1/8;
- `Predictor.predict` end to end (bytes in, breeds out), with the serving rule (the coarsest DCT scale whose short
  side covers the input), with the former rule (never below twice the input side) and with full decoding;
- a small photo (a val photo as it is) end to end, for comparison.
`--profile` prints where `Predictor.predict` spends its time on the phone photo (cProfile).

Agreement: every val photo (or `--agree N` of them) blown up as above, decoded in full and through each pipeline: the
serving rule, the coarsest scale (and the former rule), and, to show how much any two valid pipelines agree,
references: full decoding reduced by 2 before the graph, libjpeg's fast full decode (no fancy chroma upsampling, the
fast IDCT), Pillow's bicubic resize instead of the graph's bilinear one, and the same photo with another field of
noise (taken again). For each: top-1 the same (goal >= 99.5 %), the largest probability gap, and the flipped photos'
margins (top-1 minus top-2 under full decoding). All 2,950 val photos take about 2 s each.
"""
import argparse, io, statistics, time
from pathlib import Path

import numpy as np
from PIL import Image

from conditions import Conditions, imagewoof

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / 'data' / 'sample'
VAL = (imagewoof() or ROOT / 'data' / 'sample') / 'val'
SIZE, SIGMA, QUALITY = (4032, 3024), 5.0, 92

_NOISE = {}

def noise(seed:int, shape) -> np.ndarray:
    "Gaussian sensor-like noise (float32), four fields made once and reused: making them costs more than the rest."
    k = (seed % 4, shape)
    if k not in _NOISE: _NOISE[k] = np.random.default_rng(seed % 4).normal(0, SIGMA, shape).astype(np.float32)
    return _NOISE[k]


def phone_photo(src, seed:int=0, size=SIZE, quality:int=QUALITY) -> bytes:
    "The photo `src` blown up to a phone's 12 megapixels with sensor-like noise, as JPEG bytes (2-4 MB)."
    im = np.asarray(Image.open(src).convert('RGB').resize(size, Image.BICUBIC), dtype=np.float32)
    im = np.clip(im + noise(seed, im.shape), 0, 255).astype(np.uint8)
    b = io.BytesIO(); Image.fromarray(im).save(b, 'JPEG', quality=quality); return b.getvalue()


def write_photos(dest, count:int=4) -> list:
    "Write `count` noisy 12 MP JPEGs made from the sample's val photos to the folder `dest`."
    dest = Path(dest); dest.mkdir(parents=True, exist_ok=True)
    files = sorted((SAMPLE / 'val').rglob('*.JPEG'))[::7][:count]
    out = []
    for i, f in enumerate(files):
        (p := dest / f"phone-{i}-{f.stem}.jpg").write_bytes(phone_photo(f, seed=i)); out.append(p)
    return out


def p50(f, n:int, warm:int=2) -> float:
    for _ in range(warm): f()
    t = []
    for _ in range(n):
        s = time.perf_counter(); f(); t.append((time.perf_counter() - s) * 1000)
    return statistics.median(t)


def floor_decode(data:bytes, side:int) -> np.ndarray:
    "The coarsest-scale decode and nothing else: what no serving path can beat."
    im = Image.open(io.BytesIO(data)); im.draft('RGB', (side, side)); im.load()
    return np.asarray(im)


def time_photo(pred, sess, data:bytes, n:int) -> dict:
    "The floor and `Predictor.predict` (the serving rule, the former one, full decoding) on one photo, in ms."
    from dogbreeds.inference import Predictor
    ready = floor_decode(data, pred.size)[None]
    rule, r = (pred.shrink_to, pred.draft_to), {}
    r['decode_floor_ms'] = p50(lambda: floor_decode(data, pred.size), n)
    feed = {sess.get_inputs()[0].name: ready}
    r['forward_ms'] = p50(lambda: sess.run(None, feed), n)
    r['floor_ms'] = r['decode_floor_ms'] + r['forward_ms']
    r['predict_ms'] = p50(lambda: pred.predict(data), n)
    pred.draft_to = 2 * pred.size  # the former rule: never below twice the input side
    r['predict_twice_ms'] = p50(lambda: pred.predict(data), n)
    pred.shrink_to = pred.draft_to = None
    r['predict_full_decode_ms'] = p50(lambda: pred.predict(data), max(3, n // 3), warm=1)
    pred.shrink_to, pred.draft_to = rule
    r['ratio_to_floor'] = r['predict_ms'] / r['floor_ms']
    r['twice_ratio_to_floor'] = r['predict_twice_ms'] / r['floor_ms']
    return r


def margin(p:np.ndarray) -> float:
    "How far the top-1 probability is ahead of the second."
    s = np.sort(p)
    return float(s[-1] - s[-2])


def decode_fast(data:bytes) -> np.ndarray:
    """Full decoding with libjpeg's fast settings (the fast integer IDCT, chroma upsampled by replication instead of
    'fancy' interpolation), what Pillow's `draft` asks for, at full size: an equally valid decode of the same file."""
    im = Image.open(io.BytesIO(data))
    im.decoderconfig = (1, 1)  # (scale, draft): Pillow's JPEG decoder arguments
    im.load()
    return np.asarray(im.convert('RGB'))


def square_resized(a:np.ndarray, side:int, resample=Image.BICUBIC) -> np.ndarray:
    "The central square of `a` resized to `side` by Pillow (bicubic, antialiased): an equally valid resize."
    h, w = a.shape[:2]; m = min(h, w); t, l = (h - m) // 2, (w - m) // 2
    return np.asarray(Image.fromarray(a[t:t + m, l:l + m]).resize((side, side), resample))


def pipelines(pred, rules:dict, size=SIZE) -> dict:
    """What is compared with full decoding: `{name: f(data, full_array, src, seed) -> uint8 array}` for the photo
    `data`, made from the file `src` with noise `seed` and decoded in full as `full_array`. The reduced decodes
    of `rules` (`{name: shrink_to}`), then references, equally valid pipelines that show how much any two agree:
    full decoding reduced by 2 (a box filter) before the graph, libjpeg's fast decode, Pillow's bicubic resize instead
    of the graph's bilinear one, and the same photo taken again (another field of sensor noise)."""
    from dogbreeds.core import load_rgb
    ps = {k: (lambda s: lambda d, a, src, seed: np.asarray(load_rgb(d, shrink_to=s)))(s) for k, s in rules.items()}
    ps['serving'] = lambda d, a, src, seed: pred.decode(d)  # the serving path itself
    return {**ps, 'box2': lambda d, a, src, seed: np.asarray(Image.fromarray(a).reduce(2)),
            'decode_fast': lambda d, a, src, seed: decode_fast(d),
            'pil_bicubic': lambda d, a, src, seed: square_resized(a, pred.size),
            'another_exposure': lambda d, a, src, seed: np.asarray(load_rgb(phone_photo(src, seed + 1, size)))}


def agreement(pred, full, files:list, rules:dict, size=SIZE) -> dict:
    """Top-1 of each pipeline (`pipelines`) against full decoding on `files` blown up to 12 MP: the share the same,
    the largest probability gap, and for each photo whose top-1 changed, its margins (top-1 minus top-2) both ways."""
    ps = pipelines(pred, rules, size)
    res = {k: dict(photos=len(files), same=0, max_prob_gap=0.0, max_gap_photo=None, flipped=[]) for k in ps}
    for i, f in enumerate(files):
        d = phone_photo(f, seed=i, size=size)
        a = full.decode(d)
        q = full.probabilities(full.prepare(a)[None])[0]
        p = pred.probabilities(np.stack([pred.prepare(fn(d, a, f, i)) for fn in ps.values()]))
        for k, pk in zip(ps, p):
            r = res[k]
            r['same'] += int(pk.argmax() == q.argmax())
            if (g := float(np.abs(pk - q).max())) > r['max_prob_gap']: r['max_prob_gap'], r['max_gap_photo'] = g, str(f)
            if pk.argmax() != q.argmax():
                r['flipped'].append(dict(photo=str(f), margin_full=margin(q), margin=margin(pk)))
    for r in res.values(): r['top1_agreement'] = r.pop('same') / max(1, len(files))
    return res


def print_agreement(res:dict, rules:dict, size):
    "One line per pipeline, then the flipped photos' margins."
    print(f"against full decoding, val photos blown up to {size[0]}x{size[1]} with noise (goal >= 99.5% for the rule):")
    for k, a in res.items():
        what = f"JPEG DCT scale's short side >= {rules[k]}" if k in rules else 'reference'
        fl = sorted(round(x['margin_full'], 4) for x in a['flipped'])
        print(f"  {k:17}{a['photos']:6} photos: top-1 the same on {a['top1_agreement']:8.2%}, largest probability gap "
              f"{a['max_prob_gap']:.4f} ({what}); flipped photos' full-decoding margins {fl}")


def profile(pred, data:bytes, n:int=20):
    import cProfile, pstats
    pr = cProfile.Profile(); pr.enable()
    for _ in range(n): pred.predict(data)
    pr.disable()
    pstats.Stats(pr).sort_stats('tottime').print_stats(12)


def run(model, n:int=30, agree:int|None=None, photos=None, val=None, do_profile:bool=False, size=SIZE) -> dict:
    import onnxruntime as ort
    from dogbreeds.inference import Predictor
    pred, full = Predictor.load(model), Predictor.load(model, fast_decode=False)
    sess = ort.InferenceSession(str(Path(model) / pred.manifest['formats']['onnx']), providers=['CPUExecutionProvider'])
    made = [(f"val photo {f.name} at {size[0]}x{size[1]} + noise", phone_photo(f, seed=i, size=size))
            for i, f in enumerate(sorted((SAMPLE / 'val').rglob('*.JPEG'))[::20][:2])]
    real = [(str(f), f.read_bytes()) for f in sorted(Path(photos).glob('*')) if f.suffix.lower() in ('.jpg', '.jpeg')] if photos else []
    res = dict(model=str(model), size=pred.size, photos=[])
    print(f"model {model} ({pred.size} px); p50 of {n} runs, ms")
    print(f"{'photo':46}{'MB':>5}{'floor':>8}{'(decode':>9}{'+ fwd)':>8}{'predict':>9}{'x floor':>9}{'twice':>9}{'x floor':>9}{'full':>8}")
    for name, data in made + real:
        r = dict(photo=name, mb=len(data) / 1e6, **time_photo(pred, sess, data, n))
        res['photos'].append(r)
        print(f"{name[-46:]:46}{r['mb']:5.1f}{r['floor_ms']:8.1f}{r['decode_floor_ms']:9.1f}{r['forward_ms']:8.1f}"
              f"{r['predict_ms']:9.1f}{r['ratio_to_floor']:9.2f}{r['predict_twice_ms']:9.1f}"
              f"{r['twice_ratio_to_floor']:9.2f}{r['predict_full_decode_ms']:8.1f}")
    small = sorted((SAMPLE / 'val').rglob('*.JPEG'))[0].read_bytes()
    res['small_photo_ms'] = p50(lambda: pred.predict(small), n)
    res['worst_ratio_to_floor'] = max(r['ratio_to_floor'] for r in res['photos'])
    print(f"a small photo ({len(small) / 1e3:.0f} kB) end to end: {res['small_photo_ms']:.1f} ms; "
          f"phone photo end to end / floor: at most {res['worst_ratio_to_floor']:.2f}x (goal <= 1.15x)")
    if do_profile: profile(pred, made[0][1])
    val = Path(val) if val else VAL
    files = sorted((val if val.is_dir() else SAMPLE / 'val').rglob('*.JPEG'))
    if agree: files = files[:: max(1, len(files) // agree)][:agree]
    rules = {'serving': pred.draft_to, 'coarsest': pred.size, 'twice': 2 * pred.size}  # 'twice': the former rule
    agree_res = agreement(pred, full, files, rules, size)
    print_agreement(agree_res, rules, size)
    res.update({f'agreement_{k}': a for k, a in agree_res.items()})
    res['errors'] = 0
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', help='an exported model folder (default: the newest exported_models/*/model)')
    ap.add_argument('-n', type=int, default=30, help='timed repetitions')
    ap.add_argument('--agree', type=int, default=None, help='val photos for the agreement (default: all)')
    ap.add_argument('--val', help='the val folder (default: ../shared/datasets/imagewoof2-160/val, else the sample)')
    ap.add_argument('--photos', help='a folder of real camera JPEGs to time as well')
    ap.add_argument('--profile', action='store_true', help="print cProfile's view of Predictor.predict on the phone photo")
    ap.add_argument('--write', help='write noisy 12 MP JPEGs to this folder and stop')
    ap.add_argument('--count', type=int, default=4)
    ap.add_argument('--pixels', default='4032x3024', help="the phone photos' size, WxH (a smaller one for a smoke run)")
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'phone.json'))
    a = ap.parse_args()
    if a.write:
        for p in write_photos(a.write, a.count): print(f"{p} {p.stat().st_size / 1e6:.1f} MB")
        return
    cond = Conditions()
    model = Path(a.model) if a.model else max(ROOT.glob('exported_models/*/model/manifest.json'), key=lambda p: p.stat().st_mtime).parent
    size = tuple(int(x) for x in a.pixels.lower().split('x'))
    cond.save(a.out, run(model, a.n, a.agree, a.photos, a.val, a.profile, size))


if __name__ == '__main__': main()
