# fs-platform: one image for the Dagster code location, webserver, daemon and the serving API.
# The command differs per service (see docker-compose.yml); the default serves the code location.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DAGSTER_HOME=/opt/dagster/home \
    FS_HOME=/data/fs_platform \
    FS_DBT_PROJECT_DIR=/app/dbt_project

# libgomp1: OpenMP runtime that the lightgbm wheel links against. Everything else ships as wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# the package first, so editing the dbt project or deploy files does not reinstall dependencies
COPY pyproject.toml README.md ./
COPY fs_platform/ ./fs_platform/
RUN pip install --no-cache-dir .

COPY dbt_project/ ./dbt_project/
COPY dagster.yaml ./
COPY deploy/ ./deploy/

# The package is installed into site-packages, so FS_DBT_PROJECT_DIR (above) points it at this copy.
# Parse once at build time (no database or network needed) so the code location loads from the
# baked manifest; drop any target/ or logs/ copied from a developer checkout first.
RUN cd /app/dbt_project \
    && rm -rf target logs .user.yml \
    && dbt parse --profiles-dir . --no-partial-parse

# Dagster instance: Postgres storage configured from the FS_PG_* variables at runtime.
COPY dagster.yaml /opt/dagster/home/dagster.yaml

# Unprivileged runtime user. The folders that compose mounts named volumes on are created here with
# the right owner, so fresh volumes inherit it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin fs \
    && mkdir -p /opt/dagster/home/storage \
        /data/fs_platform/inbox/listings /data/fs_platform/inbox/interactions \
        /data/fs_platform/archive /data/fs_platform/reports /data/fs_platform/models \
    && chown -R fs:fs /opt/dagster/home /data/fs_platform /app/dbt_project
USER fs

EXPOSE 4000 3000 8000

CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "fs_platform.definitions"]
