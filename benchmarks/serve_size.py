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


def check(target, model, photo=PHOTO, env_too=False):
    "With `env_too`, the check also finds this environment's packages, after the target's (a --no-deps smoke run)."
    tail = f"sys.path += {[p for p in sys.path if p.endswith('-packages')]!r}; " if env_too else ''
    code = (f"import sys, time; sys.path.insert(0, {str(target)!r}); {tail}t = time.perf_counter(); "
            "from dogbreeds.inference import Predictor; "
            f"p = Predictor.load({str(model)!r}); r = p.predict(open({str(photo)!r}, 'rb').read(), k=1).top; "
            "import json; print(json.dumps([r, time.perf_counter() - t, "
            "sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'fastai', 'torchvision', 'pandas'})]))")
    out = subprocess.run([sys.executable, '-S', '-c', code], capture_output=True, text=True)
    if out.returncode: raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default=None)
    ap.add_argument('--no-deps', action='store_true',
                    help="install the project alone (no download) and let the check find its dependencies in this environment: a smoke run")
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'serve_size.json'))
    a = ap.parse_args()
    from conditions import Conditions
    cond, res = Conditions(), {}
    model = Path(a.model) if a.model else max(ROOT.glob('exported_models/*/model/manifest.json'), key=lambda p: p.stat().st_mtime).parent
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp) / 'pkg'
        extra = ['--no-deps', '--no-build-isolation'] if a.no_deps else []
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-compile', *extra, '--target', str(t), f'{ROOT}[serve]'],
                       check=True)
        raw = size(t)
        print(f"pip install --target '.[serve]':  {raw / 1e6:6.1f} MB  ({top(t)})")
        prune(t, no_avif=False)
        keep = size(t)
        r = check(t, model, env_too=a.no_deps)
        print(f"pruned --keep-avif:                 {keep / 1e6:6.1f} MB  (check: {r[0][0][0]}, heavy modules: {r[2] or 'none'})")
        prune(t)
        lean = size(t)
        r = check(t, model, env_too=a.no_deps)
        h = check(t, model, heic_of(PHOTO, Path(tmp) / 'photo.heic'), env_too=a.no_deps)
        print(f"pruned (the default, the Lambda package): {lean / 1e6:6.1f} MB  ({top(t)})  goal <= 100 MB")
        print(f"  check: {r[0][0][0]} ({r[0][0][1]:.3f}) in {r[1]:.2f} s from a bare interpreter; heavy modules loaded: {r[2] or 'none'}")
        print(f"  the same photo as a HEIC: {h[0][0][0]} ({h[0][0][1]:.3f}); heavy modules loaded: {h[2] or 'none'}")
        from dogbreeds.core import read_manifest
        m = read_manifest(model)
        model_mb = sum((model / f).stat().st_size for f in [*((m.get('serving_files') or {}).get('onnx') or m['files']), 'manifest.json']) / 1e6
        print(f"the ONNX model files add {model_mb:.1f} MB if baked into the package (or are pulled from the registry to /tmp)")
        res.update(model=str(model), installed_mb=raw / 1e6, keep_avif_mb=keep / 1e6, pruned_mb=lean / 1e6, model_mb=model_mb,
                   check=r[0][0], heavy_modules=r[2], dependencies='this environment (--no-deps)' if a.no_deps else 'installed',
                   errors=int(bool(r[2])))
    cond.save(a.out, res)


if __name__ == '__main__': main()
