#ifndef RTR_HTTPPUB_H
#define RTR_HTTPPUB_H

#include <stdbool.h>

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "fanout.h"

// The router's HTTP publish API: POST /v1/publish on router.http_listen,
// for backends that want to reach subscribers without Kafka.
//
//   POST /v1/publish
//   Authorization: Bearer <router.publish_token>
//   Content-Type: application/json | application/x-protobuf   (pubreq.h)
//
// Answers (JSON bodies):
//   200 {"result":"matched"|"no_match"}  every broker took the message (the
//       same guarantee as a consume_only record before its offset is
//       committed: it went through the fanout and every offered broker
//       acked it); no_match: no session subscribed.
//   400 {"error":"..."}  the body is not a valid request.
//   401                  missing or wrong bearer token.
//   404                  router.publish_token is empty (the API is off).
//   413                  body larger than router.publish_max_bytes.
//   503                  no broker connected, a broker failed it, or not
//                        every broker took it, within
//                        router.publish_timeout_ms of its arrival (while no
//                        broker is connected a request waits for one, as
//                        consumed Kafka records do).
//
// Design notes:
// - The handler is added to the NNG HTTP server that hw_httpd_start
//   started (nng_http_server_hold on the same address returns it; we hold a
//   reference of our own). It takes the body itself (Content-Length checked
//   first, so an oversized body is answered 413 without being read) with an
//   aio of the request's own.
// - Threads: NNG threads check the headers, read and decode the body, then
//   queue the request and wake the router's processing thread, which alone
//   offers it to the fanout and answers it (the fanout is single-threaded).
//   Each request reaches the processing thread exactly once, also when its
//   body read failed, and is freed only there.
// - An answer and a cancellation (the client went away, the server stops)
//   meet under the module's lock: whichever comes first finishes NNG's aio
//   and clears it.

typedef struct rtr_httppub rtr_httppub;

typedef void (*rtr_httppub_wake_fn)(void *arg);

// rtr_httppub_start adds POST /v1/publish to the HTTP server already
// serving on host_port (router.http_listen, with the port it bound) when
// cfg->router.publish_token is set; with no token it does nothing and *out
// is NULL. fanout (borrowed) is where messages go; wake(wake_arg) is called
// from NNG threads when requests wait. Before the processing thread uses
// the module.
hw_err rtr_httppub_start(rtr_httppub **out, const hw_config *cfg, const char *host_port,
    int port, hw_metrics *metrics, rtr_fanout *fanout, rtr_httppub_wake_fn wake,
    void *wake_arg);

// rtr_httppub_poll offers the requests that arrived and answers those whose
// time is up. Processing thread only.
void rtr_httppub_poll(rtr_httppub *h, uint64_t now_ms);

// rtr_httppub_pass_end frees answered requests (after the outbox flush:
// queued offers point into them). Processing thread only.
void rtr_httppub_pass_end(rtr_httppub *h);

// rtr_httppub_close stops taking requests: the handler is removed, later
// arrivals get 404 from NNG. Requests in flight still get their answers
// (or are cancelled when the HTTP server stops). Any thread; NULL ok.
void rtr_httppub_close(rtr_httppub *h);

// rtr_httppub_free frees the module after the HTTP server stopped and the
// processing thread exited. NULL ok.
void rtr_httppub_free(rtr_httppub *h);

#endif
