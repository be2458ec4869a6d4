# The image the ECS work pool runs: `prefect deploy` builds and pushes it (see prefect.yaml).
# Pinned slim base; dependencies from the lock in their own layer; the project after; non-root.
#checkov:skip=CKV_DOCKER_2:the image runs one flow run and exits (an ECS task), it serves nothing to health-check
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/totes

# Dependencies change rarely: their own cached layer, exactly the versions of the lock.
COPY requirements.lock ./
RUN python -m pip install --no-deps --requirement requirements.lock

# The project itself; --no-deps because every dependency came from the lock above.
# prefect.yaml: flows/prefect.yaml links to it (totes serve reads the deployments there).
COPY pyproject.toml README.md prefect.yaml ./
COPY flows ./flows
COPY tasks ./tasks
RUN python -m pip install --no-deps . \
    && useradd --create-home --uid 10001 totes

USER 10001
ENV HOME=/home/totes
CMD ["totes", "run"]
