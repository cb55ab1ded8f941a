"""SageMaker monitoring on moto: `dogbreeds deploy --alarms` creates the CloudWatch alarms on the endpoint's
ModelLatency, Invocation5XXErrors and Invocation4XXErrors; `--capture-percent PCT` turns on data capture to S3."""
import json, sys

import pytest

from dogbreeds import alarms
from dogbreeds.cli import main

ROLE = 'arn:aws:iam::123456789012:role/dogbreeds-sagemaker'
IMAGE = '123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreeds-sagemaker:0.1.0'


def test_deploy_with_alarms_and_capture(aws, capsys):
    main(['deploy', 'dogbreeds-mon', '--image-uri', IMAGE, '--role-arn', ROLE, '--model-uri', 's3://acme/models/dogbreeds@production', '--alarms',
          '--alarm-topic', 'arn:aws:sns:us-east-1:123456789012:oncall', '--capture-percent', '20', '--capture-uri', 's3://acme/capture'])
    out = json.loads(capsys.readouterr().out)
    sm, cw = aws.client('sagemaker'), aws.client('cloudwatch')
    cfg = sm.describe_endpoint_config(EndpointConfigName=sm.describe_endpoint(EndpointName='dogbreeds-mon')['EndpointConfigName'])
    dc = cfg['DataCaptureConfig']
    assert dc['EnableCapture'] and dc['InitialSamplingPercentage'] == 20 and dc['DestinationS3Uri'] == 's3://acme/capture'
    got = {a['MetricName']: a for a in cw.describe_alarms(AlarmNamePrefix='dogbreeds-mon')['MetricAlarms']}
    assert set(got) == {'ModelLatency', 'Invocation5XXErrors', 'Invocation4XXErrors'} and sorted(out['alarms']) == sorted(
        a['AlarmName'] for a in got.values())
    for a in got.values():
        assert a['Namespace'] == 'AWS/SageMaker' and {d['Name']: d['Value'] for d in a['Dimensions']} == dict(
            EndpointName='dogbreeds-mon', VariantName='AllTraffic')
        assert a['AlarmActions'] == ['arn:aws:sns:us-east-1:123456789012:oncall']
    assert got['ModelLatency']['ExtendedStatistic'] == 'p99' and got['ModelLatency']['Threshold'] == 1_000_000


def test_no_alarms_no_capture_by_default(aws, capsys):
    main(['deploy', 'dogbreeds-plain', '--image-uri', IMAGE, '--role-arn', ROLE, '--model-uri', 's3://acme/models/dogbreeds@production'])
    sm, cw = aws.client('sagemaker'), aws.client('cloudwatch')
    cfg = sm.describe_endpoint_config(EndpointConfigName=sm.describe_endpoint(EndpointName='dogbreeds-plain')['EndpointConfigName'])
    assert not cfg.get('DataCaptureConfig', {}).get('EnableCapture') and not cw.describe_alarms(AlarmNamePrefix='dogbreeds-plain')['MetricAlarms']
    with pytest.raises(SystemExit):
        main(['deploy', 'x', '--image-uri', IMAGE, '--role-arn', ROLE, '--model-uri', 's3://acme/models/d@p', '--capture-percent', '10'])  # no --capture-uri
    assert 'capture-uri' in capsys.readouterr().err
