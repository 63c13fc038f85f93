# syntax=docker/dockerfile:1
#
# One image for the ESB.  For now its command is the `esb` CLI (edXML tools);
# the SOAP service (gunicorn 'esb.soap.app:create_wsgi_app()') and the worker/purge
# commands arrive in a later issue and will reuse this image with another CMD.
#
#   docker build -t lgsp-esb .
#   docker run --rm lgsp-esb            # esb --help

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------
# build: turn the project and all its dependencies into wheels.
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY esb/ esb/
COPY xsd/ xsd/
# Later: COPY wsdl/ wsdl/ and COPY transforms/ transforms/ once those directories exist.

# lxml and xmlsec must come from the manylinux binary wheels, which bundle the same
# libxml2; a source build of either one links another libxml2 and `import xmlsec` fails.
RUN pip wheel --wheel-dir /wheels --only-binary=lxml,xmlsec .

# ---------------------------------------------------------------------------
# runtime: only the installed wheels, the schemas and a non-root user.
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

RUN groupadd --system --gid 10001 esb \
    && useradd --system --uid 10001 --gid esb --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin esb

# Install from the wheels of the build stage only: no index, no source builds.  The
# wheel directory is bind-mounted, so it does not end up in an image layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --only-binary=:all: --find-links=/wheels lgsp-esb

# Smoke test at build time: lxml and xmlsec share one libxml2, and the CLI imports.
RUN python -c "import lxml.etree as e, xmlsec; assert e.LIBXML_VERSION == xmlsec.get_libxml_version(), (e.LIBXML_VERSION, xmlsec.get_libxml_version()); import esb.cli.main"
# ...and the installed schemas are found and compile (a broken schema stops the build, not the first message).
RUN python -c "from esb.xml_processing.schemas import SchemaRegistry; SchemaRegistry.default().check_all()"

# The SOAP services import and produce their WSDLs (spyne is an sdist: its wheel was built above).
RUN esb wsdl export --out /tmp/wsdl-check && rm -rf /tmp/wsdl-check

# Data (embedded SQLite database, master key file, content) lives in a volume; in production set
# ESB_DATABASE_URL=postgresql+psycopg://... and ESB_MASTER_KEY (or mount ESB_MASTER_KEY_FILE).
ENV ESB_DATA_DIR=/var/lib/lgsp-esb
RUN install -d -o esb -g esb -m 0700 /var/lib/lgsp-esb
VOLUME ["/var/lib/lgsp-esb"]

USER esb
WORKDIR /app
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["esb"]
# Set ESB_PUBLIC_URL to the address clients use: it is what the WSDLs publish.
CMD ["serve", "--bind", "0.0.0.0:8080", "--workers", "2"]
