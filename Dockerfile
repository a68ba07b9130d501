# Container image of the control plane (used by deploy/control-plane.yaml).
#   docker build -t ghcr.io/knative-xds/knative-xds:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin knative-xds

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/knative-xds /usr/local/bin/knative-xds
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/knative-xds"]
CMD ["serve"]
