# The pygov command in an image, for docker-compose.yml's migrate and demo services.
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pygov ./pygov
COPY sql ./sql
COPY migrations ./migrations
# The SQL and migrations ship inside the wheel, so the installed command needs no source tree.
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /
USER nobody
CMD ["pygov", "--help"]
