import os, shutil, sys
from pathlib import Path

import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / 'data' / 'sample'


@pytest.fixture(scope='session')
def sample_photos():
    "Breed name -> sorted list of real photos from the bundled sample (train and val)."
    from dogbreeds.datasets import IMAGEWOOF_BREEDS
    return {name: sorted((SAMPLE / 'train' / wnid).glob('*')) + sorted((SAMPLE / 'val' / wnid).glob('*'))
            for wnid, (name, _) in IMAGEWOOF_BREEDS.items()}


def photo_tree(spec: dict, root: Path, photos: dict) -> Path:
    "Copy to each path of `spec` (relative to `root`) the next unused photo of the breed it names, from `photos`."
    used = {}
    for rel, breed in spec.items():
        i = used.get(breed, 0); used[breed] = i + 1
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photos[breed][i], dst)
    return root


@pytest.fixture
def make_tree(tmp_path, sample_photos):
    """Build a dataset tree from real sample photos: `make_tree({'rel/path/name.jpg': breed, ...})`.

    Each value names the breed whose next unused sample photo is copied to that path."""
    def make(spec: dict, root: Path | None = None) -> Path:
        return photo_tree(spec, root or tmp_path / 'tree', sample_photos)
    return make


FOUR_BREEDS = ('beagle', 'Samoyed', 'dingo', 'Shih-Tzu')
FOUR_BREEDS_TREE = {f'{b}/{b}{i}.jpg': b for b in FOUR_BREEDS for i in range(10)}  # ten real photos of each


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
    "A real (tiny) fastai fine-tuning run on the whole sample, exported: shared by the export, inference and serving tests."
    from dogbreeds.train import train
    out = tmp_path_factory.mktemp('trained')
    return train('sample', recipe='fine-tune', arch='mobilenet_v2', size=96, epochs=1, freeze_epochs=1, lr=2e-3, bs=32,
                 quiet=True, out_dir=out, run_name='run')


@pytest.fixture(scope='session')
def head_run(tmp_path_factory):
    "A run of the default recipe (the default two-network ensemble, classifiers fitted on frozen ImageNet bodies) on the sample."
    from dogbreeds.train import train
    out = tmp_path_factory.mktemp('head')
    return train('sample', size=128, quiet=True, out_dir=out, run_name='head')


@pytest.fixture(scope='session')
def head_model_dir(head_run):
    return head_run.run_dir / 'model'


@pytest.fixture(scope='session')
def model_dir(trained_run):
    return trained_run.run_dir / 'model'



@pytest.fixture(scope='session')
def toy_dir(tmp_path_factory):
    "The toy model's folder (`dogbreeds.testing.toy_model`: it answers by a photo's colour), for the session: read only."
    from dogbreeds.testing import toy_model
    return toy_model(tmp_path_factory.mktemp('toy') / 'model')


@pytest.fixture(scope='session')
def toy_pred(toy_dir):
    "The toy model loaded (`dogbreeds.inference.Predictor`), for the session."
    from dogbreeds.inference import Predictor
    return Predictor.load(toy_dir)

# ---------------------------------------------------------------------------------------------------------
# Real servers on 127.0.0.1 and free ports, from dogbreeds.testing: SeaweedFS (S3) and `dogbreeds serve`.

from dogbreeds.testing import S3_TEST_KEY, S3_TEST_SECRET, SeaweedFS, ServeProcess, free_ports  # noqa: E402  (tests import them from here too)


@pytest.fixture(scope='session')
def s3_server(tmp_path_factory):
    """A SeaweedFS S3 server for the whole session, with test credentials in the environment.

    AWS settings that could point boto3 elsewhere (a profile, an endpoint, a config file, instance metadata)
    are cleared for the session; the registry's endpoint is passed explicitly or through AWS_ENDPOINT_URL."""
    root = tmp_path_factory.mktemp('seaweedfs')
    mp = pytest.MonkeyPatch()
    for k in ('AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_ENDPOINT_URL',
              'AWS_ENDPOINT_URL_S3', 'AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'DOGBREEDS_REGISTRY'):
        mp.delenv(k, raising=False)
    mp.setenv('AWS_ACCESS_KEY_ID', S3_TEST_KEY)
    mp.setenv('AWS_SECRET_ACCESS_KEY', S3_TEST_SECRET)
    mp.setenv('AWS_DEFAULT_REGION', 'us-east-1')
    mp.setenv('AWS_CONFIG_FILE', str(root / 'no-aws-config'))
    mp.setenv('AWS_SHARED_CREDENTIALS_FILE', str(root / 'no-aws-credentials'))
    mp.setenv('AWS_EC2_METADATA_DISABLED', 'true')
    server = SeaweedFS(root / 'server')
    try:
        with server: yield server
        assert not server.listening(), f"SeaweedFS still listens on {server.listening()} after stopping"
    finally:
        mp.undo()


def make_model_dir(folder, seed: int = 0, big: int = 6 * 2**20, accuracy: float = 0.9) -> Path:
    """A model folder as the export step writes one, of random bytes: a `big`-byte model.pt (big enough for a
    multipart upload when the threshold is 5 MiB), a small model.onnx and breeds.json, and manifest.json."""
    import json, random
    from dogbreeds.core import MANIFEST, file_record
    folder = Path(folder)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    (folder / 'model.pt').write_bytes(rng.randbytes(big))
    (folder / 'model.onnx').write_bytes(rng.randbytes(50_000 + seed))
    (folder / 'breeds.json').write_text(json.dumps(['beagle', 'samoyed', 'dingo']))
    files = {f: file_record(folder / f) for f in ('model.pt', 'model.onnx', 'breeds.json')}
    manifest = dict(arch='mobilenet_v2', breeds=['beagle', 'samoyed', 'dingo'], metrics=dict(accuracy=accuracy),
                    created='2026-11-23T10:15:00+00:00', files=files)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture(scope='session')
def mlflow_server(tmp_path_factory):
    "A real MLflow tracking server (`dogbreeds.testing.MLflowServer`) for the session; checked to be stopped at the end."
    from dogbreeds.testing import MLflowServer
    server = MLflowServer(tmp_path_factory.mktemp('mlflow'))
    with server: yield server
    assert not server.listening(), f"MLflow still listens on {server.listening()} after stopping"


@pytest.fixture(scope='session')
def first_retrain(tmp_path_factory, sample_photos, s3_server, mlflow_server):
    """`dogbreeds retrain` from a shell, once for the session (read only): four breeds, ten real photos each, into an
    empty registry on the real S3 server (so it is promoted), tracked on the real MLflow server (experiment
    `test-retrain`). tests/test_retrain.py checks the run and challenges it; tests/test_tracking.py checks its MLflow
    run. `r` is the finished command; the run folder is `runs/first`."""
    import types, uuid
    work = tmp_path_factory.mktemp('retrain')
    data = photo_tree(FOUR_BREEDS_TREE, work / 'tree', sample_photos)
    registry = f"s3://{s3_server.bucket}/retrain-{uuid.uuid4().hex[:8]}/models"
    runs = work / 'runs'
    (work / 'params.yaml').write_text(f'data: {data}\nsize: 64\nepochs: 0\nfreeze_epochs: 1\nlr: 2e-3\n')
    import subprocess
    env = {**{k: v for k, v in os.environ.items() if not k.startswith('MLFLOW_')}, 'PYTHONPATH': str(ROOT), 'MPLBACKEND': 'Agg'}
    r = subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', 'retrain', '-f', str(work / 'params.yaml'),
                        '-p', 'bs', '16', '--registry', registry, '--runs-dir', str(runs), '--run-id', 'first',
                        '--endpoint-url', s3_server.endpoint, '--tracking-uri', mlflow_server.url, '--experiment', 'test-retrain'],
                       capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    return types.SimpleNamespace(r=r, data=data, registry=registry, runs=runs, run_dir=runs / 'first')


@pytest.fixture(scope='session')
def served(model_dir):
    "`dogbreeds serve` of the trained model, for the whole session; checked to be stopped at the end."
    server = ServeProcess(model_dir)
    with server: yield server
    assert not server.listening(), f"dogbreeds serve still listens on {server.port} after stopping"


@pytest.fixture
def aws(monkeypatch):
    "moto's mock of AWS (for the APIs with no local server: SageMaker, CloudWatch, IAM...), with fake credentials: a boto3 Session."
    import boto3, moto
    for k in ('AWS_PROFILE', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_SAGEMAKER'): monkeypatch.delenv(k, raising=False)
    for k, v in dict(AWS_ACCESS_KEY_ID='test', AWS_SECRET_ACCESS_KEY='test', AWS_DEFAULT_REGION='us-east-1').items(): monkeypatch.setenv(k, v)
    with moto.mock_aws():
        yield boto3.session.Session(region_name='us-east-1')


@pytest.fixture(scope='module')
def pg():
    "A real PostgreSQL 15 server (run as the postgres user), one per test module."
    import tempfile
    from dogbreeds.testing import PostgreSQL
    with PostgreSQL(tempfile.mkdtemp()) as server: yield server


@pytest.fixture(scope='module')
def redis_server():
    "A real Redis server on a free port, one per test module."
    from dogbreeds.testing import Redis
    with Redis() as server: yield server


@pytest.fixture(params=['lru', 'redis'])
def geo_cache(request):
    "The place prior's cache, both kinds: in process (LRU), and on the module's real Redis server (emptied first)."
    from dogbreeds.geocache import LRUCache, RedisCache
    if request.param == 'lru': return LRUCache(ttl=60)
    c = RedisCache(request.getfixturevalue('redis_server').url, ttl=60)
    c.r.flushdb()
    return c


# ---------------------------------------------------------------------------------------------------------
# Helpers the test files import (`from conftest import ...`): one of each.

def dogbreeds(*args, cwd=None, env: dict | None = None, timeout: float = 600):
    "Run the `dogbreeds` command line in a subprocess, as the console script does, from the repository root by default."
    import subprocess
    env = None if env is None else {**os.environ, **env}
    return subprocess.run([sys.executable, '-c', 'from dogbreeds.cli import main; main()', *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=timeout, env=env)


def gps(lat, lon, lat_ref=None, lon_ref=None) -> dict:
    "The EXIF GPS block a phone writes at (lat, lon) (`dogbreeds.testing.photo_exif`); hemisphere letters overridable."
    from dogbreeds.testing import photo_exif
    block = dict(photo_exif(at=(lat, lon))[0x8825])
    if lat_ref: block[1] = lat_ref
    if lon_ref: block[3] = lon_ref
    return block


def dms(x) -> tuple:
    "`x` degrees as EXIF writes them: (degrees, minutes, seconds), rationals."
    return gps(x, 0)[2]


def gps_jpeg(colour='tan', at=None, block: dict | None = None, size: int = 64) -> bytes:
    "A JPEG of one colour (the toy model answers by colour), with EXIF GPS at `at` = (lat, lon), or the GPS `block`."
    import io
    from PIL import Image
    from dogbreeds.location import GPS_IFD
    exif = Image.Exif()
    if at is not None: block = gps(*at)
    if block is not None: exif[GPS_IFD] = block
    b = io.BytesIO(); Image.new('RGB', (size, size), colour).save(b, 'JPEG', exif=exif); return b.getvalue()

