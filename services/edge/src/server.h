#ifndef EDGE_SERVER_H
#define EDGE_SERVER_H

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"

// The edge tier: terminates MQTT over TCP/WebSocket (+TLS), frames packets,
// answers PINGREQ, enforces keepalive and write-queue bounds, and forwards
// every other packet to the broker that owns the client's session slot.

typedef struct edge_server edge_server;

// edge_server_alloc builds the server from cfg (which must outlive it) and
// binds every configured listener and the NNG inbox. `metrics` is the
// registry to register into and to serve at /metrics; the server does not
// own it. On error nothing is left open.
hw_err edge_server_alloc(edge_server **out, const hw_config *cfg, hw_metrics *metrics);

// edge_server_run runs the event loop on the calling thread until
// edge_server_stop is called and the drain has finished.
hw_err edge_server_run(edge_server *s);

// edge_server_stop asks the loop to drain and return. Thread-safe; may be
// called from any thread (not from a signal handler).
void edge_server_stop(edge_server *s);

// edge_server_port returns the bound TCP port of a listener ("mqtt",
// "mqtts", "ws", "wss", "http"), or -1 if it is not enabled.
int edge_server_port(const edge_server *s, const char *listener);

// edge_server_free frees a server that is not running.
void edge_server_free(edge_server *s);

#endif
