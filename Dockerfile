# stoksync container image. Build and run (needs a Docker engine):
#   docker build -t stoksync .
#   docker run -d --name stoksync \
#     -v stoksync-data:/var/lib/stoksync \
#     -v "$PWD/stoksync.toml:/etc/stoksync/stoksync.toml:ro" \
#     -e BAZAARDAN_CLIENT_SECRET=... \
#     -p 127.0.0.1:8787:8787 stoksync
# The config must set `database = "/var/lib/stoksync/stoksync.db"` and, for
# the port mapping and the healthcheck, `[http] listen = "0.0.0.0:8787"` with
# `token` set (the API refuses to listen beyond loopback without one).
# Try it without providers: docker run --rm stoksync demo

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY migrations migrations
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/stoksync --shell /usr/sbin/nologin stoksync \
    && mkdir -p /etc/stoksync /var/lib/stoksync \
    && chown stoksync:stoksync /var/lib/stoksync
COPY --from=build /src/target/release/stoksync /usr/local/bin/stoksync
USER stoksync
WORKDIR /var/lib/stoksync
VOLUME ["/var/lib/stoksync"]
# Two malloc arenas are plenty for a daemon that mostly waits (see deploy/stoksync.service).
ENV STOKSYNC_CONFIG=/etc/stoksync/stoksync.toml RUST_LOG=stoksync=info MALLOC_ARENA_MAX=2
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8787/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/stoksync", "--log-format", "json"]
CMD ["run"]
