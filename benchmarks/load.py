"""Load benchmark of `dogbreeds serve` (the SageMaker container's HTTP server): concurrent clients posting real
photos over loopback HTTP, side by side for each worker count asked for, in one run.

    python benchmarks/load.py --model exported_models/<run>/model                 # 32 clients x 3000 requests, 1 and 2 workers
    python benchmarks/load.py --model DIR --clients 32 --requests 300 --workers 1  # a shorter run
    python benchmarks/load.py --model DIR --metrics off on                           # Prometheus metrics off, then on

With metrics on (`--metrics`, default both, side by side), the row also reads the server's own figures back from
/metrics: its count of answered requests (checked against the client's) and the p99 of its `total` stage (a bucket
bound of `dogbreeds_request_duration_seconds`, server side, so without the queueing the client sees).

Bounded: the server listens on 127.0.0.1 only, on a free port; each client sends `--requests` requests one after
another (a rotating mix of the sample's photos, as image/jpeg), and the run stops by itself after that, or after
`--max-seconds` per row, whichever comes first; the server is stopped at the end of each row. Printed per row:
requests done, errors (anything but a 200 with predictions, or a failed connection), throughput, latency p50/p99
(client side, including queueing at the server), and the server's memory (RSS of the server and its worker
processes) after start-up and one warm request, after the load, and at its peak.
The clients run in this process and share the machine's cores with the server: on a small machine they take
a noticeable share of the CPU, so the throughput is a floor.
"""
import argparse, asyncio, os, statistics, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss(pid):
    "MB resident: the process and its children (uvicorn's worker processes)."
    import psutil
    try:
        p = psutil.Process(pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess: return float('nan')


async def client(url, photos, n, offset, lat, errors, stop_at):
    import httpx
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=1)) as c:
        for i in range(n):
            if time.monotonic() > stop_at: return
            body = photos[(offset + i) % len(photos)]
            t = time.perf_counter()
            try:
                r = await c.post('/invocations', content=body, headers={'Content-Type': 'image/jpeg'})
                ok = r.status_code == 200 and bool(r.json().get('predictions'))
                if not ok: errors.append(f"{r.status_code}: {r.text[:200]}")
            except Exception as e: errors.append(f"{type(e).__name__}: {e}")  # noqa: BLE001 - counted, and the run goes on
            lat.append((time.perf_counter() - t) * 1000)


def server_figures(url):
    "`(requests answered with 200, p99 of the total stage in ms)` from the server's /metrics."
    import httpx
    from prometheus_client.parser import text_string_to_metric_families
    samples = [s for f in text_string_to_metric_families(httpx.get(url + '/metrics').text) for s in f.samples]
    n = sum(s.value for s in samples if s.name == 'dogbreeds_requests_total' and s.labels['status'] == '200')
    buckets = sorted((float(s.labels['le']), s.value) for s in samples
                     if s.name == 'dogbreeds_request_duration_seconds_bucket' and s.labels['stage'] == 'total')
    total = buckets[-1][1]
    p99 = next((le for le, c in buckets if c >= 0.99 * total), float('nan'))
    return n, p99 * 1000


def run_row(model, workers, clients, requests, photos, max_seconds, threads, metrics='on'):
    from dogbreeds.testing import ServeProcess
    with ServeProcess(model, workers, threads=threads, env={'DOGBREEDS_METRICS': metrics}).start(timeout=180) as srv:
        import httpx
        assert httpx.post(srv.url + '/invocations', content=photos[0], headers={'Content-Type': 'image/jpeg'}).status_code == 200
        before, peak = rss(srv.proc.pid), [0.0]
        done = threading.Event()
        def watch():
            while not done.wait(0.5): peak[0] = max(peak[0], rss(srv.proc.pid))
        threading.Thread(target=watch, daemon=True).start()
        lat, errors = [], []
        t0 = time.monotonic()
        stop_at = t0 + max_seconds
        async def main():
            await asyncio.gather(*[client(srv.url, photos, requests, k * 7, lat, errors, stop_at) for k in range(clients)])
        asyncio.run(main())
        wall = time.monotonic() - t0
        done.set()
        after = rss(srv.proc.pid)
        served = server_figures(srv.url) if metrics == 'on' else (None, None)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float('nan')] * 99
    return dict(metrics=metrics, served=served[0], server_p99=served[1], workers=workers, done=len(lat), asked=clients * requests, errors=len(errors), first_errors=errors[:3],
                rps=len(lat) / wall, p50=q[49], p99=q[98], wall=wall, before=before, after=after, peak=max(peak[0], after),
                stopped_early=len(lat) < clients * requests)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default=None, help='model folder (default: the newest exported_models/*/model)')
    ap.add_argument('--clients', type=int, default=32)
    ap.add_argument('--requests', type=int, default=3000, help='requests per client')
    ap.add_argument('--workers', type=int, nargs='+', default=[1, 2], help='server worker counts to compare')
    ap.add_argument('--threads', type=int, default=None, help='ONNX Runtime threads per inference (default: its own)')
    ap.add_argument('--max-seconds', type=float, default=600, help='stop each row after this long')
    ap.add_argument('--metrics', nargs='+', default=['off', 'on'], choices=['off', 'on'], help='DOGBREEDS_METRICS of the rows')
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'load.json'))
    a = ap.parse_args()
    from conditions import Conditions
    cond = Conditions()
    if not (1 <= a.clients <= 256 and 1 <= a.requests <= 100_000): raise SystemExit('--clients 1..256, --requests 1..100000')
    if a.model: model = Path(a.model)
    else:
        found = sorted(ROOT.glob('exported_models/*/model/manifest.json'), key=lambda p: p.stat().st_mtime)
        if not found: raise SystemExit('no exported model: run `make run`, or pass --model')
        model = found[-1].parent
    photos = [p.read_bytes() for p in sorted((ROOT / 'data' / 'sample' / 'val').rglob('*.JPEG'))[:64]]
    print(f"model {model}; {a.clients} clients x {a.requests} requests; {len(photos)} sample photos "
          f"({statistics.mean(map(len, photos)) / 1e3:.0f} kB mean); {os.cpu_count()} CPUs")
    print(f"{'metrics':>7} {'workers':>7} {'done':>7} {'errors':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'RSS MB before':>13} {'after':>7} {'peak':>7} {'/metrics: 200s':>14} {'p99 ms (server)':>15}")
    rows = []
    for w in a.workers:
      for m in a.metrics:
        r = run_row(model, w, a.clients, a.requests, photos, a.max_seconds, a.threads, m)
        rows.append(r)
        ok = r['done'] - r['errors'] + 1  # the warm-up request counts too
        back = '' if r['served'] is None else f"{r['served']:>14.0f} {r['server_p99']:>15.1f}" + ('' if r['served'] == ok else f"  MISMATCH: client saw {ok}")
        print(f"{r['metrics']:>7} {r['workers']:>7} {r['done']:>7} {r['errors']:>6} {r['rps']:>7.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} "
              f"{r['before']:>13.0f} {r['after']:>7.0f} {r['peak']:>7.0f} {back}"
              + (f"   (stopped at --max-seconds {a.max_seconds:.0f}: {r['done']} of {r['asked']})" if r['stopped_early'] else ''))
        for e in r['first_errors']: print(f"        error: {e}")
    for w in a.workers:
        by = {m: [r['rps'] for r in rows if r['workers'] == w and r['metrics'] == m] for m in ('on', 'off')}
        if by['on'] and by['off']:  # repeated rows (--metrics off on off on) are averaged
            on, off = statistics.mean(by['on']), statistics.mean(by['off'])
            print(f"{w} worker(s): throughput with metrics {on:.1f} req/s (rows {', '.join(f'{x:.1f}' for x in by['on'])}), "
                  f"without {off:.1f} req/s (rows {', '.join(f'{x:.1f}' for x in by['off'])}): {(1 - on / off) * 100:+.1f}% lost (goal < 3%)")
    cond.save(a.out, dict(model=str(model), clients=a.clients, requests=a.requests, rows=rows, errors=sum(r['errors'] for r in rows)),
              onnxruntime_threads=a.threads or 'its own choice')


if __name__ == '__main__':
    main()
