"""The model registry, against a local folder and against a real S3 server (SeaweedFS over HTTP).

Every test that makes sense for both backends runs on both (`registry` is parametrised); wrong credentials,
a missing bucket, encryption headers and multipart uploads exist only on S3."""
import hashlib, json, subprocess, sys, uuid
from pathlib import Path

import pytest

from conftest import ROOT, dogbreeds, free_ports, make_model_dir
from dogbreeds.core import MANIFEST, IntegrityError, verify_files
from dogbreeds.registry import (AliasInUseError, BucketNotFoundError, LocalBackend, MiB, NotFoundError, Registry,
                                RegistryAccessError, RegistryError, VersionExistsError, is_version, parse_model_uri,
                                pull_model, push_if_configured)
import dogbreeds.registry as registry_mod

# small multipart settings so the 6 MiB model.pt goes up in two parts (5 MiB is S3's smallest part)
S3_OPTS = dict(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, progress=False)


class Crash(Exception):
    "A transfer that dies."


@pytest.fixture(params=['local', 's3'])
def backend(request):
    return request.param


@pytest.fixture
def registry_uri(backend, tmp_path, request):
    if backend == 'local': return str(tmp_path / 'registry')
    return f"s3://{request.getfixturevalue('s3_server').bucket}/t-{uuid.uuid4().hex[:10]}/models"


@pytest.fixture
def reg_kwargs(backend, request):
    return {'progress': False} if backend == 'local' else dict(S3_OPTS, endpoint_url=request.getfixturevalue('s3_server').endpoint)


@pytest.fixture
def registry(registry_uri, reg_kwargs):
    return Registry(registry_uri, **reg_kwargs)


@pytest.fixture
def models(tmp_path):
    "Two different model folders."
    return [make_model_dir(tmp_path / f'model{i}', seed=i, accuracy=0.8 + i / 100) for i in (1, 2)]


def store_raw(reg, key, data):
    "Write `data` at registry key `key` behind the registry's back, as someone with access to the storage could."
    if isinstance(reg.backend, LocalBackend): (reg.backend.root / key).write_bytes(data)
    else: reg.backend.client.put_object(Bucket=reg.backend.bucket, Key=reg.backend._key(key), Body=data)


def remove_raw(reg, key):
    if isinstance(reg.backend, LocalBackend): (reg.backend.root / key).unlink()
    else: reg.backend.client.delete_object(Bucket=reg.backend.bucket, Key=reg.backend._key(key))


def fail_after_first_file(monkeypatch, reg):
    "Make the registry's transfers die on the second file it uploads."
    real, calls = reg.backend.put_file, []
    def put_file(src, key, callback=None):
        calls.append(key)
        if len(calls) > 1: raise Crash(f"connection lost uploading {key}")
        return real(src, key, callback)
    monkeypatch.setattr(reg.backend, 'put_file', put_file)
    return calls


# --- push, list, pull, promote ---------------------------------------------------------------------------

def test_push_list_pull_round_trip(registry, models, tmp_path):
    v1 = registry.push(models[0], 'dogbreeds', note='first')
    v2 = registry.push(models[1], 'dogbreeds', note='second')
    assert is_version(v1) and is_version(v2) and v1 != v2
    assert registry.versions('dogbreeds') == sorted([v1, v2])
    assert registry.names() == ['dogbreeds']
    recs = registry.list('dogbreeds')
    assert [r['version'] for r in recs] == [v1, v2]  # oldest first
    r1 = recs[0]
    assert r1['note'] == 'first' and r1['by'] and r1['aliases'] == []
    assert r1['files'] == json.loads((models[0] / MANIFEST).read_text())['files']
    assert r1['model'] == {'arch': 'mobilenet_v2', 'created': '2026-11-23T10:15:00+00:00', 'n_breeds': 3,
                           'metrics': {'accuracy': 0.81}}
    assert r1['bytes'] == sum(p.stat().st_size for p in models[0].iterdir())
    got = registry.pull('dogbreeds', v1, tmp_path / 'pulled')
    assert got == tmp_path / 'pulled'
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in models[0].iterdir())
    for p in models[0].iterdir(): assert (got / p.name).read_bytes() == p.read_bytes(), p.name
    with pytest.raises(RegistryError, match='already exists'):
        registry.pull('dogbreeds', v1, tmp_path / 'pulled')
    assert registry.pull('dogbreeds', v2, tmp_path / 'pulled', overwrite=True) == got
    assert (got / 'model.onnx').read_bytes() == (models[1] / 'model.onnx').read_bytes()


def test_promote_resolve_and_audit_log(registry, models, tmp_path, monkeypatch):
    monkeypatch.setenv('DOGBREEDS_USER', 'alice')
    v1 = registry.push(models[0], 'dogbreeds', note='baseline')
    v2 = registry.push(models[1], 'dogbreeds', note='more epochs', alias='staging')
    assert registry.resolve('dogbreeds', 'staging') == v2
    a = registry.promote('dogbreeds', v1, reason='baseline is what we trust')
    assert (a['alias'], a['version'], a['previous'], a['by']) == ('production', v1, None, 'alice')
    assert registry.resolve('dogbreeds') == v1 and registry.resolve('dogbreeds', v2) == v2
    a = registry.promote('dogbreeds', 'staging', 'production', reason='staging looked good')  # alias to alias
    assert (a['version'], a['previous']) == (v2, v1)
    assert {k: r['version'] for k, r in registry.aliases('dogbreeds').items()} == {'production': v2, 'staging': v2}
    assert [r['aliases'] for r in registry.list('dogbreeds')] == [[], ['production', 'staging']]
    assert registry.pull('dogbreeds', 'production', tmp_path / 'p').joinpath('model.pt').read_bytes() == \
        (models[1] / 'model.pt').read_bytes()
    log = registry.log('dogbreeds')
    assert [(e['action'], e.get('version'), e.get('alias')) for e in log] == [
        ('push', v1, None), ('push', v2, None), ('promote', v2, 'staging'), ('promote', v1, 'production'),
        ('promote', v2, 'production')]
    assert all(e['by'] == 'alice' for e in log)
    assert log[0]['note'] == 'baseline' and log[3]['reason'] == 'baseline is what we trust' and log[4]['previous'] == v1
    assert [e['action'] for e in registry.log('dogbreeds', limit=2)] == ['promote', 'promote']


def test_delete_refuses_a_version_an_alias_names(registry, models):
    v1 = registry.push(models[0], 'dogbreeds')
    v2 = registry.push(models[1], 'dogbreeds', alias='production')
    with pytest.raises(AliasInUseError, match=f'dogbreeds@{v2} is what alias production names'):
        registry.delete('dogbreeds', v2)
    with pytest.raises(RegistryError, match='takes a version id'):
        registry.delete('dogbreeds', 'production')
    registry.delete('dogbreeds', v1, reason='superseded')
    assert registry.versions('dogbreeds') == [v2]
    assert registry.backend.list_dir(f'dogbreeds/versions/{v1}') == ([], [])  # the files are gone too
    with pytest.raises(NotFoundError, match=f'no version {v1} of dogbreeds'):
        registry.delete('dogbreeds', v1)
    assert registry.log('dogbreeds')[-1] | {'time': None, 'by': None} == dict(
        time=None, action='delete', name='dogbreeds', by=None, version=v1, complete=True, reason='superseded')


def test_push_never_overwrites(registry, models, monkeypatch):
    v1 = registry.push(models[0], 'dogbreeds')
    v2 = registry.push(models[0], 'dogbreeds')  # the same folder twice: two versions
    assert v1 != v2 and registry.versions('dogbreeds') == sorted([v1, v2])
    before = {k: registry.backend.get_bytes(f'dogbreeds/versions/{k}') for k in
              (f'{v1}.json', f'{v1}/_push.json', f'{v1}/model.pt', f'{v1}/{MANIFEST}')}
    monkeypatch.setattr(registry_mod, 'new_version_id', lambda when=None: v1)  # force a clash of ids
    uploads = []
    monkeypatch.setattr(registry.backend, 'put_file', lambda *a, **k: uploads.append(a))
    with pytest.raises(VersionExistsError, match=f'version id {v1} of dogbreeds is already taken'):
        registry.push(models[1], 'dogbreeds')
    assert uploads == []  # refused before uploading anything
    assert {k: registry.backend.get_bytes(f'dogbreeds/versions/{k}') for k in before} == before
    monkeypatch.undo()
    assert registry.versions('dogbreeds') == sorted([v1, v2])
    assert verify_files(registry.pull('dogbreeds', v1, registry_mod.Path(models[0].parent / 'check')))


def test_a_retried_exclusive_write_that_had_landed_counts(registry, models, monkeypatch):
    "botocore retries a request whose response was lost: the retry of an If-None-Match write then gets 412."
    real = registry.backend.put_bytes
    def landed_then_retried(key, data, exclusive=False):
        real(key, data, exclusive)
        if exclusive: real(key, data, exclusive)  # raises: the key is taken (by this very push)
    monkeypatch.setattr(registry.backend, 'put_bytes', landed_then_retried)
    v = registry.push(models[0], 'dogbreeds')
    assert registry.versions('dogbreeds') == [v]


def test_push_verifies_the_folder_first(registry, models):
    (models[0] / 'model.onnx').write_bytes(b'changed after export')
    with pytest.raises(IntegrityError, match='model.onnx'):
        registry.push(models[0], 'dogbreeds')
    assert registry.backend.list_dir('') == ([], [])  # nothing written at all


def test_push_warns_about_files_not_in_the_manifest(registry, models):
    (models[0] / 'notes.txt').write_text('scratch')
    with pytest.warns(UserWarning, match='not pushed: notes.txt'):
        v = registry.push(models[0], 'dogbreeds')
    assert 'notes.txt' not in registry.backend.list_dir(f'dogbreeds/versions/{v}')[1]


# --- faults ----------------------------------------------------------------------------------------------

def test_upload_dying_midway_leaves_no_version_and_the_alias_unchanged(registry, models, monkeypatch):
    v1 = registry.push(models[0], 'dogbreeds', alias='production')
    calls = fail_after_first_file(monkeypatch, registry)
    with pytest.raises(Crash):
        registry.push(models[1], 'dogbreeds', alias='production')
    assert len(calls) == 2  # the first file went up, the second died
    assert registry.versions('dogbreeds') == [v1]
    assert registry.resolve('dogbreeds') == v1
    assert registry.incomplete('dogbreeds') == []  # the failed push removed what it wrote
    dirs, files = registry.backend.list_dir('dogbreeds/versions')
    assert files == [f'{v1}.json']
    for d in dirs:  # SeaweedFS keeps an emptied folder as a prefix; it holds nothing
        if d != v1: assert registry.backend.list_dir(f'dogbreeds/versions/{d}') == ([], []), d
    assert [e['action'] for e in registry.log('dogbreeds')] == ['push', 'promote']


def test_a_killed_push_is_never_listed_and_can_be_deleted(registry, models, monkeypatch):
    "Killed so hard that it could not clean up: a folder without a record, which no reader sees."
    v1 = registry.push(models[0], 'dogbreeds', alias='production')
    fail_after_first_file(monkeypatch, registry)
    def no_cleanup(prefix): raise Crash('killed')
    monkeypatch.setattr(registry.backend, 'delete_prefix', no_cleanup)
    with pytest.raises(Crash):
        registry.push(models[1], 'dogbreeds')
    monkeypatch.undo()
    assert registry.versions('dogbreeds') == [v1]
    [dead] = registry.incomplete('dogbreeds')
    assert registry.backend.list_dir(f'dogbreeds/versions/{dead}')[1] == ['_push.json', 'model.pt']
    with pytest.raises(NotFoundError, match=f'no version {dead} of dogbreeds'):
        registry.pull('dogbreeds', dead)
    with pytest.raises(NotFoundError):
        registry.promote('dogbreeds', dead)
    assert registry.resolve('dogbreeds') == v1
    registry.delete('dogbreeds', dead, reason='killed push')
    assert registry.incomplete('dogbreeds') == [] and registry.versions('dogbreeds') == [v1]
    assert registry.log('dogbreeds')[-1]['complete'] is False


def test_interrupted_push_cleans_up(registry, models, monkeypatch):
    "Ctrl-C in the middle of an upload: the same clean-up as a failure."
    v1 = registry.push(models[0], 'dogbreeds')
    real = registry.backend.put_bytes
    def interrupt(key, data, exclusive=False):
        if key.endswith(MANIFEST): raise KeyboardInterrupt
        return real(key, data, exclusive)
    monkeypatch.setattr(registry.backend, 'put_bytes', interrupt)
    with pytest.raises(KeyboardInterrupt):
        registry.push(models[1], 'dogbreeds')
    assert registry.versions('dogbreeds') == [v1] and registry.incomplete('dogbreeds') == []


@pytest.mark.parametrize('victim', ['model.onnx', 'model.pt', 'breeds.json'])
def test_pull_refuses_a_tampered_file_naming_it(registry, models, tmp_path, victim):
    v = registry.push(models[0], 'dogbreeds', alias='production')
    store_raw(registry, f'dogbreeds/versions/{v}/{victim}', b'tampered')
    with pytest.raises(IntegrityError, match=f'pull refused: {victim} of dogbreeds@{v} does not match its manifest'):
        registry.pull('dogbreeds', 'production', tmp_path / 'dest')
    assert not (tmp_path / 'dest').exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.dest')] == []  # no staging folder left


def test_pull_refuses_a_tampered_manifest(registry, models, tmp_path):
    "Changing a file and its manifest entry together is caught by the manifest's sha256 in the version record."
    v = registry.push(models[0], 'dogbreeds')
    m = json.loads((models[0] / MANIFEST).read_text())
    m['files']['breeds.json'] = {'sha256': '0' * 64, 'bytes': 8}
    store_raw(registry, f'dogbreeds/versions/{v}/breeds.json', b'tampered')
    store_raw(registry, f'dogbreeds/versions/{v}/{MANIFEST}', json.dumps(m).encode())
    with pytest.raises(IntegrityError, match=f'pull refused: manifest.json of dogbreeds@{v} does not match the sha256'):
        registry.pull('dogbreeds', v, tmp_path / 'dest')
    assert not (tmp_path / 'dest').exists()


def test_pull_refuses_a_missing_file(registry, models, tmp_path):
    v = registry.push(models[0], 'dogbreeds')
    remove_raw(registry, f'dogbreeds/versions/{v}/model.onnx')
    with pytest.raises(IntegrityError, match=f'pull refused: model.onnx of dogbreeds@{v} is missing'):
        registry.pull('dogbreeds', v, tmp_path / 'dest')
    assert not (tmp_path / 'dest').exists()


def test_pull_refuses_a_manifest_that_escapes_the_folder(registry, models, tmp_path):
    "A manifest naming ../x would make pull write outside its folder: refused, even with a matching record."
    v = registry.push(models[0], 'dogbreeds')
    m = json.loads((models[0] / MANIFEST).read_text())
    m['files']['../evil'] = m['files']['breeds.json']
    raw = json.dumps(m).encode()
    store_raw(registry, f'dogbreeds/versions/{v}/{MANIFEST}', raw)
    rec = json.loads(registry.backend.get_bytes(f'dogbreeds/versions/{v}.json'))
    rec['manifest_sha256'] = hashlib.sha256(raw).hexdigest()
    store_raw(registry, f'dogbreeds/versions/{v}.json', json.dumps(rec).encode())
    with pytest.raises(IntegrityError, match="lists '../evil'"):
        registry.pull('dogbreeds', v, tmp_path / 'dest' / 'inner')
    assert not (tmp_path / 'dest' / 'evil').exists() and not (tmp_path / 'dest' / 'inner').exists()


def test_missing_version_or_alias_lists_what_exists(registry, models):
    v1 = registry.push(models[0], 'dogbreeds', alias='production')
    v2 = registry.push(models[1], 'dogbreeds')
    with pytest.raises(NotFoundError) as e:
        registry.resolve('dogbreeds', 'staging')
    assert str(e.value) == (f"no alias 'staging' of dogbreeds in {registry.uri}; aliases: production -> {v1}; "
                            f"versions (newest first): {v2}, {v1}")
    missing = '20200101T000000Z-abcdef'
    with pytest.raises(NotFoundError, match=f'no version {missing} of dogbreeds in .*; aliases: production -> {v1}; '
                                            f'versions \\(newest first\\): {v2}, {v1}'):
        registry.pull('dogbreeds', missing)
    with pytest.raises(NotFoundError, match=f"no model 'dogbread' in {registry.uri}: it holds dogbreeds"):
        registry.resolve('dogbread')
    with pytest.raises(RegistryError, match='neither a version id'):
        registry.resolve('dogbreeds', 'Not An Alias')


def test_an_empty_registry_says_so(registry):
    with pytest.raises(NotFoundError, match=f"no model 'dogbreeds' in {registry.uri}: the registry is empty"):
        registry.pull('dogbreeds')
    assert registry.names() == [] and registry.list('dogbreeds') == []


# --- pull_model: the serving path ------------------------------------------------------------------------

def test_pull_model_caches_by_resolved_version(registry, registry_uri, reg_kwargs, models, tmp_path):
    v1 = registry.push(models[0], 'dogbreeds', alias='production')
    cache = tmp_path / 'cache'
    kw = {k: v for k, v in reg_kwargs.items() if k == 'endpoint_url'}
    uri = f'{registry_uri}/dogbreeds@production'
    p = pull_model(uri, dest_root=cache, **kw)
    assert p == cache / 'dogbreeds' / v1 and verify_files(p)
    stamp = {f.name: f.stat().st_mtime_ns for f in p.iterdir()}
    assert pull_model(uri, dest_root=cache, **kw) == p
    assert {f.name: f.stat().st_mtime_ns for f in p.iterdir()} == stamp  # reused, not downloaded again
    (p / 'model.pt').write_bytes(b'bit rot')  # a damaged cached copy is pulled again
    assert pull_model(uri, dest_root=cache, **kw) == p and verify_files(p)
    v2 = registry.push(models[1], 'dogbreeds')
    registry.promote('dogbreeds', v2)
    assert pull_model(uri, dest_root=cache, **kw) == cache / 'dogbreeds' / v2
    assert pull_model(f'{registry_uri}/dogbreeds@{v1}', dest_root=cache, **kw) == p
    # a refused pull leaves nothing in the cache
    v3 = registry.push(models[0], 'dogbreeds', alias='canary')
    store_raw(registry, f'dogbreeds/versions/{v3}/model.pt', b'tampered')
    with pytest.raises(IntegrityError, match='model.pt'):
        pull_model(f'{registry_uri}/dogbreeds@canary', dest_root=cache, **kw)
    assert sorted(x.name for x in (cache / 'dogbreeds').iterdir()) == sorted([v1, v2])


def test_serving_pulls_only_what_its_backend_loads(s3_server, model_dir, tmp_path, monkeypatch):
    """A cold start from S3 pulls the manifest and the files its backend loads, nothing else: the ONNX backend leaves
    model.pt in the registry; a TorchScript load of the same version later pulls model.pt alone and keeps the rest."""
    from dogbreeds.inference import Predictor
    uri = f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:10]}/models"
    Registry(uri, **S3_OPTS, endpoint_url=s3_server.endpoint).push(model_dir, 'dogbreeds', alias='production')
    monkeypatch.setenv('AWS_ENDPOINT_URL', s3_server.endpoint)
    monkeypatch.setenv('DOGBREEDS_CACHE', str(tmp_path / 'cache'))
    got, real = [], registry_mod.S3Backend.get_file
    def get_file(self, key, dst, callback=None):
        real(self, key, dst, callback); got.append((key.rsplit('/', 1)[-1], Path(dst).stat().st_size))
    monkeypatch.setattr(registry_mod.S3Backend, 'get_file', get_file)
    m = json.loads((model_dir / MANIFEST).read_text())
    p = Predictor.load(f'{uri}/dogbreeds@production')
    photo = sorted((ROOT / 'data' / 'sample' / 'val').rglob('*.JPEG'))[0]
    assert p.backend.name == 'onnx' and p.predict(photo).top[0][0] in m['breeds']
    assert sorted(f for f, _ in got) == sorted(m['serving_files']['onnx']) and 'model.pt' not in dict(got)
    assert sorted(f.name for f in p.model_dir.iterdir()) == sorted([*m['serving_files']['onnx'], MANIFEST])
    pulled = sum(n for _, n in got)
    loaded = m['files']['model.onnx']['bytes'] + m['files']['model.onnx.data']['bytes']  # what the session opens at load
    assert pulled <= 1.1 * loaded, (pulled, loaded)
    assert pulled < 0.7 * sum(r['bytes'] for r in m['files'].values())  # model.pt (the other backend's) stayed behind
    got.clear()
    t = Predictor.load(f'{uri}/dogbreeds@production', backend='torchscript')
    assert t.model_dir == p.model_dir and [f for f, _ in got] == ['model.pt']
    assert sorted(f.name for f in p.model_dir.iterdir()) == sorted([*m['files'], MANIFEST])  # the ONNX files were kept
    got.clear()
    assert Predictor.load(f'{uri}/dogbreeds@production').model_dir == p.model_dir and got == []  # cached: nothing pulled
    with pytest.raises(RegistryError, match='has no nothing.bin'):
        pull_model(f'{uri}/dogbreeds@production', dest_root=tmp_path / 'c2', files=['nothing.bin'])


def test_pull_model_when_another_process_pulls_at_the_same_time(registry, registry_uri, reg_kwargs, models, tmp_path,
                                                               monkeypatch):
    "Two cold workers: the one that finishes second keeps the first one's folder (it may be loading it) and cleans up."
    v = registry.push(models[0], 'dogbreeds', alias='production')
    cache, kw = tmp_path / 'cache', {k: x for k, x in reg_kwargs.items() if k == 'endpoint_url'}
    real = Registry.pull
    def pull_while_another_worker_finishes_first(self, name, ref, dest, overwrite=False, files=None):
        out = real(self, name, ref, dest, overwrite, files)
        real(self, name, ref, cache / 'dogbreeds' / v)  # the other worker's copy lands first
        (cache / 'dogbreeds' / v / 'marker').write_text('the other worker loads this folder')
        return out
    monkeypatch.setattr(Registry, 'pull', pull_while_another_worker_finishes_first)
    p = pull_model(f'{registry_uri}/dogbreeds@production', dest_root=cache, **kw)
    assert p == cache / 'dogbreeds' / v and (p / 'marker').exists() and verify_files(p)
    assert sorted(x.name for x in (cache / 'dogbreeds').iterdir()) == [v]  # no leftover download


def test_a_registry_path_that_is_a_file(tmp_path, models):
    (tmp_path / 'reg').write_text('not a folder')
    with pytest.raises(RegistryError, match=f"registry {tmp_path / 'reg'} is a file, not a folder"):
        Registry(tmp_path / 'reg').push(models[0], 'dogbreeds')


def test_pull_model_default_cache(monkeypatch, tmp_path, models):
    reg = Registry(tmp_path / 'reg', progress=False)
    v = reg.push(models[0], 'dogbreeds', alias='production')
    monkeypatch.setenv('DOGBREEDS_CACHE', str(tmp_path / 'c'))
    assert pull_model(f"file://{tmp_path / 'reg'}/dogbreeds") == tmp_path / 'c' / 'dogbreeds' / v
    monkeypatch.delenv('DOGBREEDS_CACHE')
    monkeypatch.setenv('AWS_LAMBDA_FUNCTION_NAME', 'classify')
    assert registry_mod.default_cache() == registry_mod.Path('/tmp/dogbreeds-models')


def test_parse_model_uri():
    assert parse_model_uri('s3://b/models/dogbreeds@production') == ('s3://b/models', 'dogbreeds', 'production')
    assert parse_model_uri('/srv/reg/dogbreeds') == ('/srv/reg', 'dogbreeds', 'production')
    assert parse_model_uri('file:///dogbreeds@20261123T101500Z-3fa2c1') == ('file:///', 'dogbreeds', '20261123T101500Z-3fa2c1')
    for bad in ('dogbreeds', 's3://dogbreeds', 's3://b/x/dog breeds', 's3://b/dogbreeds@PROD'):
        with pytest.raises(RegistryError): parse_model_uri(bad)


# --- progress bars ---------------------------------------------------------------------------------------

def test_progress_bars_count_every_byte(registry_uri, reg_kwargs, models, tmp_path, capsys):
    reg = Registry(registry_uri, **{**reg_kwargs, 'progress': True})
    v = reg.push(models[0], 'dogbreeds')
    reg.pull('dogbreeds', v, tmp_path / 'dest')
    err = capsys.readouterr().err
    total = sum(p.stat().st_size for p in models[0].iterdir())
    assert f'push dogbreeds: 100%' in err and f'pull dogbreeds: 100%' in err
    assert f'{total / 2**20:.2f}M/{total / 2**20:.2f}M' in err


# --- S3 only: encryption, multipart, credentials, bucket, endpoint -------------------------------------

def test_s3_objects_are_encrypted_and_large_files_multipart(s3_server, models):
    reg = Registry(f's3://{s3_server.bucket}/enc-{uuid.uuid4().hex[:8]}', endpoint_url=s3_server.endpoint, **S3_OPTS)
    v = reg.push(models[0], 'dogbreeds', alias='production')
    c, b = s3_server.client(), s3_server.bucket
    keys = [o['Key'] for o in c.list_objects_v2(Bucket=b, Prefix=reg.backend.prefix + '/')['Contents']]
    assert len(keys) == 4 + 1 + 1 + 1 + 2  # 4 files, the claim, the record, the alias, 2 log entries
    for k in keys: assert c.head_object(Bucket=b, Key=k).get('ServerSideEncryption') == 'AES256', k
    assert c.head_object(Bucket=b, Key=reg.backend._key(f'dogbreeds/versions/{v}/model.pt'))['ETag'].endswith('-2"')
    assert not c.head_object(Bucket=b, Key=reg.backend._key(f'dogbreeds/versions/{v}/model.onnx'))['ETag'].endswith('-2"')


def test_s3_encryption_can_be_switched_off(s3_server, models, cli):
    "For servers without SSE; the CLI's --no-sse reaches every write (the files, the record, the log)."
    prefix = f'nosse-{uuid.uuid4().hex[:8]}'
    env = {'AWS_ENDPOINT_URL': s3_server.endpoint}
    code, out, err = cli('push', '--model', str(models[0]), '--registry', f's3://{s3_server.bucket}/{prefix}', '--no-sse', env=env)
    assert code == 0, err
    c, b = s3_server.client(), s3_server.bucket
    keys = [o['Key'] for o in c.list_objects_v2(Bucket=b, Prefix=prefix + '/')['Contents']]
    assert len(keys) == 4 + 1 + 1 + 1  # 4 files, the claim, the record, the log entry
    for k in keys: assert 'ServerSideEncryption' not in c.head_object(Bucket=b, Key=k), k


def test_s3_kms_key_is_requested(s3_server, models):
    "With a KMS key, every write asks for SSE-KMS with that key (SeaweedFS has no KMS, so the headers are checked)."
    reg = Registry(f's3://{s3_server.bucket}/kms', endpoint_url=s3_server.endpoint, kms_key_id='alias/dogbreeds', **S3_OPTS)
    seen = []
    def stop(request, **kw):
        seen.append(dict(request.headers))
        raise Crash('stopped before sending')
    reg.backend.client.meta.events.register('before-send.s3.CreateMultipartUpload', stop)
    reg.backend.client.meta.events.register('before-send.s3.PutObject', stop)
    with pytest.raises(Crash):
        reg.push(models[0], 'dogbreeds')
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in seen[0].items()}
    assert headers['x-amz-server-side-encryption'] == 'aws:kms'
    assert headers['x-amz-server-side-encryption-aws-kms-key-id'] == 'alias/dogbreeds'
    assert reg.versions('dogbreeds') == []


def test_s3_network_failure_mid_multipart_upload(s3_server, models):
    "The connection dies after the first part of the big file: no version, no multipart upload left open."
    reg = Registry(f's3://{s3_server.bucket}/mpu-{uuid.uuid4().hex[:8]}', endpoint_url=s3_server.endpoint, **S3_OPTS)
    parts = []
    def die(request, **kw):
        parts.append(request.url)
        if len(parts) > 1: raise Crash('connection reset')
    reg.backend.client.meta.events.register('before-send.s3.UploadPart', die)
    with pytest.raises(Crash):
        reg.push(models[0], 'dogbreeds')
    c = s3_server.client()
    assert reg.versions('dogbreeds') == [] and reg.incomplete('dogbreeds') == []
    assert c.list_objects_v2(Bucket=s3_server.bucket, Prefix=reg.backend.prefix + '/').get('KeyCount') == 0
    assert [u for u in c.list_multipart_uploads(Bucket=s3_server.bucket).get('Uploads', [])
            if u['Key'].startswith(reg.backend.prefix)] == []


def test_s3_wrong_credentials_is_one_clear_line(s3_server, models, monkeypatch):
    uri = f's3://{s3_server.bucket}/creds'
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'wrong-secret')
    with pytest.raises(RegistryAccessError) as e:
        Registry(uri, endpoint_url=s3_server.endpoint, **S3_OPTS).push(models[0], 'dogbreeds')
    assert str(e.value) == (f"the S3 server at {s3_server.endpoint} refused the credentials (SignatureDoesNotMatch): "
                            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
    monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'nobody')
    with pytest.raises(RegistryAccessError, match=r'refused the credentials \(InvalidAccessKeyId\)'):
        Registry(uri, endpoint_url=s3_server.endpoint, **S3_OPTS).pull('dogbreeds')
    monkeypatch.delenv('AWS_ACCESS_KEY_ID')
    monkeypatch.delenv('AWS_SECRET_ACCESS_KEY')
    with pytest.raises(RegistryAccessError, match='^no AWS credentials found'):
        Registry(uri, endpoint_url=s3_server.endpoint, **S3_OPTS).versions('dogbreeds')


def test_s3_missing_bucket_is_one_clear_line(s3_server, models, tmp_path):
    reg = Registry('s3://no-such-bucket/models', endpoint_url=s3_server.endpoint, **S3_OPTS)
    msg = (f"bucket 'no-such-bucket' does not exist at {s3_server.endpoint}: create it, "
           "or fix the registry URI s3://no-such-bucket/models")
    with pytest.raises(BucketNotFoundError) as e:
        reg.push(models[0], 'dogbreeds')
    assert str(e.value) == msg
    with pytest.raises(BucketNotFoundError):
        reg.pull('dogbreeds', 'production', tmp_path / 'dest')
    assert 'no-such-bucket' not in [b['Name'] for b in s3_server.client().list_buckets()['Buckets']]


def test_s3_endpoint_from_environment(s3_server, models, monkeypatch):
    monkeypatch.setenv('AWS_ENDPOINT_URL', s3_server.endpoint)
    reg = Registry(f's3://{s3_server.bucket}/env-{uuid.uuid4().hex[:8]}', progress=False)
    assert reg.backend.endpoint == s3_server.endpoint
    v = reg.push(models[0], 'dogbreeds')
    assert reg.versions('dogbreeds') == [v]


def test_s3_unreachable_endpoint(models):
    import boto3
    session = boto3.session.Session(aws_access_key_id='k', aws_secret_access_key='s', region_name='us-east-1')
    reg = Registry('s3://bucket/models', endpoint_url=f'http://127.0.0.1:{free_ports(1)[0]}', max_attempts=1,
                   progress=False, session=session)
    with pytest.raises(RegistryError, match='^cannot reach S3 at http://127.0.0.1:'):
        reg.versions('dogbreeds')


# --- the module stays light, the export hook, the command line -------------------------------------------

def test_registry_imports_neither_torch_nor_fastai_nor_boto3(tmp_path, models):
    code = ("import sys; from dogbreeds.registry import Registry, pull_model; "
            f"r = Registry({str(tmp_path / 'reg')!r}, progress=False); r.push({str(models[0])!r}, 'dogbreeds', alias='production'); "
            f"pull_model({str(tmp_path / 'reg')!r} + '/dogbreeds', dest_root={str(tmp_path / 'cache')!r}); "
            "print(sorted(m for m in ('torch', 'fastai', 'boto3', 'botocore') if m in sys.modules))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[]'


def test_push_if_configured(monkeypatch, models, tmp_path, capsys):
    monkeypatch.delenv('DOGBREEDS_REGISTRY', raising=False)
    assert push_if_configured(models[0]) is None
    assert capsys.readouterr().out == 'not pushed: no registry configured (set DOGBREEDS_REGISTRY to s3://BUCKET/PREFIX or a folder)\n'
    monkeypatch.setenv('DOGBREEDS_REGISTRY', str(tmp_path / 'reg'))
    uri = push_if_configured(models[0], 'dogbreeds', alias='staging')
    reg_uri, name, v = parse_model_uri(uri)
    assert (reg_uri, name) == (str(tmp_path / 'reg'), 'dogbreeds') and is_version(v)
    assert Registry(reg_uri).resolve('dogbreeds', 'staging') == v
    assert capsys.readouterr().out == f'pushed {models[0]} to {uri} and made it dogbreeds@staging\n'



@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `dogbreeds ARGS...` in this process (the subprocess tests below cover the console script itself):
    returns (exit status, stdout, stderr)."""
    from dogbreeds.cli import main
    def run(*args, env=None, cwd=None):
        with monkeypatch.context() as m:
            m.setattr(sys, 'argv', ['dogbreeds', *args])
            for k, v in (env or {}).items(): m.setenv(k, v)
            if cwd: m.chdir(cwd)
            capsys.readouterr()
            try: code = main(list(args)) or 0
            except SystemExit as e: code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_cli_push_list_promote_pull(cli, backend, registry_uri, reg_kwargs, models, tmp_path):
    env = {'DOGBREEDS_REGISTRY': registry_uri, 'DOGBREEDS_USER': 'ci'}
    if backend == 's3': env['AWS_ENDPOINT_URL'] = reg_kwargs['endpoint_url']  # the CLI finds S3 the standard way
    code, out, err = cli('push', '--model', str(models[0]), '--note', 'from the CLI', env=env)
    assert code == 0, err
    reg_uri, name, v1 = parse_model_uri(out.strip())
    assert (reg_uri, name) == (registry_uri, 'dogbreeds') and is_version(v1)
    assert '\r' not in out + err  # not interactive: no progress bars in logs
    v2 = parse_model_uri(cli('push', '--model', str(models[1]), '--alias', 'staging', env=env)[1].strip())[2]

    assert cli('promote', '--model', f'dogbreeds@{v1}', '--reason', 'baseline', env=env) == (0, f'dogbreeds@production -> {v1}\n', '')
    assert cli('promote', '--model', 'dogbreeds@staging', env=env) == (0, f'dogbreeds@production -> {v2} (was {v1})\n', '')

    assert cli('list', env=env) == (0, 'dogbreeds\n', '')
    lines = cli('list', '--model', 'dogbreeds', env=env)[1].splitlines()
    assert lines[0].split()[:3] == ['version', 'created', '(UTC)']
    assert lines[1].startswith(v1) and 'from the CLI' in lines[1] and '0.8100' in lines[1] and ' ci ' in lines[1]
    assert lines[2].startswith(v2) and 'production,staging' in lines[2] and '0.8200' in lines[2]
    log = cli('list', '--model', 'dogbreeds', '--log', env=env)[1].splitlines()
    assert [l.split()[1:3] for l in log] == [['push', 'ci'], ['push', 'ci'], ['promote', 'ci'], ['promote', 'ci'],
                                            ['promote', 'ci']]

    assert cli('pull', '--model', 'dogbreeds', '--out', str(tmp_path / 'prod'), env=env) == (0, f"{tmp_path / 'prod'}\n", '')
    assert (tmp_path / 'prod' / 'model.pt').read_bytes() == (models[1] / 'model.pt').read_bytes()
    code, out, err = cli('pull', '--model', f'{registry_uri}/dogbreeds@{v1}', '--out', str(tmp_path / 'v1'),
                         env={**env, 'DOGBREEDS_REGISTRY': ''})  # a whole model URI carries its registry
    assert code == 0 and (tmp_path / 'v1' / 'model.pt').read_bytes() == (models[0] / 'model.pt').read_bytes(), err
    assert cli('pull', '--model', f'dogbreeds@{v1}', env=env, cwd=tmp_path)[1] == f'dogbreeds-{v1}\n'  # default: ./NAME-VERSION
    assert (tmp_path / f'dogbreeds-{v1}' / MANIFEST).exists()

    assert cli('delete', '--model', f'dogbreeds@{v2}', env=env) == (1, '', f'dogbreeds: error: dogbreeds@{v2} is what alias production, '
                                                         'staging names: promote another version to production first, then delete\n')
    code, out, err = cli('pull', '--model', 'dogbreeds@canary', '--out', str(tmp_path / 'x'), env=env)
    assert code == 1 and err.count('\n') == 1 and err.startswith("dogbreeds: error: no alias 'canary' of dogbreeds in ")
    assert not (tmp_path / 'x').exists()
    assert cli('delete', '--model', f'dogbreeds@{v1}', '--reason', 'old', env=env) == (0, f'deleted dogbreeds@{v1}\n', '')
    assert cli('list', '--model', 'dogbreeds', '--log', env=env)[1].splitlines()[-1].split()[1:4] == ['delete', 'ci', f'version={v1}']


def test_promote_and_delete_options_have_one_home():
    "`promote` and `delete` take their registry options from one definition, and `--help` lists them all."
    import inspect
    from dogbreeds import registry_cli
    from dogbreeds.cli import parser
    shared = [k for k in inspect.signature(registry_cli._open_version).parameters if k not in ('model', 'verb')]
    assert shared == ['reason', 'registry', 'endpoint_url', 'kms_key_id', 'no_sse']
    for cmd, own in (('promote', ['--model', '--alias']), ('delete', ['--model'])):
        f = getattr(registry_cli, f'{cmd}_cli')
        assert f.__delwrap__ is registry_cli._open_version  # delegated, not written out again
        opts = [a.option_strings[0] for a in parser(cmd)._actions if a.help != '==SUPPRESS==' and a.option_strings[0] != '-h']
        assert opts == own + ['--' + k.replace('_', '-') for k in shared], opts
        help = ' '.join(parser(cmd).format_help().split())
        assert 'why, for the audit log' in help and 'default: $DOGBREEDS_REGISTRY' in help and 'SSE-KMS' in help, help


def test_cli_errors_are_one_line(s3_server, tmp_path, models):
    r = dogbreeds('list', '--model', 'dogbreeds', env={'DOGBREEDS_REGISTRY': ''})
    assert (r.returncode, r.stderr) == (1, 'dogbreeds: error: no registry given: pass one (--registry) or set '
                                           'DOGBREEDS_REGISTRY to s3://BUCKET/PREFIX or a folder\n')
    s3 = {'AWS_ENDPOINT_URL': s3_server.endpoint}
    r = dogbreeds('push', '--model', str(models[0]), '--registry', f's3://{s3_server.bucket}/cli', env={**s3, 'AWS_SECRET_ACCESS_KEY': 'nope'})
    assert (r.returncode, r.stderr) == (1, f"dogbreeds: error: the S3 server at {s3_server.endpoint} refused the credentials "
                                           "(SignatureDoesNotMatch): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE\n")
    r = dogbreeds('pull', '--model', 'dogbreeds', '--registry', 's3://missing-bucket/m', env=s3)
    assert (r.returncode, r.stderr) == (1, f"dogbreeds: error: bucket 'missing-bucket' does not exist at {s3_server.endpoint}: "
                                           "create it, or fix the registry URI s3://missing-bucket/m\n")
    r = dogbreeds('promote', '--model', 'dogbreeds', '--registry', str(tmp_path))
    assert (r.returncode, r.stderr) == (2, 'dogbreeds: error: name the version to promote: dogbreeds@VERSION '
                                           '(see dogbreeds list --model dogbreeds)\n')
