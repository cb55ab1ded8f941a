"""Registry benchmark: push and pull times for a model folder the size of an exported MobileNetV2.

    python benchmarks/registry.py                 # 9 MB model.pt + 9 MB model.onnx, 5 repeats
    python benchmarks/registry.py --model-dir DIR # a real exported folder instead of random bytes
    python benchmarks/registry.py --mb 45 --repeats 3

It starts SeaweedFS (`weed mini`, from the dev extra) on free local ports, and times, against it and
against a local-folder registry:

- `push`: verify the folder, upload every file, the manifest, the version record, the log entry;
- `pull`: resolve the alias, download into a staging folder, check every sha256, rename into place;
- `pull_model (cached)`: what a warm serving process pays per call: resolve the alias, re-check the
  cached files' sha256, no download;

side by side with what a user would do without the registry: plain boto3 `upload_file` /
`download_file` of the same files (no verification, no record, no alias), or `shutil.copytree`.
Figures are medians over the repeats, in milliseconds, with the throughput of the transfer.
"""
import argparse, json, random, shutil, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))


def make_folder(folder: Path, mb: float) -> Path:
    "An exported-model-sized folder of random bytes: model.pt and model.onnx of `mb` MB each, and a manifest."
    from dogbreeds.core import MANIFEST, file_record
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for name in ('model.pt', 'model.onnx'): (folder / name).write_bytes(rng.randbytes(int(mb * 1e6)))
    (folder / 'breeds.json').write_text(json.dumps([f'breed{i}' for i in range(10)]))
    files = {f: file_record(folder / f) for f in ('model.pt', 'model.onnx', 'breeds.json')}
    (folder / MANIFEST).write_text(json.dumps(dict(arch='mobilenet_v2', files=files), indent=2))
    return folder


def timed(fn, repeats: int) -> float:
    "Median wall time of `fn()` in milliseconds."
    out = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model-dir', help='an exported model folder (default: random bytes)')
    ap.add_argument('--mb', type=float, default=9.0, help='size of model.pt and of model.onnx, in MB (random bytes)')
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'registry.json'))
    a = ap.parse_args()
    from conditions import Conditions
    cond = Conditions()

    import boto3
    from dogbreeds.testing import SeaweedFS
    from dogbreeds.core import verify_files
    from dogbreeds.registry import Registry, pull_model

    tmp = Path(tempfile.mkdtemp(prefix='registry-bench-'))
    try:
        model = Path(a.model_dir) if a.model_dir else make_folder(tmp / 'model', a.mb)
        files = sorted(p for p in model.iterdir() if p.is_file())
        total = sum(p.stat().st_size for p in files)
        n = a.repeats
        rows = []

        with SeaweedFS(tmp / 'seaweedfs') as s3:
            session = boto3.session.Session(aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                                            region_name='us-east-1')
            targets = [('local folder', str(tmp / 'registry'), {}),
                       ('SeaweedFS (S3)', f's3://{s3.bucket}/models', dict(endpoint_url=s3.endpoint, session=session))]
            for label, uri, kw in targets:
                reg = Registry(uri, progress=False, **kw)
                versions = []
                push = timed(lambda i: versions.append(reg.push(model, 'dogbreeds')), n)
                reg.promote('dogbreeds', versions[-1])
                pull = timed(lambda i: reg.pull('dogbreeds', 'production', tmp / f'pull-{label[:5]}-{i}'), n)
                cold = timed(lambda i: pull_model(f'{uri}/dogbreeds@production', dest_root=tmp / f'cache-{label[:5]}-{i}', **kw), n)
                warm = timed(lambda i: pull_model(f'{uri}/dogbreeds@production', dest_root=tmp / f'cache-{label[:5]}-0', **kw), n)
                rows += [(label, 'registry push', push), (label, 'registry pull (verified)', pull),
                         (label, 'pull_model, first call', cold), (label, 'pull_model, cached', warm)]

            # the alternative a user would pick without the registry
            c = s3.client()
            from boto3.s3.transfer import TransferConfig
            cfg = TransferConfig()  # boto3's defaults, as the registry uses
            def up(i):
                for p in files: c.upload_file(str(p), s3.bucket, f'plain/{i}/{p.name}', Config=cfg)
            def down(i):
                d = tmp / f'plain-{i}'; d.mkdir()
                for p in files: c.download_file(s3.bucket, f'plain/{i}/{p.name}', str(d / p.name), Config=cfg)
            rows += [('SeaweedFS (S3)', 'plain boto3 upload_file', timed(up, n)),
                     ('SeaweedFS (S3)', 'plain boto3 download_file', timed(down, n))]
        rows += [('local folder', 'plain shutil.copytree', timed(lambda i: shutil.copytree(model, tmp / f'copy-{i}'), n)),
                 ('-', 'sha256 of every file (verify_files)', timed(lambda i: verify_files(model), n))]

        print(f"model folder: {model} ({len(files)} files, {total / 1e6:.1f} MB); median of {n} runs; "
              f"SeaweedFS on 127.0.0.1")
        print(f"{'backend':<16} {'operation':<38} {'ms':>8} {'MB/s':>8}")
        for backend, op, ms in rows:
            rate = '' if 'cached' in op else f"{total / 1e6 / (ms / 1000):8.0f}"
            print(f"{backend:<16} {op:<38} {ms:8.1f} {rate:>8}")
        cond.save(a.out, dict(model=str(model), files=len(files), mb=total / 1e6, repeats=n, errors=0,
                              rows=[dict(backend=b, operation=op, ms=ms) for b, op, ms in rows]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
