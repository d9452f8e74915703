# forgeline's image: the API server (`forgeline serve`) and the workers (`forgeline worker`)
# of distributed mode, as docker-compose.yml runs them. See docs/operations.md.
FROM python:3.11-slim

# git: the workspaces are git repositories; bubblewrap: the sandbox the tests, smoke runs
# and previews of the tasks' code run in (when the container may create namespaces).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/forgeline
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .

RUN useradd --create-home --uid 1000 forgeline \
    && mkdir /workspaces \
    && chown forgeline /workspaces
USER forgeline
WORKDIR /workspaces
ENV FORGELINE_WORKSPACES_ROOT=/workspaces

ENTRYPOINT ["forgeline"]
CMD ["--help"]
