#ifndef HW_LINK_HTTPD_H
#define HW_LINK_HTTPD_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/metrics.h"

// A small HTTP server (NNG's) for the broker's and router's operational
// endpoints: GET /metrics (Prometheus text of `metrics`), GET /healthz (200
// while the process runs), GET /readyz (200 when ready_fn(arg) says so, 503
// otherwise). The edge serves the same endpoints from its libwebsockets loop.

typedef struct hw_httpd hw_httpd;
typedef bool (*hw_httpd_ready_fn)(void *arg);

// hw_httpd_start listens on "host:port" (port 0 picks one; see
// hw_httpd_port) and serves until hw_httpd_stop. ready_fn (may be NULL:
// always ready) and the rendering run on NNG threads. HW_EINVAL for a bad
// address, HW_EEXIST when the address is in use (also by another hw_httpd
// of this process), HW_EIO otherwise.
hw_err hw_httpd_start(hw_httpd **out, const char *host_port, hw_metrics *metrics,
    hw_httpd_ready_fn ready_fn, void *arg);
// hw_httpd_port returns the bound TCP port.
int hw_httpd_port(const hw_httpd *h);
// hw_httpd_stop stops serving and frees h.
void hw_httpd_stop(hw_httpd *h);
// hw_httpd_reply finishes NNG's aio of an HTTP handler with a response of
// status, reason phrase (NULL: NNG's for status), Content-Type type, body
// (copied: len bytes), "Cache-Control: no-store", and "Connection: close"
// when close. When the response cannot be built the aio is failed instead
// (NNG closes the connection). Any thread; does not block.
void hw_httpd_reply(nng_aio *aio, uint16_t status, const char *reason,
    const char *type, const void *body, size_t len, bool close);

#endif
