#ifndef RTR_SERVER_H
#define RTR_SERVER_H

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"

// The router tier: pipelines between brokers and the message hub. Each
// publish from a broker is matched against the pipeline table; in `direct`
// mode (the default, and for topics no pipeline matches) it is offered to
// every broker, and acknowledged to the publishing broker once every broker
// has durably taken it.

typedef struct rtr_server rtr_server;

// rtr_server_alloc builds the router from cfg (which must outlive it) and
// binds its NNG inbox. `metrics` is not owned.
hw_err rtr_server_alloc(rtr_server **out, const hw_config *cfg, hw_metrics *metrics);

// rtr_server_start starts processing and (unless serve_http is 0) the HTTP
// endpoints on router.http_listen. Returns at once.
hw_err rtr_server_start(rtr_server *s, int serve_http);

// rtr_server_stop stops processing and closes links. Blocks until done.
void rtr_server_stop(rtr_server *s);

// rtr_server_free frees a stopped router.
void rtr_server_free(rtr_server *s);

#endif
