"""The place prior in batch: `dogbreeds predict` with places. Coordinates from EXIF GPS (photos made with Pillow),
`--lat/--lon` or a `--locations` CSV (explicit wins), the prior of a SQLite feature store, the place columns next to
the unchanged photo columns; bad coordinates: a one-line CLI error, or an error row for a bad CSV row."""
import csv

import pytest

from conftest import gps_jpeg
from dogbreeds.results import GEO_COLUMNS, ResultsError, read_results, result_columns
from dogbreeds.shards import merge_shards
from dogbreeds.predict import batch_predict
from dogbreeds.featurestore import FeatureStore
from dogbreeds.location import cells, combine
from dogbreeds.geolookup import GeoLookup
from dogbreeds.place import PlacePrior
from dogbreeds.inference import Predictor
from dogbreeds.testing import toy_model

LONDON, SYDNEY = (51.5007, -0.1246), (-33.8568, 151.2153)
K = 3


@pytest.fixture(autouse=True)
def no_geo_db(monkeypatch):
    "No GEO_DB from outside; and the one `--geo-db` sets (config.put) is gone after the test."
    monkeypatch.setenv('GEO_DB', ''); monkeypatch.delenv('GEO_DB')

@pytest.fixture
def folder(tmp_path):
    "london.jpg (EXIF at London), sydney.jpg (EXIF at Sydney), plain.jpg (no EXIF GPS)."
    d = tmp_path / 'photos'; d.mkdir()
    (d / 'london.jpg').write_bytes(gps_jpeg('tan', LONDON))
    (d / 'sydney.jpg').write_bytes(gps_jpeg('saddlebrown', SYDNEY))
    (d / 'plain.jpg').write_bytes(gps_jpeg('steelblue'))
    return d

def photo_only(toy_pred, path) -> list:
    return toy_pred.predict(path, k=len(toy_pred.breeds)).top

@pytest.fixture
def store(tmp_path, toy_pred, folder):
    """A SQLite store where London's photo's runner-up breed is very common around London, and Sydney's photo's
    third breed around Sydney."""
    s = FeatureStore(tmp_path / 'geo.db')
    s.london_breed = photo_only(toy_pred, folder / 'london.jpg')[1][0]
    s.sydney_breed = photo_only(toy_pred, folder / 'sydney.jpg')[2][0]
    s.add_many([(*LONDON, s.london_breed, 400), (*SYDNEY, s.sydney_breed, 300), (*LONDON, 'beagle', 5)])
    yield s
    s.close()

def by_name(out): return {r['source'].rsplit('/', 1)[-1]: r for r in read_results(out)}

def header(out):
    with open(out, newline='') as f: return next(csv.reader(f))


def test_exif_places_and_the_prior_moves_the_answer(toy_pred, folder, store, tmp_path, monkeypatch):
    "With GEO_DB set: EXIF coordinates, the prior of each place, the place-adjusted breed; photo columns unchanged."
    monkeypatch.setenv('GEO_DB', str(store.url))
    out, plain_out = tmp_path / 'geo.csv', tmp_path / 'plain.csv'
    r = batch_predict(folder, out, toy_pred, k=K, progress=False)
    assert (r['predicted'], r['errors'], r['located'], r['with_prior']) == (3, 0, 2, 2)
    assert header(out) == result_columns(K) + GEO_COLUMNS
    rows = by_name(out)
    ldn, syd, plain = rows['london.jpg'], rows['sydney.jpg'], rows['plain.jpg']

    # the photo's own columns are what the same run without places writes
    monkeypatch.delenv('GEO_DB')
    batch_predict(folder, plain_out, toy_pred, k=K, progress=False)
    assert header(plain_out) == result_columns(K)   # no GEO_DB, no coordinates: as ever
    for name, row in by_name(plain_out).items():
        assert {c: rows[name][c] for c in result_columns(K)} == row

    assert ldn['location_source'] == 'exif' and ldn['lat'] == pytest.approx(LONDON[0], abs=1e-4) and ldn['lon'] == pytest.approx(LONDON[1], abs=1e-4)
    assert (ldn['prior_cell'], ldn['prior_resolution'], ldn['prior_observations'], ldn['prior_source']) == (cells(*LONDON)[0], 7, 405, 'db')
    # the prior moves London's answer to the breed the store says is common there, as `combine` does
    probs = dict(photo_only(toy_pred, folder / 'london.jpg'))
    want = next(iter(combine(probs, {store.london_breed: 400, 'beagle': 5}).items()))
    assert ldn['breed'] != store.london_breed and ldn['breed_with_prior'] == store.london_breed == want[0]
    assert ldn['probability_with_prior'] == pytest.approx(want[1], abs=1e-5) and ldn['geo_note'] == ''
    assert syd['location_source'] == 'exif' and syd['prior_cell'] == cells(*SYDNEY)[0] and syd['breed_with_prior'] == store.sydney_breed
    assert (plain['location_source'], plain['prior_source'], plain['lat'], plain['prior_cell']) == ('none', 'none', None, '')
    assert plain['breed_with_prior'] == plain['breed'] and 'no coordinates' in plain['geo_note']


def test_explicit_coordinates_win_over_exif(toy_pred, folder, store, tmp_path):
    "--locations names london.jpg by its path under SRC and puts it in Sydney; --lat/--lon put every photo in London."
    geo = PlacePrior(GeoLookup(store))
    (tmp_path / 'where.csv').write_text(f"photo,lat,lon\nlondon.jpg,{SYDNEY[0]},{SYDNEY[1]}\n{folder / 'plain.jpg'},{LONDON[0]},{LONDON[1]}\n")
    batch_predict(folder, tmp_path / 'a.csv', toy_pred, k=K, progress=False, locations=tmp_path / 'where.csv', place=geo)
    rows = by_name(tmp_path / 'a.csv')
    ldn = rows['london.jpg']
    assert (ldn['location_source'], ldn['lat'], ldn['prior_cell']) == ('explicit', pytest.approx(SYDNEY[0]), cells(*SYDNEY)[0])
    assert rows['plain.jpg']['location_source'] == 'explicit' and rows['plain.jpg']['prior_cell'] == cells(*LONDON)[0]  # a full path matches too
    assert rows['sydney.jpg']['location_source'] == 'exif'                      # not listed: its EXIF

    batch_predict(folder, tmp_path / 'b.parquet', toy_pred, k=K, progress=False, lat=str(LONDON[0]), lon=LONDON[1], place=geo)
    rows = by_name(tmp_path / 'b.parquet')
    assert {r['location_source'] for r in rows.values()} == {'explicit'}
    assert {r['prior_cell'] for r in rows.values()} == {cells(*LONDON)[0]}
    assert rows['sydney.jpg']['breed_with_prior'] == store.london_breed


def test_bad_rows_are_error_rows_and_retried(toy_pred, folder, store, tmp_path, capsys):
    geo, where = PlacePrior(GeoLookup(store)), tmp_path / 'where.csv'
    where.write_text("path,lat,lon\nlondon.jpg,north,3\nsydney.jpg,-95,10\nplain.jpg,10,\nnot-there.jpg,1,2\n")
    out = tmp_path / 'r.csv'
    r = batch_predict(folder, out, toy_pred, k=K, progress=False, locations=where, place=geo)
    assert (r['predicted'], r['errors']) == (3, 3)
    assert 'name no photo' in capsys.readouterr().err
    rows = by_name(out)
    assert rows['london.jpg']['error'] == 'LocationError: its row of --locations: "lat" must be a number, got \'north\''
    assert rows['sydney.jpg']['error'].startswith('LocationError: its row of --locations: "lat" must be between -90 and 90')
    assert 'give both "lat" and "lon"' in rows['plain.jpg']['error']
    assert all(x['breed'] is None and x['location_source'] == '' for x in rows.values())
    # the file fixed, --retry-errors does them
    where.write_text(f"path,lat,lon\nlondon.jpg,{LONDON[0]},{LONDON[1]}\nsydney.jpg,,\n")
    r = batch_predict(folder, out, toy_pred, k=K, progress=False, locations=where, place=geo, retry_errors=True)
    assert (r['predicted'], r['errors'], r['located']) == (3, 0, 2)
    rows = by_name(out)
    assert rows['london.jpg']['location_source'] == 'explicit' and rows['sydney.jpg']['location_source'] == 'exif'


def test_cli_errors_are_one_line(toy_pred, folder, store, tmp_path, capsys):
    from dogbreeds.cli import main
    base = ['predict', str(folder), '--out', str(tmp_path / 'x.csv'), '--model', str(toy_pred.model_dir), '--quiet']
    for extra, msg in [(['--lat', '91', '--lon', '0'], '--lat/--lon: "lat" must be between -90 and 90, got 91'),
                       (['--lat', 'north', '--lon', '0'], '--lat/--lon: "lat" must be a number'),
                       (['--lat', '10'], 'give both "lat" and "lon"'),
                       (['--geo-db', str(tmp_path / 'nowhere.db')], 'no such SQLite file'),
                       (['--locations', str(tmp_path / 'missing.csv')], '--locations'),
                       (['--lat', '1', '--lon', '2', '--locations', str(tmp_path / 'w.csv')], 'not both')]:
        with pytest.raises(SystemExit) as e: main(base + extra)
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and err.count('\n') == 1, err
    (tmp_path / 'w.csv').write_text("name,latitude\nx,1\n")
    with pytest.raises(SystemExit): main(base + ['--locations', str(tmp_path / 'w.csv')])
    assert 'its header must name the photo' in capsys.readouterr().err
    assert not (tmp_path / 'x.csv').exists() and not (tmp_path / 'nowhere.db').exists()
    # a good run: --geo-db and --lon with a negative number
    main(base + ['--geo-db', str(store.url), '--lat', str(LONDON[0]), '--lon', str(LONDON[1])])
    assert '3 located, 3 with a place prior' in capsys.readouterr().out
    rows = by_name(tmp_path / 'x.csv')
    assert {r['prior_cell'] for r in rows.values()} == {cells(*LONDON)[0]} and rows['london.jpg']['breed_with_prior'] == store.london_breed


def test_place_columns_in_shards_and_resume(toy_pred, folder, store, tmp_path):
    geo, out = PlacePrior(GeoLookup(store)), tmp_path / 'm.csv'
    for i in range(2): batch_predict(folder, out, toy_pred, k=K, progress=False, shard=(i, 2), place=geo)
    with pytest.raises(ResultsError, match="model and place columns"):  # the job's other shards have them
        batch_predict(folder, out, toy_pred, k=K, progress=False, shard=(0, 2), resume=True, place=None)
    merge_shards(out)
    assert header(out) == result_columns(K) + GEO_COLUMNS
    assert {r['source'].rsplit('/', 1)[-1]: r['location_source'] for r in read_results(out)} == {
        'london.jpg': 'exif', 'sydney.jpg': 'exif', 'plain.jpg': 'none'}
    # a file with the place columns is not resumed by a run without places, nor the other way round
    with pytest.raises(ResultsError, match='with the place columns; this run has no coordinates'):
        batch_predict(folder, out, toy_pred, k=K, progress=False)
    batch_predict(folder, tmp_path / 'p.csv', toy_pred, k=K, progress=False)
    with pytest.raises(ResultsError, match='without the place columns'):
        batch_predict(folder, tmp_path / 'p.csv', toy_pred, k=K, progress=False, place=geo)


def test_s3_prefix_exif_and_locations_by_key(toy_pred, store, s3_server, tmp_path):
    "Photos under an s3:// prefix (SeaweedFS): EXIF read from the object's bytes; --locations names a photo by its key under the prefix."
    import uuid
    c, bucket, prefix = s3_server.client(), s3_server.bucket, f'geo-{uuid.uuid4().hex[:8]}/in'
    c.put_object(Bucket=bucket, Key=f'{prefix}/a/london.jpg', Body=gps_jpeg('tan', LONDON))
    c.put_object(Bucket=bucket, Key=f'{prefix}/plain.jpg', Body=gps_jpeg('steelblue'))
    (tmp_path / 'where.csv').write_text(f"key,lat,lon\nplain.jpg,{SYDNEY[0]},{SYDNEY[1]}\n")
    r = batch_predict(f's3://{bucket}/{prefix}', tmp_path / 's3.csv', toy_pred, k=K, progress=False, endpoint_url=s3_server.endpoint,
                      locations=tmp_path / 'where.csv', place=PlacePrior(GeoLookup(store)))
    assert (r['predicted'], r['errors'], r['located'], r['with_prior']) == (2, 0, 2, 2)
    rows = by_name(tmp_path / 's3.csv')
    assert (rows['london.jpg']['location_source'], rows['london.jpg']['prior_cell'], rows['london.jpg']['breed_with_prior']) == (
        'exif', cells(*LONDON)[0], store.london_breed)
    assert (rows['plain.jpg']['location_source'], rows['plain.jpg']['prior_cell']) == ('explicit', cells(*SYDNEY)[0])


def test_place_prior_is_the_services_prior(tmp_path, folder, monkeypatch):
    """`PlacePrior.prior` (what predict and the demo use) gives what the service's `answer_request` gives, for a model
    whose manifest has non-uniform train counts: one prior, wherever it is asked for."""
    from dogbreeds.handlers import answer_request
    from dogbreeds.location import locate
    from dogbreeds.protocol import parse_request
    from dogbreeds.testing import BREEDS
    model = Predictor.load(toy_model(tmp_path / 'skewed', train_counts={b: 10 * (i + 1) ** 2 for i, b in enumerate(BREEDS)}))
    s = FeatureStore(tmp_path / 'geo.db')
    s.add_many([(*LONDON, b, 5 * i + 1) for i, b in enumerate(BREEDS)])
    s.close()
    monkeypatch.setenv('GEO_DB', str(tmp_path / 'geo.db'))
    place = PlacePrior.from_settings()
    for name in ('london.jpg', 'plain.jpg'):
        data = (folder / name).read_bytes()
        req = parse_request(data, 'image/jpeg'); req.lat, req.lon, req.k = LONDON[0], LONDON[1], len(BREEDS)
        a = answer_request(model, req, place)
        probs = dict(model.predict(model.decode(data), k=len(BREEDS)).top)
        prior, top = place.prior(model, *locate(data, *LONDON), probs, len(BREEDS))
        assert {k: prior[k] for k in ('cell', 'resolution', 'observations', 'alpha', 'smoothing')} == {
            k: a['prior'][k] for k in ('cell', 'resolution', 'observations', 'alpha', 'smoothing')}
        assert [b for b, _ in top] == [p['breed'] for p in a['predictions_with_prior']]
        assert [p for _, p in top] == pytest.approx([p['probability'] for p in a['predictions_with_prior']], abs=1e-6)
