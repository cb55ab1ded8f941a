"""deploy/k8s: every manifest validates against the Kubernetes schemas offline (kubernetes-validate, strict),
and the Deployment has what serving needs: probes on /ping, MODEL_URI from the ConfigMap, resources, scrape annotations."""
from pathlib import Path

import kubernetes_validate as kv
import pytest
import yaml

K8S = Path(__file__).resolve().parent.parent / 'deploy' / 'k8s'
VERSION = '1.30.0'


def docs():
    return {d['kind']: d for f in sorted(K8S.glob('*.yaml')) for d in yaml.safe_load_all(f.read_text()) if d}


def test_manifests_validate():
    got = docs()
    assert set(got) == {'ConfigMap', 'Deployment', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'ServiceAccount',
                        'Job'}  # the serving manifests, and the sharded batch Job (tests/test_manifests.py runs it)
    for kind, d in got.items(): kv.validate(d, VERSION, strict=True)
    bad = dict(got['Deployment'], spec=dict(got['Deployment']['spec'], replicas='two'))
    with pytest.raises(kv.ValidationError): kv.validate(bad, VERSION, strict=True)  # the check can fail


def test_deployment_wiring():
    got = docs()
    dep, svc, hpa, pdb = got['Deployment'], got['Service'], got['HorizontalPodAutoscaler'], got['PodDisruptionBudget']
    c = dep['spec']['template']['spec']['containers'][0]
    for probe in ('readinessProbe', 'livenessProbe'): assert c[probe]['httpGet']['path'] == '/ping'
    assert {'configMapRef': {'name': got['ConfigMap']['metadata']['name']}} in c['envFrom'] and 'MODEL_URI' in got['ConfigMap']['data']
    assert c['resources']['requests']['memory'] and c['resources']['limits']['memory']
    ann = dep['spec']['template']['metadata']['annotations']
    assert ann['prometheus.io/scrape'] == 'true' and ann['prometheus.io/path'] == '/metrics'
    labels = dep['spec']['template']['metadata']['labels']
    assert svc['spec']['selector'] == labels == pdb['spec']['selector']['matchLabels'] == dep['spec']['selector']['matchLabels']
    assert hpa['spec']['scaleTargetRef']['name'] == dep['metadata']['name'] and hpa['spec']['metrics'][0]['resource']['name'] == 'cpu'
