"""Where the photo was taken: coordinates from EXIF GPS (photos made with Pillow) and explicit ones; the feature store on SQLite and on a
real PostgreSQL; the cache in process and on a real Redis; feedback, backing off, and both outages."""
import base64, threading, time
from concurrent.futures import ThreadPoolExecutor

import pytest

from PIL.TiffImagePlugin import IFDRational
from conftest import dms, gps, gps_jpeg
from dogbreeds.location import cells, check_coords, combine, gps_from_exif, locate
from dogbreeds.featurestore import FeatureStore, StoreUnavailable
from dogbreeds.geocache import LRUCache, RedisCache
from dogbreeds.geolookup import GeoLookup
from dogbreeds.protocol import RequestError
from dogbreeds.testing import PostgreSQL, Redis
from dogbreeds.tokens import Signer, TokenUsed

SIGNER = Signer('test-key-' + 'k' * 32)

def grant(lat, lon, model='v1'):
    "A checked feedback token's grant for an answer at `(lat, lon)`."
    return SIGNER.verify(SIGNER.sign('r', None, cells(lat, lon), model))



@pytest.mark.parametrize('lat,lon', [(51.5007, -0.1246), (-33.8568, 151.2153), (40.6892, -74.0445), (-22.9519, -43.2105), (35.6586, 139.7454)])
def test_exif_gps_every_hemisphere(lat, lon):
    loc, note = gps_from_exif(gps_jpeg(size=32, block=gps(lat, lon)))
    assert note is None and loc.source == 'exif'
    assert loc.lat == pytest.approx(lat, abs=1e-5) and loc.lon == pytest.approx(lon, abs=1e-5)

def test_exif_missing_and_malformed():
    assert gps_from_exif(gps_jpeg(size=32, block=None)) == (None, None)
    for bad in [{1: 'N', 2: dms(10)},                                    # no longitude
                {1: 'X', 2: dms(10), 3: 'E', 4: dms(20)},                # bad hemisphere
                {1: 'N', 2: (IFDRational(10, 1), IFDRational(75, 1), IFDRational(0, 1)), 3: 'E', 4: dms(20)},  # 75 minutes
                {1: 'N', 2: dms(95), 3: 'E', 4: dms(20)}]:              # latitude 95
        loc, note = gps_from_exif(gps_jpeg(size=32, block=bad))
        assert loc is None and 'malformed' in note

def test_explicit_coordinates_win_and_bad_ones_are_400():
    loc, _ = locate(gps_jpeg(size=32, block=gps(10, 10)), lat='-5.5', lon=7)
    assert (loc.lat, loc.lon, loc.source) == (-5.5, 7.0, 'explicit')
    assert locate(gps_jpeg(size=32, block=gps(10, 10)))[0].source == 'exif'
    assert check_coords(None, None) is None
    for lat, lon in [(91, 0), (0, -180.5), ('north', 3), (1, None), (float('nan'), 0), (True, 0)]:
        with pytest.raises(RequestError) as e: check_coords(lat, lon)
        assert e.value.status == 400

def test_combine_moves_the_answer_toward_the_place():
    probs = {'beagle': .45, 'pug': .40, 'kelpie': .15}
    assert list(combine(probs, {'kelpie': 200, 'pug': 5}, alpha=1)) == ['kelpie', 'pug', 'beagle']
    assert combine(probs, {'kelpie': 200}, alpha=0) == pytest.approx(probs)
    weak = combine(probs, {'kelpie': 200}, alpha=.2)
    assert probs['kelpie'] < weak['kelpie'] < combine(probs, {'kelpie': 200}, alpha=1)['kelpie']




@pytest.fixture(params=['sqlite', 'postgresql'])
def store(request, tmp_path):
    if request.param == 'sqlite': s = FeatureStore(tmp_path / 'geo.db')
    else:
        server = request.getfixturevalue('pg')
        s = FeatureStore(server.url)
        s.run(lambda cur, sql: [cur.execute(f'DELETE FROM {t}') for t in ('observations', 'feedback_votes', 'feedback_cells', 'feedback_audit')])
    yield s
    s.close()

LONDON, SYDNEY = (51.5007, -0.1246), (-33.8568, 151.2153)

def nearby(point):
    "The centre of another resolution-7 cell in the same resolution-5 cell as `point`."
    import h3
    fine, coarse = cells(*point)[:2]
    other = next(c for c in h3.cell_to_children(coarse, 7) if c != fine)
    return h3.cell_to_latlng(other)

NEARBY = nearby(LONDON)

def test_store_import_backoff_feedback_stats(store, tmp_path):
    csv = tmp_path / 'obs.csv'
    csv.write_text('lat,lon,breed,count\n51.5007,-0.1246,beagle,30\n51.5007,-0.1246,pug,\n-33.8568,151.2153,kelpie,4\n')
    assert store.import_csv(csv) == 3
    p = store.lookup(*LONDON, min_obs=20)                       # the fine cell has 31: used
    assert (p.cell, p.resolution, p.observations, p.counts) == (cells(*LONDON)[0], 7, 31, {'beagle': 30, 'pug': 1})
    p = store.lookup(*NEARBY, min_obs=20)                       # another fine cell, same coarse one: backs off
    assert (p.cell, p.resolution, p.observations) == (cells(*LONDON)[1], 5, 31)
    p = store.lookup(*SYDNEY, min_obs=20)                       # 4 observations everywhere near: the global counts
    assert (p.cell, p.resolution, p.observations) == ('global', -1, 35)
    g = grant(*SYDNEY)
    assert store.vote(g, 'kelpie', 'me', breeds={'kelpie', 'beagle'}) == [*cells(*SYDNEY), 'global']
    with pytest.raises(TokenUsed): store.vote(g, 'kelpie', 'me')   # one vote per token
    assert store.lookup(*SYDNEY, min_obs=4).counts == {'kelpie': 4.2}   # capped: 5 % of 4 curated
    for bad in [dict(breed='wolf'), dict(breed=''), dict(source=''), dict(source='x' * 201)]:
        args = dict(grant=grant(*SYDNEY), breed='kelpie', source='me') | bad
        with pytest.raises(RequestError): store.vote(**args, breeds={'kelpie'})
    st = store.stats()
    assert st['feedback']['votes'] == 1 and st['resolutions']['global']['observations'] == 35 and st['resolutions']['7']['cells'] == 2

def test_import_refuses_bad_rows(tmp_path):
    s = FeatureStore(tmp_path / 'g.db')
    (tmp_path / 'a.csv').write_text('lat,lon,breed\n10,200,pug\n')
    with pytest.raises(Exception, match='line 2'): s.import_csv(tmp_path / 'a.csv')
    (tmp_path / 'b.csv').write_text('lat,breed\n10,pug\n')
    with pytest.raises(Exception, match='lon'): s.import_csv(tmp_path / 'b.csv')


def test_cache_aside_single_flight_and_invalidation(store, geo_cache):
    store.add_many([(*LONDON, 'beagle', 40)])
    g = GeoLookup(store, geo_cache, min_obs=20)
    slow = store.fetch
    def fetch(cs): time.sleep(0.2); return slow(cs)
    store.fetch = fetch
    with ThreadPoolExecutor(16) as ex: results = list(ex.map(lambda _: g.lookup(*LONDON), range(16)))
    store.fetch = slow
    assert store.queries == 1                                    # a burst for one cold cell: one query
    assert all(p.counts == {'beagle': 40} for p, _ in results)
    p, info = g.lookup(*LONDON)
    assert info == {'source': 'cache'} and store.queries == 1
    assert g.vote(grant(*LONDON), 'pug', 'me')['applied']
    p, info = g.lookup(*LONDON)                                  # invalidated: read again, sees the feedback (capped: 5 % of 40)
    assert info['source'] == 'db' and p.counts == {'beagle': 40, 'pug': 1} and store.queries == 2


def test_outages_redis_killed_then_postgres_stopped(tmp_path):
    with PostgreSQL(tmp_path / 'pg') as pgs, Redis(tmp_path / 'redis') as rs:
        store = FeatureStore(pgs.url)
        store.add_many([(*LONDON, 'beagle', 40)])
        g = GeoLookup(store, RedisCache(rs.url, ttl=60), min_obs=20)
        assert g.lookup(*LONDON)[1]['source'] == 'db' and g.lookup(*LONDON)[1]['source'] == 'cache'
        rs.stop()                                                 # Redis down: the database answers
        t = time.perf_counter(); p, info = g.lookup(*LONDON); took = time.perf_counter() - t
        assert p.counts == {'beagle': 40} and info['source'] == 'db' and 'cache unavailable' in info['note'] and took < 2
        pgs.stop()                                                # and the database too: no prior, said so
        p, info = g.lookup(*LONDON)
        assert p is None and info['source'] == 'none' and 'database unavailable' in info['note']
        with pytest.raises(StoreUnavailable): store.stats()


def test_a_database_down_at_start_is_used_once_it_is_back(tmp_path):
    "A service that starts while its database is unreachable (here: the SQLite file's folder is missing) has no prior; once the database answers, its tables are made and lookups use it."
    db = tmp_path / 'later' / 'g.db'
    with pytest.raises(StoreUnavailable): FeatureStore(db)
    g = GeoLookup(FeatureStore(db, create=False), LRUCache())
    p, info = g.lookup(*LONDON)
    assert p is None and info['source'] == 'none' and 'database unavailable' in info['note']
    db.parent.mkdir()
    p, info = g.lookup(*LONDON)                     # the database answers: the tables are made, the place is unknown
    assert p is None and info['source'] == 'db'
    assert g.store.stats()['resolutions'] == {}
    g.store.add_many([(*LONDON, 'beagle', 30)])
    assert g.store.lookup(*LONDON).counts == {'beagle': 30}


# --- the answer path: dogbreeds serve (?lat=&lon=, JSON lat/lon, EXIF, POST /feedback) and Lambda ({"feedback": ...})

@pytest.fixture
def geo_env(toy_dir, tmp_path, monkeypatch):
    model = toy_dir
    db = tmp_path / 'geo.db'
    FeatureStore(db).add_many([(*SYDNEY, 'dingo', 500), (*SYDNEY, 'beagle', 5)])
    for k, v in dict(GEO_DB=str(db), GEO_CACHE='lru', GEO_MIN_OBS='20', GEO_ALPHA='1', MODEL_URI=str(model),
                     FEEDBACK_KEY='geo-test-' + 'k' * 32).items(): monkeypatch.setenv(k, v)
    yield model

def test_serve_answers_with_the_place_and_takes_feedback(geo_env):
    from fastapi.testclient import TestClient
    from dogbreeds.serve import make_app
    jpeg = {'Content-Type': 'image/jpeg'}
    with TestClient(make_app(str(geo_env))) as c:
        body = dict(image=base64.b64encode(gps_jpeg(size=32, block=None)).decode(), k=10)
        a = c.post(f'/invocations?lat={SYDNEY[0]}&lon={SYDNEY[1]}', json=body).json()
        assert a['location']['source'] == 'explicit' and a['location']['cells'][0] == cells(*SYDNEY)[0]
        assert a['prior']['source'] == 'db' and a['prior']['resolution'] == 7 and a['prior']['observations'] == 505
        photo_only = {p['breed']: p['probability'] for p in a['predictions']}
        with_prior = {p['breed']: p['probability'] for p in a['predictions_with_prior']}
        assert with_prior == pytest.approx(combine(photo_only, {'dingo': 500, 'beagle': 5}, 1.0, 1.0))
        assert with_prior['dingo'] > photo_only['dingo'] and with_prior['Shih-Tzu'] < photo_only['Shih-Tzu']
        b = c.post('/invocations', content=gps_jpeg(size=32, block=gps(*SYDNEY)), headers=jpeg).json()    # from EXIF, now cached
        assert b['location']['source'] == 'exif' and b['prior']['source'] == 'cache'
        assert [p['breed'] for p in b['predictions_with_prior']] == [p['breed'] for p in a['predictions_with_prior']][:5]
        n = c.post('/invocations', content=gps_jpeg(size=32, block=None), headers=jpeg).json()
        assert n['location'] is None and n['prior']['source'] == 'none' and n['predictions_with_prior'] == n['predictions']
        m = c.post('/invocations', content=gps_jpeg(size=32, block={1: 'Q', 2: dms(1), 3: 'E', 4: dms(2)}), headers=jpeg).json()
        assert m['location'] is None and 'malformed' in m['prior']['note']
        for q in ('lat=95&lon=0', 'lat=abc&lon=1', 'lat=1'):
            r = c.post(f'/invocations?{q}', content=gps_jpeg(size=32, block=None), headers=jpeg)
            assert r.status_code == 400 and 'lat' in r.json()['error']
        fb = dict(feedback_token=a['feedback_token'], breed='beagle')                  # the answer's token: its place
        assert c.post('/feedback', json=fb).json() == dict(applied=True, request_id=a['request_id'], cell=cells(*SYDNEY)[0], breed='beagle')
        assert c.post('/feedback', json=fb).status_code == 409                          # one vote per token
        assert c.post('/feedback', json=dict(feedback_token=b['feedback_token'], breed='wolf')).status_code == 400
        assert c.post('/feedback', content=b'not json').status_code == 400
        after = c.post('/invocations', json=body | dict(lat=SYDNEY[0], lon=SYDNEY[1])).json()
        assert after['prior']['source'] == 'db' and after['prior']['observations'] == 506   # the cache was invalidated

def test_lambda_feedback_and_answer(geo_env):
    import base64
    from dogbreeds import lambda_handler as lh
    lh.reset()
    out = lh.handler(dict(image=base64.b64encode(gps_jpeg(size=32, block=gps(*SYDNEY))).decode(), k=2))
    assert out['statusCode'] == 200 and out['prior']['cell'] == cells(*SYDNEY)[0] and len(out['predictions_with_prior']) == 2
    assert out['request_id'] and out['feedback_token']                               # a direct answer carries both
    fb = lh.handler(dict(feedback=dict(feedback_token=out['feedback_token'], lat=SYDNEY[0], lon=SYDNEY[1], breed='dingo')))
    assert fb['statusCode'] == 200 and fb['applied'] is True and fb['request_id'] == out['request_id']
    assert lh.handler(dict(feedback=dict(feedback_token=out['feedback_token'], lat=200, lon=0, breed='dingo')))['statusCode'] == 400
    lh.reset()


def test_cli_geo_import_and_stats(tmp_path, capsys):
    from dogbreeds.cli import main
    (tmp_path / 'o.csv').write_text('lat,lon,breed,count\n51.5,-0.12,beagle,3\n-33.9,151.2,dingo,2\n')
    main(['geo', 'import', str(tmp_path / 'o.csv'), '--geo-db', str(tmp_path / 'g.db')])
    out = capsys.readouterr().out
    assert 'imported 2 observation rows' in out and '"observations": 5' in out
    main(['geo', 'stats', '--geo-db', str(tmp_path / 'g.db')])
    assert '"cells": 2' in capsys.readouterr().out
    with pytest.raises(SystemExit): main(['geo', 'import', str(tmp_path / 'missing.csv'), '--geo-db', str(tmp_path / 'g.db')])
