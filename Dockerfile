# The API image for docker compose (the local Neon stand-in): uvicorn serving app.main:app.
# Runtime dependencies only (no dev extras), at the versions constraints.txt pins, bytecode compiled at build
# time (the source tree is read-only at run time), running as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The project's runtime dependencies, read from pyproject.toml, plus the ASGI server (a dev extra elsewhere:
# Lambda does not need it). Installed before the source is copied, so code changes reuse this layer.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && echo uvicorn >> requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --compile -c constraints.txt -r requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini ./
COPY alembic ./alembic
COPY app ./app
RUN python -m compileall -q --invalidation-mode unchecked-hash app alembic \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
USER app
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
