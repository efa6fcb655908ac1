# One image for every process of profile-status: migrate, projector, api,
# resync, verify and the simulated workload. Pick the process with the
# command: `docker run IMAGE projector`, `docker run IMAGE migrate`, ...
# Configuration comes from the environment (DATABASE_URL, REDIS_URL,
# PROFILE_STATUS_*), exactly as outside a container.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Every dependency ships a manylinux wheel (psycopg[binary], hiredis, orjson,
# uvloop, ...): no compiler, no libpq, no apt-get needed.
# The source is only needed to build the package; it is removed afterwards so
# nothing can import the working tree instead of the installed package.
WORKDIR /src
COPY . .
RUN pip install . \
    && rm -rf /src

# Never run as root. A fixed uid/gid so orchestrators can enforce runAsNonRoot.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app
WORKDIR /home/app
USER 10001:10001

EXPOSE 8000

ENTRYPOINT ["profile-status"]
CMD ["api", "--host", "0.0.0.0"]
