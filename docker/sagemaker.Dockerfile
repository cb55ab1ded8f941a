# The SageMaker "bring your own container" image: `dogbreeds serve` (FastAPI on uvicorn) answering GET /ping and
# POST /invocations on port 8080. SageMaker starts it as `docker run IMAGE serve`; the model comes from MODEL_URI
# (a registry URI) or from model.tar.gz, which SageMaker unpacks into /opt/ml/model.
#
#   docker build --platform linux/amd64 -f docker/sagemaker.Dockerfile -t dogbreeds-sagemaker .
#   docker run -p 8080:8080 -e MODEL_URI=s3://BUCKET/models/dogbreeds@production dogbreeds-sagemaker
#   curl --data-binary @dog.jpg -H 'Content-Type: image/jpeg' localhost:8080/invocations
FROM python:3.12-slim AS build
WORKDIR /src
COPY docker/requirements-serve.txt docker/requirements-http.txt ./
RUN pip install --no-cache-dir --no-compile --prefix /install --requirement requirements-serve.txt --requirement requirements-http.txt
COPY pyproject.toml README.md ./
COPY dogbreeds/ dogbreeds/
RUN pip install --no-cache-dir --no-compile --no-deps --prefix /install .

FROM python:3.12-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /tmp dogbreeds
USER 10001
ENV SERVE_HOST=0.0.0.0 \
    SERVE_PORT=8080 \
    DOGBREEDS_CACHE=/tmp/dogbreeds-models \
    PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["dogbreeds"]
CMD ["serve"]
