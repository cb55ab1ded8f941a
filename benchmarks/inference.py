"""Inference benchmark: the same model and the same photos, side by side, in one run.

    python benchmarks/inference.py                      # newest exported_models/*/ run (trains one if none)
    python benchmarks/inference.py --run exported_models/<run>

Rows:
  learn.predict            fastai, from the run's learner.pkl (the notebook user's path)
  Predictor (torchscript)  dogbreeds.inference on model.pt
  Predictor (onnx)         dogbreeds.inference on model.onnx (the serving default)
  onnxruntime floor        bare `session.run` of model.onnx on a ready uint8 tensor (no decoding)

Columns: warm latency p50/p95 at batch 1 (photo bytes in, breeds out; the floor gets a decoded
tensor), cold start (a fresh Python process: import, load, first answer; median of 5), and batch-64
throughput (64 real photos of mixed sizes as bytes; the floor gets one ready [64, H, W, 3] tensor of
same-size photos). Figures for the cost planner are written to benchmarks/results/inference.json.

Then, in the same run, the sections of their own scripts (each also runs alone):
  phone photos   benchmarks/phone.py: a 12 MP JPEG end to end against its floor (coarsest-scale decode + forward),
                 and reduced against full decoding on --agree upscaled val photos
  INT8           benchmarks/int8.py: ONNX Runtime's quantization variants against fp32, batch 1 and 64, val top-1,
                 and the fp32 speed options (each network of the pair alone)
  cold start     benchmarks/coldstart.py: from S3 (SeaweedFS), a fresh process pulls, loads, answers: before and now

    python benchmarks/inference.py --run R -n 5 --cold-reps 1 --skip phone heic int8 coldstart --out /tmp/i.json   # smoke

iPhone photos: the same noisy 12 MP photo as a HEIC (written with pillow-heif, a development dependency, at
quality 50: a file no bigger than the JPEG's, as an iPhone's HEIC is; HEVC at quality 90 spends 4x the JPEG's
bytes on the noise, and decoding time grows with them) next to its JPEG: decode time, full and reduced, and
end to end, through Predictor (pi-heif reads the HEIC). Alone, on any model folder (a tiny setting checks that it runs):

    python benchmarks/inference.py --heic-only --model exported_models/<run>/model [--size 1008x756 -n 5]
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

import numpy as np

from conditions import Conditions

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / 'data' / 'sample'


def timeit(f, n, warm=3):
    for _ in range(warm): f()
    t = []
    for _ in range(n):
        s = time.perf_counter(); f(); t.append((time.perf_counter() - s) * 1000)
    return statistics.median(t), statistics.quantiles(t, n=20)[18]


def cold(code, reps:int=5):
    "Median wall time of a fresh interpreter running `code` (which prints its own in-process seconds)."
    wall, inproc = [], []
    for _ in range(reps):
        s = time.perf_counter()
        r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
        wall.append(time.perf_counter() - s)
        if r.returncode: raise SystemExit(r.stderr)
        inproc.append(float(r.stdout.strip().splitlines()[-1]))
    return statistics.median(wall), statistics.median(inproc)


def find_run(arg):
    if arg: return Path(arg)
    runs = sorted((p.parent.parent for p in (ROOT / 'exported_models').glob('*/model/manifest.json')
                   if (p.parent.parent / 'learner.pkl').exists()), key=lambda p: p.stat().st_mtime)
    if runs: return runs[-1]
    print('no exported run found: training a quick one on the sample (160 px, one frozen epoch)')
    from dogbreeds.train import train
    return train('sample', size=160, epochs=0, freeze_epochs=1, lr=2e-3, quiet=True,
                 run_name=f"bench-inference-{time.strftime('%Y%m%d-%H%M%S')}").run_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--run', help='a run folder with learner.pkl and model/')
    ap.add_argument('-n', type=int, default=200, help='timed repetitions at batch 1')
    ap.add_argument('--agree', type=int, default=None, help='upscaled val photos for the reduced-vs-full decoding agreement (default: all)')
    ap.add_argument('--val', type=int, default=None, help='INT8: val photos for top-1 (default: all)')
    ap.add_argument('--cold-reps', type=int, default=5, help='fresh processes per cold-start row')
    ap.add_argument('--skip', nargs='*', default=[], choices=['phone', 'heic', 'int8', 'coldstart'], help='sections left out')
    ap.add_argument('--heic-only', action='store_true', help='only the HEIC vs JPEG decode table (no learner)')
    ap.add_argument('--model', help='with --heic-only: a model folder (default: the run\'s model/)')
    ap.add_argument('--size', default='4032x3024', help='with --heic-only: the photo\'s pixels, WxH')
    ap.add_argument('--out', default=None, help='results JSON (default: benchmarks/results/inference.json, heic.json with --heic-only)')
    a = ap.parse_args()
    cond, results = Conditions(), ROOT / 'benchmarks' / 'results'
    if a.heic_only:
        res = heic_vs_jpeg(Path(a.model) if a.model else find_run(a.run) / 'model', a.n, tuple(map(int, a.size.split('x'))))
        cond.save(a.out or results / 'heic.json', dict(heic=res, errors=0))
        return
    run = find_run(a.run)
    model = run / 'model'
    photos = sorted(SAMPLE.rglob('*.JPEG'))[:64]
    payloads = [p.read_bytes() for p in photos]
    print(f"model {model} ({json.loads((model / 'manifest.json').read_text())['arch']}, "
          f"{json.loads((model / 'manifest.json').read_text())['preprocessing']['resize']['size']} px); "
          f"{len(photos)} photos from data/sample; {os.cpu_count()} CPUs\n")

    from dogbreeds.inference import Predictor
    from dogbreeds.core import load_rgb
    import onnxruntime as ort
    rows = {}

    # warm latency, batch 1
    preds = {b: Predictor.load(model, backend=b) for b in ('torchscript', 'onnx')}
    it = iter(range(10**9))
    for b, p in preds.items():
        rows[f'Predictor ({b})'] = dict(lat=timeit(lambda: p.predict(payloads[next(it) % 64]), a.n))
    sess = ort.InferenceSession(str(model / 'model.onnx'), providers=['CPUExecutionProvider'])
    ready = [np.array(load_rgb(b))[None] for b in payloads]
    rows['onnxruntime floor'] = dict(lat=timeit(lambda: sess.run(None, {'input': ready[next(it) % 64]}), a.n))

    from fastai.learner import load_learner
    learn = load_learner(run / 'learner.pkl')  # a pickle: fine in a benchmark of our own file, never when serving
    from fastai.callback.progress import ProgressCallback
    learn.remove_cb(ProgressCallback)  # no progress bar drawn per photo: it is not part of the work
    from dogbreeds.dataloaders import DogImage  # learn.predict takes a decoded image (or a Path), not bytes
    rows['learn.predict'] = dict(lat=timeit(lambda: learn.predict(DogImage.create(payloads[next(it) % 64])), max(3, a.n // 10)))

    # batch-64 throughput
    def thr(f, reps=5):
        f()
        t = [time.perf_counter()]
        for _ in range(reps): f(); t.append(time.perf_counter())
        return 64 / statistics.median(np.diff(t))
    for b, p in preds.items():
        rows[f'Predictor ({b})']['thr'] = thr(lambda: p.predict_batch(payloads))
    shapes = [r.shape for r in ready]
    common = max(set(shapes), key=shapes.count)
    from PIL import Image
    batch = np.concatenate([r if r.shape == common else
                            np.array(Image.fromarray(r[0]).resize((common[2], common[1])))[None] for r in ready])
    rows['onnxruntime floor']['thr'] = thr(lambda: sess.run(None, {'input': batch}))
    dl = learn.dls.test_dl(photos)
    rows['learn.predict']['thr'] = thr(lambda: learn.get_preds(dl=dl), reps=2)

    # cold start: fresh interpreter, import + load + first answer
    photo = str(photos[0])
    for b in ('torchscript', 'onnx'):
        rows[f'Predictor ({b})']['cold'] = cold(
            "import time; t = time.perf_counter(); from dogbreeds.inference import Predictor; "
            f"p = Predictor.load({str(model)!r}, backend={b!r}); p.predict(open({photo!r}, 'rb').read()); "
            "print(time.perf_counter() - t)", a.cold_reps)
    rows['onnxruntime floor']['cold'] = cold(
        "import time; t = time.perf_counter(); import onnxruntime as ort, numpy as np; from PIL import Image; "
        f"s = ort.InferenceSession({str(model / 'model.onnx')!r}); "
        f"s.run(None, {{'input': np.asarray(Image.open({photo!r}).convert('RGB'))[None]}}); print(time.perf_counter() - t)", a.cold_reps)
    rows['learn.predict']['cold'] = cold(
        "import time; t = time.perf_counter(); from fastai.learner import load_learner; "
        f"from pathlib import Path; l = load_learner({str(run / 'learner.pkl')!r}); l.predict(Path({photo!r})); print(time.perf_counter() - t)", reps=min(3, a.cold_reps))

    print(f"{'':26}{'p50 ms':>9}{'p95 ms':>9}{'cold s (proc/in-process)':>27}{'batch-64 img/s':>17}")
    for k in ('learn.predict', 'Predictor (torchscript)', 'Predictor (onnx)', 'onnxruntime floor'):
        r = rows[k]
        print(f"{k:26}{r['lat'][0]:9.2f}{r['lat'][1]:9.2f}{r['cold'][0]:15.2f} / {r['cold'][1]:.2f}  {r['thr']:15.1f}")
    o, f, l = rows['Predictor (onnx)'], rows['onnxruntime floor'], rows['learn.predict']
    print(f"\nPredictor (onnx) vs learn.predict: {l['lat'][0] / o['lat'][0]:.1f}x faster at p50 (goal >= 10x)")
    print(f"Predictor (onnx) vs the floor:     {o['lat'][0] / f['lat'][0]:.2f}x the floor's p50 (goal <= 1.25x)")
    print(f"cold start, Predictor (onnx):      {o['cold'][0]:.2f} s as a new process, {o['cold'][1]:.2f} s in it (goal <= 1 s)")
    print(f"batch-64 throughput:               {o['thr'] / f['thr']:.0%} of the floor's (goal >= 85%)")

    # the serving figures for the cost planner, measured in a lean process of its own (no fastai, no torch)
    r = subprocess.run([sys.executable, '-c', "import json; from dogbreeds.inference import measure; "
                        f"print(json.dumps(measure({str(model)!r}, n={a.n})))"], capture_output=True, text=True, cwd=ROOT)
    if r.returncode: raise SystemExit(r.stderr)
    res = dict(json.loads(r.stdout.strip().splitlines()[-1]), model=str(model), cold_start_s=o['cold'][0],
               batch64_img_per_s=o['thr'], floor=dict(p50_ms=f['lat'][0], batch64_img_per_s=f['thr']),
               learn_predict=dict(p50_ms=l['lat'][0]), measured=time.strftime('%Y-%m-%dT%H:%M:%S'))
    print(f"\nlean serving process (measure): p50 {res['p50_ms']:.2f} ms, p95 {res['p95_ms']:.2f} ms, peak RSS {res['rss_mb']:.0f} MB")
    if 'phone' not in a.skip:
        import phone
        print('\n--- phone photos (benchmarks/phone.py)')
        res['phone'] = phone.run(model, max(5, a.n // 5), a.agree)
    if 'heic' not in a.skip:
        print('\n--- iPhone photos: HEIC against JPEG')
        res['heic'] = heic_vs_jpeg(model, max(5, a.n // 5))
    if 'int8' not in a.skip:
        import int8
        print('\n--- INT8 and the fp32 speed options (benchmarks/int8.py)')
        res['int8'] = int8.run(model, n_val=a.val)
    if 'coldstart' not in a.skip:
        import coldstart
        print('\n--- cold start from S3 (benchmarks/coldstart.py)')
        res['coldstart'] = coldstart.run(model, a.cold_reps)
    res['errors'] = 0
    cond.save(a.out or results / 'inference.json', res)

def phone_pixels(src, seed=0, size=(4032, 3024)):
    "A photo blown up to a phone's 12 megapixels, with sensor-like noise (it compresses like one), as a PIL image."
    from PIL import Image
    im = np.asarray(Image.open(src).convert('RGB').resize(size, Image.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, im.shape, dtype=np.int16)
    return Image.fromarray(np.clip(im + noise, 0, 255).astype(np.uint8))


def phone_photo(src, seed=0, size=(4032, 3024)) -> bytes:
    "`phone_pixels` as JPEG bytes (quality 90)."
    import io
    b = io.BytesIO(); phone_pixels(src, seed, size).save(b, 'JPEG', quality=90); return b.getvalue()


def heic_vs_jpeg(model, n=40, size=(4032, 3024), quality=50) -> dict:
    "Decode time (p50 ms) of the same noisy phone photo as a HEIC and as a JPEG, full and reduced, and end to end."
    from dogbreeds.inference import Predictor
    from dogbreeds.core import load_rgb
    from dogbreeds.testing import heic
    fast, full = Predictor.load(model, backend='onnx'), Predictor.load(model, backend='onnx', fast_decode=False)
    im = phone_pixels(sorted(SAMPLE.rglob('*.JPEG'))[0], size=size)
    jpeg = phone_photo(sorted(SAMPLE.rglob('*.JPEG'))[0], size=size)
    t = time.perf_counter()
    h = heic(im, quality=quality, enc_params={'preset': 'ultrafast'})
    enc = time.perf_counter() - t
    out = dict(pixels=f"{size[0]}x{size[1]}", heic_quality=quality, heic_encode_s=enc)
    print(f"\niPhone photo: the same {size[0]}x{size[1]} noisy photo, JPEG (quality 90) and HEIC (quality {quality}), "
          "p50 ms "
          f"(the HEIC written in {enc:.1f} s by pillow-heif, read by pi-heif):")
    print(f"{'':8}{'MB':>7}{'full decode':>14}{'reduced decode':>17}{'end to end':>13}")
    for name, data in (('JPEG', jpeg), ('HEIC', h)):
        assert load_rgb(data).size == size
        r = dict(bytes=len(data), full_decode_ms=timeit(lambda: load_rgb(data), n, warm=1)[0],
                 decode_ms=timeit(lambda: fast.decode(data), n, warm=1)[0],
                 predict_ms=timeit(lambda: fast.predict(data), n, warm=1)[0])
        out[name.lower()] = r
        print(f"{name:8}{len(data) / 1e6:7.2f}{r['full_decode_ms']:14.1f}{r['decode_ms']:17.1f}{r['predict_ms']:13.1f}")
    agree = fast.predict(h, k=1).top[0][0] == fast.predict(jpeg, k=1).top[0][0] == full.predict(h, k=1).top[0][0]
    out['heic_over_jpeg_decode'] = out['heic']['decode_ms'] / out['jpeg']['decode_ms']
    print(f"reduced decode: HEIC {out['heic_over_jpeg_decode']:.1f}x the JPEG's time; the same top-1: {agree}")
    return out



if __name__ == '__main__': main()
