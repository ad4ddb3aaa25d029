# One image, every role: `parley run gateway|chat-core|delivery`, `parley migrate`.
# Built from a clean checkout; .dockerignore keeps tests, docs and local state out of the context.
#   docker build --build-arg PARLEY_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) \
#                --build-arg PARLEY_BUILD_TIME=$(git log -1 --format=%cI) -t parley:0.1.0 .

# ---- build: install into a venv, so the runtime stage copies one directory and no pip cache
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/parley
WORKDIR /src
COPY . .
RUN /opt/parley/bin/pip install .

# ---- runtime
FROM python:3.11-slim
ARG PARLEY_BUILD_COMMIT=unknown
ARG PARLEY_BUILD_TIME=unknown
# The image has no git: parley --version reads its identity from these (parley/version.py).
# No .pyc writes: the root filesystem is read-only in the pods (k8s/base).
ENV PARLEY_BUILD_COMMIT=${PARLEY_BUILD_COMMIT} \
    PARLEY_BUILD_TIME=${PARLEY_BUILD_TIME} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/parley/bin:$PATH
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
RUN groupadd --system --gid 10001 parley \
 && useradd --system --uid 10001 --gid parley --home-dir /home/parley --create-home parley
COPY --from=build /opt/parley /opt/parley
USER 10001:10001
WORKDIR /home/parley
EXPOSE 8080
ENTRYPOINT ["parley"]
CMD ["--help"]
