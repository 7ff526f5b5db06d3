# syntax=docker/dockerfile:1
# Hawser image: the all-in-one `hawser` and the three tier binaries
# (hawser-edge, hawser-broker, hawser-router) on Debian 12.
#
#   docker build -t hawser:dev .
#   docker run --rm -p 1883:1883 -p 8083:8083 -p 9100:9100 hawser:dev
#
# The Helm chart (deploy/helm/hawser) runs one tier per Deployment by
# setting the container command to the tier's binary.
#
# tests/deploy/test_image_libs.sh checks, without a Docker engine, that the
# runtime stage's package list covers every shared library the binaries load.

ARG DEBIAN_IMAGE=debian:12

# --- build -------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libwebsockets-dev libnng-dev libhiredis-dev librdkafka-dev \
      libprotobuf-c-dev protobuf-c-compiler libyaml-dev \
      libjwt-dev libcurl4-openssl-dev libssl-dev libjemalloc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN cmake -S /src -B /src/build -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAWSER_TESTS=OFF -DHAWSER_WERROR=ON \
 && cmake --build /src/build --target hawser hawser-edge hawser-broker hawser-router \
 && strip --strip-debug /src/build/bin/hawser /src/build/bin/hawser-edge \
      /src/build/bin/hawser-broker /src/build/bin/hawser-router

# --- runtime -----------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries only (keep in step with the -dev packages above).
# libwebsockets-evlib-ev is lws's libev plugin (dlopened; brings libev4):
# the edge runs lws on a libev loop.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libwebsockets17 libwebsockets-evlib-ev libnng1 libhiredis0.14 librdkafka1 libprotobuf-c1 libyaml-0-2 libjwt0 libcurl4 libssl3 libjemalloc2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 hawser \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin hawser \
 && mkdir -p /etc/hawser
COPY --from=build /src/build/bin/hawser /src/build/bin/hawser-edge \
     /src/build/bin/hawser-broker /src/build/bin/hawser-router /usr/local/bin/
USER 10001:10001
# 1883 MQTT, 8083 MQTT over WebSocket, 9100 edge HTTP (/metrics /healthz
# /readyz), 7100/7200/7300 NNG inboxes of broker/router/edge.
EXPOSE 1883 8083 9100 7100 7200 7300
ENTRYPOINT ["/usr/local/bin/hawser"]
