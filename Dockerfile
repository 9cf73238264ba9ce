# apmkit container image: a static binary on a distroless base, running as a non-root user.
#
#   docker build -t apmkit:dev --build-arg VERSION=$(git describe --tags --always --dirty) .
#
# Build stage: the build command is the Makefile's `build` target (its BUILD variable);
# deploy/dockerfile_test.go fails when the two drift apart.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git is not in the build context (see .dockerignore), so the version comes in as an argument.
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/apmkit/apmkit/internal/version.Version=${VERSION}" -o /out/apmkit ./cmd/apmkit
# The folders the runtime stage needs, owned by its user (distroless has no shell to create
# them there). The samples document every option; apmkit never reads *.sample files.
RUN mkdir -p /out/etc/apmkit/conf.d/pinpoint /out/var/lib/apmkit \
 && cp conf.d/apmkit.conf.sample /out/etc/apmkit/conf.d/ \
 && cp conf.d/pinpoint/pinpoint.conf.sample /out/etc/apmkit/conf.d/pinpoint/

# Runtime: CA certificates (DataWay is HTTPS) and tzdata, no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/apmkit /usr/local/bin/apmkit
COPY --from=build --chown=65532:65532 /out/etc/apmkit /etc/apmkit
COPY --from=build --chown=65532:65532 /out/var/lib/apmkit /var/lib/apmkit
# distroless' "nonroot" user; numeric so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# The HTTP API must be reachable from outside the container for health checks and
# `apmkit monitor`; the environment wins over [http_api] listen in apmkit.conf.
# The Pinpoint input is NOT enabled here: enable it with a conf.d/pinpoint/pinpoint.conf or
# ENV_DEFAULT_ENABLED_INPUTS=pinpoint plus ENV_INPUT_PINPOINT_ADDRESS=0.0.0.0:9991 (and the
# stat/span addresses), as deploy/kubernetes and the README show.
ENV ENV_HTTP_LISTEN=0.0.0.0:9529
# Pinpoint agent/metadata/command (9991), stat (9992), span (9993); HTTP API (9529).
EXPOSE 9991 9992 9993 9529
# conf.d: mount config files (a ConfigMap) here. The data dir holds the cache (agent info,
# metadata, pending chunks) and the disk spill: keep it on a volume that survives restarts.
VOLUME ["/etc/apmkit/conf.d", "/var/lib/apmkit"]
ENTRYPOINT ["/usr/local/bin/apmkit", "run", "--conf-dir", "/etc/apmkit/conf.d", "--data-dir", "/var/lib/apmkit"]
