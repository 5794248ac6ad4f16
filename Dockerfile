# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target api    -t edgedistill-api .     (FastAPI + dashboard: [server], no ML libraries)
#   docker build --target worker -t edgedistill-worker .  (Celery worker with the [server,ml,executorch] extras)
# Set TORCH_INDEX_URL to a CPU-only PyTorch wheel index to keep the worker image free of CUDA
# libraries; left empty, pip takes torch from the default index.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 edgedistill
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
# The one installed package: edgedistill/ holds relative links to the four folders above.
COPY edgedistill ./edgedistill
# The package's edgedistill.agent (console script edgedistill-agent): nothing the images run imports it,
# but the one distribution installs whole.
COPY agent ./agent

FROM base AS api
RUN pip install -c constraints.txt ".[server]"
USER edgedistill
ENV EDGEDISTILL_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:8000/healthz').status_code != 200)"
CMD ["uvicorn", "edgedistill.service.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--timeout-graceful-shutdown", "5"]

FROM base AS worker
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" -c constraints.txt torch; fi \
 && pip install -c constraints.txt ".[server,ml,executorch]" \
 && pip install -c constraints.txt --no-deps "onnx2torch>=1.5"
USER edgedistill
ENV EDGEDISTILL_DATA_DIR=/data
HEALTHCHECK --interval=30s --timeout=10s --retries=3 \
  CMD edgedistill worker --ping || exit 1
CMD ["edgedistill", "worker", "--queues", "compress", "--concurrency", "1"]
