# mathfi-bot: slim Python 3.11, non-root, database on a volume, health-checked.
# The base image is pinned to an exact Python patch release and Debian release; dependencies
# come from requirements.lock with their hashes (see README, "Development: dependencies").
# The MathFi simulator and the demo are not part of the product: they go into the image only
# with `docker build --build-arg WITH_SIMULATOR=1 .` (0 or 1; default 0).
ARG WITH_SIMULATOR=0

FROM python:3.11.15-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock

# The sources the wheel is built from: the product only, or the product with the simulator.
FROM base AS source-0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY store ./store

FROM source-0 AS source-1
COPY simulator ./simulator
COPY demo ./demo

FROM source-${WITH_SIMULATOR} AS wheel
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

FROM base
ENV DATABASE_PATH=/data/mathfi-bot.db \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=3000
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --create-home --uid 10001 mathfi \
    && mkdir -p /data && chown mathfi:mathfi /data

WORKDIR /home/mathfi
USER mathfi
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT','3000'), timeout=4).status == 200 else 1)"

ENTRYPOINT ["mathfi-bot"]
CMD ["run"]
