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

# Dependencies first, in a layer of their own: a change to the source does not
# reinstall them. requirements/runtime.txt pins every package with its hashes,
# at the versions CI tests (requirements/dev.txt), so an image built next month
# holds what was tested today. It is the runtime set only: the embedded
# PostgreSQL and Valkey of `profile-status demo` stay out (the `demo` extra);
# the image runs against real servers. Every dependency ships a manylinux wheel
# (psycopg[binary], hiredis, orjson, uvloop, ...): no compiler, no libpq.
COPY requirements/runtime.txt requirements/build.txt /tmp/requirements/
RUN pip install --require-hashes --no-deps -r /tmp/requirements/runtime.txt -r /tmp/requirements/build.txt \
    && rm -rf /tmp/requirements

# The package itself, without dependencies (all installed above) and built with
# the pinned setuptools rather than whatever is newest. The source is only
# needed to build it; it is removed so nothing imports the working tree.
WORKDIR /src
COPY . .
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf /src

# Never run as root. A fixed uid/gid so orchestrators can enforce runAsNonRoot.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app
WORKDIR /home/app
USER 10001:10001

EXPOSE 8000

ENTRYPOINT ["profile-status"]
CMD ["api", "--host", "0.0.0.0"]
