# mathfi-bot: slim Python 3.11, non-root, database on a volume, health-checked.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/mathfi-bot.db \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=3000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY store ./store
COPY simulator ./simulator
RUN pip install . \
    && useradd --create-home --uid 10001 mathfi \
    && mkdir -p /data && chown mathfi:mathfi /data

USER mathfi
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT','3000'), timeout=4).status == 200 else 1)"

ENTRYPOINT ["mathfi-bot"]
CMD ["run"]
