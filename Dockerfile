# Quorum: one image for the API, the workers, beat and the migration job.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Dependencies first: this layer is rebuilt only when pyproject.toml or the pins change.
# The runtime dependencies (no extras), every version pinned by constraints.txt.
COPY pyproject.toml constraints.txt ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-c', 'constraints.txt', *deps])"

# Then the code (migrations ship inside the engine package as package data).
COPY engine ./engine
COPY api ./api
COPY workers ./workers
COPY quorum ./quorum
RUN pip install --no-deps . \
    && rm -rf /src/build

RUN useradd --create-home --uid 10001 --user-group quorum \
    && mkdir -p /var/lib/quorum \
    && chown quorum:quorum /var/lib/quorum

# A writable working directory: the embedded data dir and celery beat's schedule file.
WORKDIR /var/lib/quorum
ENV QUORUM_DATA_DIR=/var/lib/quorum/data
USER quorum

EXPOSE 8000
CMD ["quorum", "--help"]
