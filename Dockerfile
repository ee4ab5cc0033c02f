# Images for a real cluster: `docker build --target operator -t <registry>/portico-operator:0.1.0 .`
# and `--target proxy -t <registry>/portico-proxy:0.1.0`. The development machines have no
# image builder: the node tier (`just test-node`) builds images with the same runtime contract
# (entrypoint, user, ports) with tests/node/images.sh, and a test checks that they agree.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p portico-operator --bins
# The dist profile (Cargo.toml): the release profile with whole-program LTO.
RUN cargo build --profile dist --locked -p portico-proxy --bins

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /src/target/release/portico-operator /usr/local/bin/portico-operator
USER 65532:65532
# The admin port (metrics, /healthz, /readyz): the chart's adminPort.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/portico-operator"]

FROM gcr.io/distroless/cc-debian12:nonroot AS proxy
COPY --from=build /src/target/dist/portico-proxy /usr/local/bin/portico-proxy
USER 65532:65532
# HTTP, HTTPS and admin: the ports the operator gives a proxy unless spec.ports says otherwise.
EXPOSE 80 443 9090
ENTRYPOINT ["/usr/local/bin/portico-proxy"]
