# The AWS Lambda image: AWS's Lambda Python base image with ONNX Runtime, NumPy, Pillow and this package.
# No torch, no fastai (boto3 comes with the base image). The model is pulled from MODEL_URI into /tmp at init.
#
#   docker build --platform linux/amd64 -f docker/lambda.Dockerfile -t dogbreeds-lambda .
#   docker run -p 9000:8080 -e MODEL_URI=s3://BUCKET/models/dogbreeds@production dogbreeds-lambda
#   curl -d '{"image": "'"$(base64 -w0 dog.jpg)"'"}' localhost:9000/2015-03-31/functions/function/invocations
ARG PYTHON=3.12

FROM public.ecr.aws/lambda/python:${PYTHON} AS build
WORKDIR /src
COPY docker/requirements-serve.txt scripts/prune_serving.py ./
RUN pip install --no-cache-dir --no-compile --target /opt/pkg --requirement requirements-serve.txt
COPY pyproject.toml README.md ./
COPY dogbreeds/ dogbreeds/
# the package and its pinned serving dependencies only, pruned of what the runtime never loads
RUN pip install --no-cache-dir --no-compile --no-deps --target /opt/pkg . \
    && python prune_serving.py /opt/pkg

FROM public.ecr.aws/lambda/python:${PYTHON}
COPY --from=build /opt/pkg ${LAMBDA_TASK_ROOT}
ENV DOGBREEDS_CACHE=/tmp/dogbreeds-models
CMD ["dogbreeds.lambda_handler.handler"]
