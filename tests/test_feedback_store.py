"""The store's side of feedback that cannot be forged: feedback votes apart from the curated observations, one per token, capped at a fraction
of each cell's curated count and fading with age, a per-source limit, and a revert that restores the answers and that
every process's cache (in-process LRU, real Redis) forgets; on SQLite and on a real PostgreSQL."""
import time

import pytest

from dogbreeds.featurestore import DAY, FeatureStore, bounded
from dogbreeds.geo import parse_since
from dogbreeds.location import cells, combine
from dogbreeds.geocache import LRUCache, RedisCache
from dogbreeds.geolookup import GeoLookup
from dogbreeds.protocol import RequestError
from dogbreeds.testing import BREEDS
from dogbreeds.tokens import Signer, TokenUsed

SYDNEY, OSLO = (-33.87, 151.21), (59.91, 10.75)
SIGNER = Signer('store-test-' + 'k' * 32)
CAP = 0.05
SHIFT = CAP / (1 + CAP)          # the most a breed's share in a cell can move, however many votes


def grant(point, model='v1'):
    return SIGNER.verify(SIGNER.sign('r', None, cells(*point), model))


def fresh(request, tmp_path, **kw) -> FeatureStore:
    if request.param == 'sqlite': return FeatureStore(tmp_path / 'geo.db', **kw)
    s = FeatureStore(request.getfixturevalue('pg').url, **kw)
    s.run(lambda cur, sql: [cur.execute(f'DELETE FROM {t}') for t in ('observations', 'feedback_votes', 'feedback_cells', 'feedback_audit')])
    return s


@pytest.fixture(params=['sqlite', 'postgresql'])
def store(request, tmp_path):
    s = fresh(request, tmp_path, cap=CAP, half_life=30, source_limit=0)   # no per-source limit: the cap alone bounds the flood
    s.add_many([(*SYDNEY, b, 200) for b in BREEDS])                        # the store: 2,000 curated at Sydney
    yield s
    s.close()


def shares(counts:dict) -> dict:
    n = sum(counts.values())
    return {b: counts.get(b, 0) / n for b in BREEDS}


def moved(before:dict, after:dict) -> float:
    "The most any breed's share moved."
    a, b = shares(before), shares(after)
    return max(abs(a[x] - b[x]) for x in BREEDS)


def test_bounded_is_the_cap():
    assert bounded({'a': 100}, {'b': 1}, 0.05) == {'a': 100, 'b': 1}           # under the cap: every vote counts
    assert bounded({'a': 100}, {'b': 1000}, 0.05) == {'a': 100, 'b': 5.0}      # over it: scaled to 5 % of 100
    assert bounded({'a': 100}, {'a': 30, 'b': 70}, 0.05) == {'a': 101.5, 'b': 3.5}
    assert bounded({}, {'b': 1000}, 0.05) == {} and bounded({'a': 3}, {}, 0.05) == {'a': 3}


def test_a_flood_of_valid_votes_moves_a_cell_and_the_global_counts_by_at_most_the_cap(store, geo_cache):
    g = GeoLookup(store, geo_cache, min_obs=20)
    probs = {b: (0.53 if b == 'Rhodesian ridgeback' else 0.47 / 9) for b in BREEDS}   # the ambiguous photo
    at_sydney, at_oslo = g.lookup(*SYDNEY)[0], g.lookup(*OSLO)[0]
    assert (at_sydney.resolution, at_oslo.cell) == (7, 'global')
    before = {p: combine(probs, prior.counts) for p, prior in (('sydney', at_sydney), ('oslo', at_oslo))}
    t = time.time()
    for _ in range(400): g.vote(grant(SYDNEY), 'dingo', 'flooder')              # one source, 400 real answers' tokens (4 × the cap)
    s2, o2 = g.lookup(*SYDNEY)[0], g.lookup(*OSLO)[0]                           # the cache forgot: the votes are read
    assert s2.counts['dingo'] == pytest.approx(200 + CAP * 2000) and o2.counts['dingo'] == pytest.approx(200 + CAP * 2000)
    assert moved(at_sydney.counts, s2.counts) <= SHIFT + 1e-9 and moved(at_oslo.counts, o2.counts) <= SHIFT + 1e-9
    after = {'sydney': combine(probs, s2.counts), 'oslo': combine(probs, o2.counts)}
    for place in after:   # the answer keeps its top breed; dingo gains at most what 5 % more dingoes give it
        assert next(iter(after[place])) == 'Rhodesian ridgeback' and before[place]['dingo'] < after[place]['dingo'] < 0.08
    for _ in range(100): g.vote(grant(SYDNEY), 'dingo', 'flooder')              # more votes move nothing more
    assert g.lookup(*SYDNEY)[0].counts == s2.counts
    r = g.revert(t, source='flooder')
    assert r['votes'] == 500 and set(r['cells']) == {*cells(*SYDNEY), 'global'}
    assert g.lookup(*SYDNEY)[0].counts == at_sydney.counts and g.lookup(*OSLO)[0].counts == at_oslo.counts


def test_votes_fade_and_old_ones_are_not_read(request, tmp_path):
    request.param = 'sqlite'
    now = [time.time()]
    s = FeatureStore(tmp_path / 'g.db', cap=1, half_life=10, source_limit=0, clock=lambda: now[0])
    s.add_many([(*SYDNEY, 'beagle', 100)])
    for _ in range(8): s.vote(grant(SYDNEY), 'dingo', 'a')
    c = cells(*SYDNEY)[0]
    assert s.fetch([c])[c]['dingo'] == 8
    now[0] += 10 * DAY
    assert s.fetch([c])[c]['dingo'] == 4                    # one half-life
    now[0] += 91 * DAY
    assert 'dingo' not in s.fetch([c])[c]                   # past ten half-lives: not read


@pytest.mark.parametrize('store_kind', ['sqlite', 'postgresql'])
def test_one_vote_per_token_and_a_limit_per_source(store_kind, request, tmp_path):
    request.param = store_kind
    s = fresh(request, tmp_path, source_limit=3)
    s.add_many([(*SYDNEY, 'beagle', 100)])
    g = grant(SYDNEY)
    s.vote(g, 'dingo', 'a')
    with pytest.raises(TokenUsed) as e: s.vote(g, 'beagle', 'b')                # another source, the same token
    assert e.value.status == 409
    s.vote(grant(SYDNEY), 'dingo', 'a'); s.vote(grant(SYDNEY), 'dingo', 'a')
    with pytest.raises(RequestError) as e: s.vote(grant(SYDNEY), 'dingo', 'a')  # a fourth vote from one source in a day
    assert e.value.status == 429 and 'at most 3' in str(e.value)
    s.vote(grant(SYDNEY), 'dingo', 'b')                                         # another source is not limited by it
    assert s.stats()['feedback']['votes'] == 4 and s.stats()['feedback']['sources'] == 2
    s.close()


@pytest.mark.parametrize('kind', ['lru', 'redis'])
def test_revert_is_audited_and_every_cache_forgets(kind, request, tmp_path):
    "A revert made elsewhere (here: by the CLI) reaches the caches of running services through the audit trail."
    from dogbreeds.cli import main
    db = tmp_path / 'g.db'
    s = FeatureStore(db, cap=0.5, source_limit=0)
    s.add_many([(*SYDNEY, b, 20) for b in BREEDS])
    url = request.getfixturevalue('redis_server').url if kind == 'redis' else None
    def service():
        c = LRUCache(ttl=600) if kind == 'lru' else RedisCache(url, ttl=600)
        return GeoLookup(FeatureStore(db, source_limit=0), c, min_obs=20, audit_poll=0)
    if url: RedisCache(url).r.flushdb()
    a, b = service(), service()
    clean = a.lookup(*SYDNEY)[0].counts
    t = time.time()
    first = grant(SYDNEY)
    a.vote(first, 'dingo', 'poisoner')
    for i in range(29): a.vote(grant(SYDNEY), 'dingo', 'poisoner')
    a.vote(grant(SYDNEY), 'beagle', 'honest')
    poisoned = b.lookup(*SYDNEY)[0].counts
    assert poisoned['dingo'] > clean['dingo'] and b.lookup(*SYDNEY)[1]['source'] == 'cache'
    main(['geo', 'feedback', 'list', '--geo-db', str(db), '--since', '1h', '--source', 'poisoner'])
    main(['geo', 'feedback', 'revert', '--geo-db', str(db), '--since', str(t), '--source', 'poisoner'])
    for g in (a, b):                       # both services: the cells are read again, without the poisoner's votes
        p, info = g.lookup(*SYDNEY)
        assert p.counts == dict(clean, beagle=clean['beagle'] + 1)
    trail = s.audit()
    assert [(x['action'], x['source'], x['votes']) for x in trail] == [('revert', 'poisoner', 30)]
    assert set(trail[0]['cells']) == {*cells(*SYDNEY), 'global'}
    assert all(v['reverted'] for v in s.votes(t, 'poisoner')) and not s.votes(t, 'honest')[0]['reverted']
    with pytest.raises(TokenUsed): s.vote(first, 'dingo', 'poisoner')   # a reverted vote's token stays used: no replay


def test_cli_feedback_list_and_revert_output(tmp_path, capsys):
    from dogbreeds.cli import main
    db = tmp_path / 'g.db'
    s = FeatureStore(db, source_limit=0)
    s.add_many([(*SYDNEY, 'beagle', 100)])
    s.vote(grant(SYDNEY), 'dingo', 'k:abc')
    main(['geo', 'feedback', 'list', '--geo-db', str(db), '--since', '10m'])
    out = capsys.readouterr().out
    assert 'k:abc' in out and 'dingo' in out and 'live' in out and cells(*SYDNEY)[0] in out
    with pytest.raises(SystemExit): main(['geo', 'feedback', 'revert', '--geo-db', str(db)])   # --since is required
    main(['geo', 'feedback', 'revert', '--geo-db', str(db), '--since', '0'])
    assert 'reverted 1 votes' in capsys.readouterr().out
    assert parse_since('1d', 1_000_000) == 1_000_000 - 86400
