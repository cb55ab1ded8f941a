"""The MLflow screenshot in docs/ (shown in nbs/27_train.ipynb), and the time tracking adds to a run.

    python scripts/mlflow_screenshot.py                    # the sample: quick
    python scripts/mlflow_screenshot.py --data ../shared/datasets/imagewoof2-160 --arch efficientnet_lite2+efficientnet_lite1 --size 240
    python scripts/mlflow_screenshot.py --root /tmp/shot --shot-only   # the screenshot again, of the runs already in /tmp/shot

It starts a real `mlflow server` (SQLite, local artifacts, 127.0.0.1, a free port), runs `benchmarks/accuracy.py` in
this process with MLFLOW_TRACKING_URI pointing at it (so its run is recorded as any training run is), counts the
seconds spent in MLflow calls (the client's import included), prints the run's parameters and metrics as the client
reads them back, and saves the run's page, rendered by headless Chromium (Debian's, through Playwright), as
docs/mlflow_run.png.
"""
import argparse, os, runpy, sys, tempfile, time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get('DOGBREEDS_CHROMIUM', '/usr/bin/chromium')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', default='sample')
    ap.add_argument('--arch', default='mobilenet_v2')
    ap.add_argument('--size', default='128')
    ap.add_argument('--out', default=str(ROOT/'docs'/'mlflow_run.png'))
    ap.add_argument('--root', default=None, help="the server's folder (SQLite file, artifacts); default: a new temporary one")
    ap.add_argument('--shot-only', action='store_true', help='no run: the screenshot of the latest run already in --root')
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import dogbreeds.tracking as T
    from dogbreeds.testing import MLflowServer

    spent, calls = defaultdict(float), defaultdict(int)
    def timed(f, what=None):
        def inner(*args, **kw):
            t = time.perf_counter()
            try: return f(*args, **kw)
            finally:
                k = what or args[1]
                spent[k] += time.perf_counter() - t; calls[k] += 1
        return inner
    T.Tracker._do = timed(T.Tracker._do)
    T.mlflow_client = timed(T.mlflow_client, 'client import')

    with MLflowServer(a.root or tempfile.mkdtemp(prefix='mlflow-shot-')) as server:
        print(f"mlflow server at {server.url}, its runs in {server.root}")
        os.environ.update(MLFLOW_TRACKING_URI=server.url, MLFLOW_EXPERIMENT_NAME='dogbreeds')
        if not a.shot_only: run_benchmark(a, spent, calls)
        screenshot(server, a.out)


def run_benchmark(a, spent, calls):
    load = os.getloadavg()
    sys.argv = ['benchmarks/accuracy.py', '--data', a.data, '--arch', a.arch, '--size', a.size,
                '--run-name', f"bench-{time.strftime('%Y%m%d-%H%M%S')}"]
    t = time.time()
    try: runpy.run_path(str(ROOT/'benchmarks'/'accuracy.py'), run_name='__main__')
    except SystemExit as e:  # the benchmark ends with sys.exit(main())
        if e.code: raise
    total = time.time() - t
    print(f"\ntracking: {sum(spent.values()):.2f} s of the run's {total:.0f} s in MLflow calls "
          f"({', '.join(f'{k} {v:.2f} s x{calls[k]}' for k, v in spent.items())}); load average before {load[0]:.1f}")


def screenshot(server, out):
    from mlflow.tracking import MlflowClient
    c = MlflowClient(server.url)
    exp = c.get_experiment_by_name('dogbreeds')
    run = c.search_runs([exp.experiment_id], order_by=['attributes.start_time DESC'])[0]
    print(f"MLflow run {run.info.run_id} ({run.info.run_name}, {run.info.status}) at {server.url}")
    print('params: ' + ', '.join(f"{k}={v}" for k, v in sorted(run.data.params.items()) if not k.startswith('data.counts')))
    print('metrics: ' + ', '.join(f"{k}={v:.4f}" for k, v in sorted(run.data.metrics.items())))
    url = f"{server.url}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=60_000,
                                     args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        page = browser.new_page(viewport={'width': 1500, 'height': 1450})
        page.goto(url, wait_until='networkidle', timeout=120_000)
        page.get_by_text('top5_accuracy').first.wait_for(timeout=120_000)  # the metrics table has rendered
        for name in ('Model training', 'Close'):  # the classic view, without the assistant's side panel
            try: page.get_by_role('button', name=name).first.click(timeout=5000); page.wait_for_timeout(1500)
            except Exception as e: print(f"(no {name!r} button: {type(e).__name__})")
        page.goto(url, wait_until='commit', timeout=120_000)  # back to the run (the mode switch opens the runs list)
        page.get_by_text('Run ID').first.wait_for(timeout=120_000)
        page.wait_for_timeout(5000)
        page.screenshot(path=out, full_page=True)
        browser.close()
    print(f"screenshot of {url} saved to {out}")


if __name__ == '__main__': sys.exit(main())
