# dragonfly-mle container image.
#
#   docker build -t dragonfly-mle .
#   docker run -d -v /var/log/suricata:/opt/dragonfly/log -v dragonfly-results:/opt/dragonfly/results dragonfly-mle
#
# The runtime stage runs as a non-root user, follows /opt/dragonfly/log/eve.json (Suricata's
# log directory, mounted) and writes its results to /opt/dragonfly/results (a volume); `docker
# stop` sends SIGTERM, on which the engine drains what it read and exits. compose.yaml adds a
# redis-server with the RedisML module. Where no registry is reachable (the Rust image cannot
# be pulled), build the runtime stage on a binary built on the host:
#   mkdir -p dist && cp target/release/dragonfly-mle target/release/libdragonfly_redisml.so dist/
#   podman build --build-arg BIN_FROM=prebuilt --build-arg BASE_IMAGE=localhost/debian:bookworm-slim -t dragonfly-mle .
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG BIN_FROM=build
ARG REDIS_IMAGE=docker.io/library/redis:7-bookworm

# 1. build: the engine and the Redis module from source. RUST_IMAGE is any Debian bookworm
#    with a Rust toolchain where these point (the official image's own settings); where no
#    registry is reachable, a bare Debian with the host's toolchain mounted into the build:
#      podman build --build-arg RUST_IMAGE=localhost/debian:bookworm-slim \
#        --build-arg BASE_IMAGE=localhost/debian:bookworm-slim --build-arg BIN_FROM=build \
#        --volume ~/.rustup:/usr/local/rustup:ro --volume ~/.cargo/bin:/usr/local/cargo/bin:ro \
#        -t dragonfly-mle .
#    (scripts/container-build does this, and tests/container.rs runs what it made)
FROM ${RUST_IMAGE} AS build
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
# behind a TLS-inspecting proxy, crates.io needs its CA: mount a bundle into the build and name
# it (--volume /etc/ssl/certs:/host-certs:ro --build-arg CARGO_HTTP_CAINFO=/host-certs/ca-certificates.crt)
ARG CARGO_HTTP_CAINFO
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc g++ make libclang-dev libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p dragonfly-mle -p dragonfly-redisml \
 && mkdir -p /out \
 && cp target/release/dragonfly-mle target/release/libdragonfly_redisml.so /out/ \
 && strip /out/dragonfly-mle /out/libdragonfly_redisml.so

# 1'. or: a binary built elsewhere, from dist/ in the build context
FROM scratch AS prebuilt
COPY dist/ /out/

FROM ${BIN_FROM} AS bin

# 1''. redis-server with the RedisML module (compose.yaml's `redis`)
FROM ${REDIS_IMAGE} AS redis
COPY --from=bin /out/libdragonfly_redisml.so /usr/local/lib/dragonfly-redisml.so
CMD ["redis-server", "--loadmodule", "/usr/local/lib/dragonfly-redisml.so", "--save", "", "--appendonly", "no"]

# 2. runtime: a slim Debian with the binary, the module and a default root (the last stage:
#    what `docker build .` makes)
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 dragonfly \
 && useradd --system --uid 10001 --gid dragonfly --home-dir /opt/dragonfly --shell /usr/sbin/nologin dragonfly \
 && mkdir -p /opt/dragonfly/log /opt/dragonfly/results \
 && chown dragonfly:dragonfly /opt/dragonfly/results
COPY --from=bin /out/dragonfly-mle /usr/local/bin/dragonfly-mle
COPY --from=bin /out/libdragonfly_redisml.so /usr/local/lib/dragonfly-redisml.so
COPY examples/quickstart/filter /opt/dragonfly/root/filter
COPY examples/quickstart/analyzer /opt/dragonfly/root/analyzer
COPY deploy/container/config /opt/dragonfly/root/config
USER dragonfly
WORKDIR /opt/dragonfly
VOLUME ["/opt/dragonfly/results"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/dragonfly-mle"]
CMD ["-r", "/opt/dragonfly/root", "-l", "/opt/dragonfly/results"]
