# Images for a real cluster: `docker build --target operator -t <registry>/portico-operator:0.1.0 .`
# and `--target proxy -t <registry>/portico-proxy:0.1.0`. Not built by the tests: the
# development machines have no container runtime (README, "Install on a real cluster").
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p portico-operator -p portico-proxy --bins

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /src/target/release/portico-operator /usr/local/bin/portico-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portico-operator"]

FROM gcr.io/distroless/cc-debian12:nonroot AS proxy
COPY --from=build /src/target/release/portico-proxy /usr/local/bin/portico-proxy
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portico-proxy"]
