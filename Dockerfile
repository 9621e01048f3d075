# syntax=docker/dockerfile:1
# The netreach image: the `netreach` binary, statically linked against musl, alone on
# distroless/static (no shell, no package manager, no libc). Its entrypoint is the node agent
# that the Helm chart's DaemonSet runs; `docker run --entrypoint /netreach IMAGE --help` lists
# the other subcommands.
#
#   docker build -t REGISTRY/netreach:0.1.0 .
#
# Multi-arch: each platform's builder runs natively (or under emulation) and builds for its own
# `uname -m`-unknown-linux-musl target, so `docker buildx build --platform linux/amd64,linux/arm64`
# works without a cross toolchain.

# The toolchain this repository is built and tested with (workspace rust-version: 1.89).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS builder
# musl-gcc compiles ring's C and assembly (the TLS of the kube client) for the static target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
# Registry and target directory live in cache mounts, so a rebuild recompiles only what
# changed. The `daemonset` profile (Cargo.toml): whole-program LTO, size-optimised code, no
# debug info, stripped; the agent's resident text is most of its RSS.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile daemonset --locked -p netreach --no-default-features --target "$(uname -m)-unknown-linux-musl" \
    && cp "target/$(uname -m)-unknown-linux-musl/daemonset/netreach" /netreach

# distroless/static: CA certificates, tzdata and /etc/passwd, nothing else.
# DL3007 is ignored because distroless publishes no version tags: `latest` (root) and `nonroot`
# are its only per-distribution tags, and the Debian release is pinned in the name. Release
# builds pin the digest: FROM gcr.io/distroless/static-debian12:latest@sha256:...
# (not looked up here: this repository's machines cannot reach gcr.io).
# hadolint ignore=DL3007
FROM gcr.io/distroless/static-debian12:latest
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="netreach" \
      org.opencontainers.image.description="In-cluster connectivity probes from inside pod network namespaces, explained down to the NetworkPolicy rule" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/netreach" \
      org.opencontainers.image.url="https://example.invalid/netreach" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:latest"
COPY --from=builder /netreach /netreach
# Root inside the container, on purpose. The agent enters pod network namespaces with setns(2),
# which takes CAP_SYS_ADMIN, and reads other users' /proc/PID/ns/net (CAP_SYS_PTRACE) and checks
# each probe socket's namespace (SIOCGSKNS, CAP_NET_ADMIN). Capabilities added to a container
# survive the exec of its entrypoint only for uid 0: a non-root user would need ambient
# capabilities (Kubernetes cannot set them) or file capabilities (no_new_privs, which the chart
# sets through allowPrivilegeEscalation: false, ignores them). The chart drops every
# other capability and makes the root filesystem read-only; the offline subcommands (explain,
# matrix, crd) need no privilege: `--entrypoint /netreach --user 65532`.
# hadolint ignore=DL3002
USER 0:0
EXPOSE 9464
ENTRYPOINT ["/netreach", "agent"]
