"""How big is the lean serving install? `pip install --target` of `dogbreeds[serve]`, as it would go into
an AWS Lambda package, measured as installed (unzipped) bytes, then pruned (scripts/prune_serving.py),
and checked: a fresh `python -S` (no site-packages) loads an exported model from that folder alone and
classifies a real photo, as a JPEG and as a HEIC (the iPhone's format, read by pi-heif), without torch, fastai or
pandas.

    python benchmarks/serve_size.py [--model exported_models/<run>/model]

Goal: at most 100 MB unzipped (Lambda's limit is 250 MB; torch alone is about 700 MB).
"""
import argparse, json, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'scripts'))
from prune_serving import prune


def size(d): return sum(f.stat().st_size for f in Path(d).rglob('*') if f.is_file())


def top(d, n=6):
    parts = {}
    for f in Path(d).rglob('*'):
        if f.is_file(): k = f.relative_to(d).parts[0]; parts[k] = parts.get(k, 0) + f.stat().st_size
    return ', '.join(f"{k} {v / 1e6:.1f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:n])


PHOTO = sorted((ROOT / 'data' / 'sample' / 'val').rglob('*.JPEG'))[0]


def heic_of(photo, dest):
    "`photo` as a HEIC at `dest` (pillow-heif, a development dependency, encodes; the runtime's pi-heif only decodes)."
    import pillow_heif
    from PIL import Image
    with Image.open(photo) as im: pillow_heif.from_pillow(im.convert('RGB')).save(dest, quality=90)
    return dest


def check(target, model, photo=PHOTO):
    code = (f"import sys, time; sys.path.insert(0, {str(target)!r}); t = time.perf_counter(); "
            "from dogbreeds.inference import Predictor; "
            f"p = Predictor.load({str(model)!r}); r = p.predict(open({str(photo)!r}, 'rb').read(), k=1); "
            "import json; print(json.dumps([r, time.perf_counter() - t, "
            "sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fastai', 'torchvision', 'pandas'})]))")
    out = subprocess.run([sys.executable, '-S', '-c', code], capture_output=True, text=True)
    if out.returncode: raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default=None)
    a = ap.parse_args()
    model = Path(a.model) if a.model else max(ROOT.glob('exported_models/*/model/manifest.json'), key=lambda p: p.stat().st_mtime).parent
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp) / 'pkg'
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-compile', '--target', str(t), f'{ROOT}[serve]'],
                       check=True)
        raw = size(t)
        print(f"pip install --target '.[serve]':  {raw / 1e6:6.1f} MB  ({top(t)})")
        prune(t, no_avif=False)
        keep = size(t)
        r = check(t, model)
        print(f"pruned --keep-avif:                 {keep / 1e6:6.1f} MB  (check: {r[0][0][0]}, heavy modules: {r[2] or 'none'})")
        prune(t)
        lean = size(t)
        r, h = check(t, model), check(t, model, heic_of(PHOTO, Path(tmp) / 'photo.heic'))
        print(f"pruned (the default, the Lambda package): {lean / 1e6:6.1f} MB  ({top(t)})  goal <= 100 MB")
        print(f"  check: {r[0][0][0]} ({r[0][0][1]:.3f}) in {r[1]:.2f} s from a bare interpreter; heavy modules loaded: {r[2] or 'none'}")
        print(f"  the same photo as a HEIC: {h[0][0][0]} ({h[0][0][1]:.3f}); heavy modules loaded: {h[2] or 'none'}")
        model_mb = sum((model / f).stat().st_size for f in ('model.onnx', 'preprocess.onnx', 'classifier.onnx', 'manifest.json')) / 1e6
        print(f"the ONNX model files add {model_mb:.1f} MB if baked into the package (or are pulled from the registry to /tmp)")


if __name__ == '__main__': main()
