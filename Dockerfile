# syntax=docker/dockerfile:1
#
# One image for all four services and the migration runner.
#   docker run IMAGE schedule|coverage|callrouter|notifier   run that service
#   docker run IMAGE migrate [--all | --service NAME]         apply migrations, then exit
#   docker run IMAGE                                          run $SERVICE (default: schedule)
# See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, read from pyproject.toml alone, so that a source-only change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself, as a regular (non-editable) install: the runtime stage needs only the venv.
COPY . .
RUN pip install --no-deps . \
    && pip check \
    && python -c "import shared.migrations, shared.topics"


FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" oncall \
    && useradd --system --uid "${APP_UID}" --gid oncall --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oncall

COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/oncall-entrypoint
COPY --chmod=0644 deploy/docker/healthcheck.py /opt/oncall/healthcheck.py

# Bytecode was compiled at install time; nothing writes .pyc at run time, so the root filesystem can be
# mounted read-only (Kubernetes readOnlyRootFilesystem, compose read_only).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVICE=schedule \
    HTTP_HOST=0.0.0.0 \
    LOG_FORMAT=json
WORKDIR /opt/oncall

# Numeric user so that Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8081 8082 8083 8084

HEALTHCHECK --interval=15s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python", "/opt/oncall/healthcheck.py"]

# The entrypoint execs python, so the service is PID 1 and receives SIGTERM itself (graceful drain).
ENTRYPOINT ["oncall-entrypoint"]
CMD []
