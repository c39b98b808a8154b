# syntax=docker/dockerfile:1
# gitops-reverser: `docker build -t gitops-reverser .` (BuildKit). The runtime image holds the
# binary, git and ssh (the Git transport runs them), and runs as the non-root user 65532.
# The agent is built without the `demo` feature: no simulator, no `demo`/`sim` commands, no rcgen.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin gitops-reverser \
 && cp target/release/gitops-reverser /usr/local/bin/gitops-reverser

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin nonroot \
 && mkdir -p /var/lib/gitops-reverser \
 && chown 65532:65532 /var/lib/gitops-reverser
COPY --from=builder /usr/local/bin/gitops-reverser /usr/local/bin/gitops-reverser
LABEL org.opencontainers.image.title="gitops-reverser" \
      org.opencontainers.image.source="https://github.com/ConfigButler/gitops-reverser" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["gitops-reverser"]
CMD ["run"]
