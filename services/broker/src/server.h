#ifndef BRK_SERVER_H
#define BRK_SERVER_H

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"

// The broker tier: sessions, subscriptions, QoS, retained messages, wills,
// takeover. Packets arrive from edges over its NNG inbox; application
// messages go to and come from routers.

typedef struct brk_server brk_server;

// brk_server_alloc builds the broker from cfg (which must outlive it), opens
// its store and binds its NNG inbox; no traffic is processed before
// brk_server_start. `metrics` is not owned.
hw_err brk_server_alloc(brk_server **out, const hw_config *cfg, hw_metrics *metrics);

// brk_server_start starts the worker threads and the HTTP endpoints
// (broker.http_listen, unless serve_http is 0: the all-in-one serves one
// /metrics from the edge). Returns at once.
hw_err brk_server_start(brk_server *s, int serve_http);

// brk_server_stop finishes queued work, stops the threads and closes links.
// Blocks until done. Thread-safe.
void brk_server_stop(brk_server *s);

// brk_server_reload applies the reloadable parts of cfg (the auth section:
// chain, keys, rules, callbacks) without dropping connections; cfg is only
// read during the call. On error (HW_ECONFIG, *why a heap string naming the
// key or rule, caller frees) the old settings stay. Any thread (the SIGHUP
// handler).
hw_err brk_server_reload(brk_server *s, const hw_config *cfg, char **why);

// brk_server_check_config validates what brk_server_alloc would refuse in
// cfg beyond hw_config_validate (the auth section), for --check-config.
// HW_ECONFIG with *why (heap, caller frees) naming the key or rule.
hw_err brk_server_check_config(const hw_config *cfg, char **why);

// brk_server_free frees a stopped broker.
void brk_server_free(brk_server *s);

#endif
