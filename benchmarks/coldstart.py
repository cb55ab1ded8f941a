"""Cold start from the registry: a fresh process pulls the model from S3 (SeaweedFS on loopback), loads it and answers.

    python benchmarks/coldstart.py --model exported_models/<run>/model [--reps 5]
    python benchmarks/coldstart.py --model M --reps 1 --out /tmp/c.json        # a smoke run

On Lambda this is every new container. Each row is a fresh interpreter with an empty model cache (median of
`--reps`), timed inside it: import, pull (download + sha256 of every file pulled), `Predictor.load`, the first answer;
and the bytes pulled against the bytes the ONNX session opens (`model.onnx` and the weights it points to).

- `before: every file, weights inline`: the folder as exports wrote it before weights were shared (`model.onnx` and
  `classifier.onnx` each holding the weights, rebuilt here from the model folder), every file pulled, as
  `pull_model` did;
- `every file`: today's folder (one copy of the ONNX weights, `model.onnx.data`), every file pulled, `model.pt` too;
- `what the backend loads`: `Predictor.load(URI)`, which pulls the manifest and the ONNX backend's `serving_files`.

Real S3 from a Lambda is far slower than loopback: the bytes pulled are the figure that carries over.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from conditions import Conditions

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from dogbreeds.registry import pull_model
from dogbreeds.inference import Predictor, pick_backend, serving_files
uri, photo, mode = sys.argv[1:4]
t1 = time.perf_counter()
d = pull_model(uri) if mode == 'all' else pull_model(uri, files=lambda m: serving_files(m, pick_backend(m)))
t2 = time.perf_counter()
p = Predictor.load(d)
t3 = time.perf_counter()
top = p.predict(Path(photo).read_bytes()).top[0]
t4 = time.perf_counter()
m = p.manifest
loaded = [m['formats']['onnx']] + [f for f in m['files'] if f.endswith('.onnx.data')]
print(json.dumps(dict(import_s=t1 - t0, pull_s=t2 - t1, load_s=t3 - t2, first_answer_s=t4 - t3, total_s=t4 - t0,
                      bytes_pulled=sum(f.stat().st_size for f in Path(d).iterdir()), files=sorted(f.name for f in Path(d).iterdir()),
                      bytes_loaded=sum((Path(d) / f).stat().st_size for f in loaded), top=top)))
'''


def inline_weights(model:Path, dest:Path) -> Path:
    "A copy of the model folder `model` as exports wrote it before weights were shared: each ONNX graph holds its weights."
    import onnx
    from dogbreeds.core import MANIFEST, file_record, read_json, write_json
    shutil.copytree(model, dest)
    m = read_json(dest / MANIFEST)
    for g in ('model.onnx', 'classifier.onnx'):
        onnx.save(onnx.load(str(dest / g)), str(dest / g))  # loads the external data, saves it inline
    for f in [f for f in m['files'] if f.endswith('.onnx.data')]: (dest / f).unlink(); del m['files'][f]
    m.pop('serving_files', None)
    m['files'] = {f: file_record(dest / f) for f in m['files']}
    write_json(dest / MANIFEST, m)
    return dest


def run_child(uri:str, photo:Path, mode:str, env:dict, cache:Path) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    s = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', CHILD, uri, str(photo), mode], capture_output=True, text=True, cwd=ROOT,
                       env={**env, 'DOGBREEDS_CACHE': str(cache)})
    if r.returncode: raise SystemExit(r.stderr)
    return dict(json.loads(r.stdout.strip().splitlines()[-1]), process_s=time.perf_counter() - s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', help='an exported model folder (default: the newest exported_models/*/model)')
    ap.add_argument('--reps', type=int, default=5, help='fresh processes per row')
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'coldstart.json'))
    a = ap.parse_args()
    cond = Conditions()
    model = Path(a.model) if a.model else max(ROOT.glob('exported_models/*/model/manifest.json'), key=lambda p: p.stat().st_mtime).parent
    cond.save(a.out, run(model, a.reps))


def run(model:Path, reps:int=5) -> dict:
    "The three rows, printed and returned."
    photo = sorted((ROOT / 'data' / 'sample' / 'val').rglob('*.JPEG'))[0]
    from dogbreeds.registry import Registry
    from dogbreeds.testing import SeaweedFS
    tmp = Path(tempfile.mkdtemp(prefix='coldstart-'))
    rows, res = {}, dict(model=str(model), reps=reps)
    try:
        with SeaweedFS(tmp / 'seaweedfs') as s3:
            env = {**os.environ, 'AWS_ACCESS_KEY_ID': s3.access_key, 'AWS_SECRET_ACCESS_KEY': s3.secret_key,
                   'AWS_DEFAULT_REGION': 'us-east-1', 'AWS_ENDPOINT_URL': s3.endpoint, 'PYTHONPATH': str(ROOT)}
            base = f's3://{s3.bucket}/models'
            os.environ.update({k: v for k, v in env.items() if k.startswith('AWS_')})  # this process pushes
            reg = Registry(base, endpoint_url=s3.endpoint, progress=False)
            reg.push(inline_weights(model, tmp / 'before'), 'before', alias='production')
            reg.push(model, 'dogbreeds', alias='production')
            plan = [('before: every file, weights inline', 'before', 'all'), ('every file', 'dogbreeds', 'all'),
                    ('what the backend loads', 'dogbreeds', 'serving')]
            for label, name, mode in plan:
                runs = [run_child(f'{base}/{name}@production', photo, mode, env, tmp / 'cache') for _ in range(reps)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k.endswith('_s') or k.startswith('bytes')}
                rows[label] = dict(med, files=runs[0]['files'], top=runs[0]['top'])
    finally: shutil.rmtree(tmp, ignore_errors=True)
    print(f"model {model}; SeaweedFS on 127.0.0.1; median of {reps} fresh processes each, seconds")
    print(f"{'':36}{'MB pulled':>10}{'x loaded':>9}{'import':>8}{'pull':>7}{'load':>7}{'1st answer':>11}{'total':>7}{'process':>8}")
    for k, r in rows.items():
        print(f"{k:36}{r['bytes_pulled'] / 1e6:10.1f}{r['bytes_pulled'] / r['bytes_loaded']:9.2f}{r['import_s']:8.2f}"
              f"{r['pull_s']:7.2f}{r['load_s']:7.2f}{r['first_answer_s']:11.3f}{r['total_s']:7.2f}{r['process_s']:8.2f}")
        print(f"{'':36}files: {', '.join(r['files'])}")
    now = rows['what the backend loads']
    print(f"bytes pulled / bytes loaded: {now['bytes_pulled'] / now['bytes_loaded']:.2f} (goal <= 1.1); "
          f"pull + load + first answer {now['pull_s'] + now['load_s'] + now['first_answer_s']:.2f} s against "
          f"{(b := rows['before: every file, weights inline'])['pull_s'] + b['load_s'] + b['first_answer_s']:.2f} s before")
    res.update(rows=rows, ratio_pulled_to_loaded=now['bytes_pulled'] / now['bytes_loaded'], errors=0)
    return res


if __name__ == '__main__': main()
