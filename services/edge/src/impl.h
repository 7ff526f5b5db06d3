#ifndef EDGE_IMPL_H
#define EDGE_IMPL_H

// Private declarations shared by the edge's modules (server, listen, conn,
// http, forward). Everything here runs on the lws service thread unless a
// comment says otherwise.

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ev.h>
#include <libwebsockets.h>

#include "core/config.h"
#include "core/metrics.h"
#include "link/link.h"
#include "map.h"
#include "rx.h"
#include "server.h"
#include "wheel.h"
#include "wq.h"

typedef Hawser__Internal__V1__ConnWrite edge_connwrite;
typedef Hawser__Internal__V1__ConnClose edge_connclose;

enum {
	EDGE_L_MQTT = 0,
	EDGE_L_MQTTS,
	EDGE_L_WS,
	EDGE_L_WSS,
	EDGE_L_HTTP,
	EDGE_L_COUNT,
};

// Why a connection ended (the label of hawser_edge_connections_closed_total).
typedef enum edge_cause {
	EDGE_CAUSE_NETWORK = 0,   // socket closed or failed
	EDGE_CAUSE_KEEPALIVE,
	EDGE_CAUSE_PROTOCOL,
	EDGE_CAUSE_SLOW_CONSUMER,
	EDGE_CAUSE_SHUTDOWN,
	EDGE_CAUSE_BROKER_BUSY,   // hw_link_send said HW_EFULL
	EDGE_CAUSE_CLIENT,        // client sent DISCONNECT (no ConnGone)
	EDGE_CAUSE_BROKER,        // broker sent ConnClose (no ConnGone)
	EDGE_CAUSE_COUNT,
} edge_cause;

enum {
	EDGE_PERR_MALFORMED = 0,
	EDGE_PERR_TOO_LARGE,
	EDGE_PERR_UNEXPECTED,
	EDGE_PERR_CONNECT_TIMEOUT,
	EDGE_PERR_COUNT,
};

typedef struct edge_listener {
	edge_server      *s;
	int               kind;      // EDGE_L_*
	const char       *name;      // "mqtt", "mqtts", "ws", "wss", "http"
	bool              ws;
	bool              tls;
	struct lws_vhost *vh;
	int               port;      // bound port, -1 when disabled
	hw_gauge         *conns;
	hw_counter       *accepted;
} edge_listener;

// One client connection. Lean on purpose: no buffer while idle (edge_rx
// allocates only for a partial packet; edge_wq holds only queued frames).
typedef struct edge_conn edge_conn;
struct edge_conn {
	struct lws      *wsi;        // NULL once lws closed it
	edge_listener   *l;
	uint64_t         id;
	edge_rx          rx;
	edge_wq          wq;
	edge_wheel_node  timer;      // CONNECT timeout, then keepalive
	uint64_t         last_rx_ms;
	edge_conn       *reap_next;  // on s->reap once closed
	uint32_t         slot;
	uint16_t         keepalive;  // seconds, from the accepting ConnWrite
	uint16_t         broker;     // index of the owner broker
	uint8_t          version;    // MQTT protocol level (0 before CONNECT)
	uint8_t          cause;      // edge_cause, once closing
	unsigned         forwarded : 1;   // CONNECT went to the broker
	unsigned         accepted : 1;    // broker accepted the session
	unsigned         closing : 1;     // a close is under way
	unsigned         flush_close : 1; // close once the queue is written
	unsigned         kill : 1;        // close at the next chance, no flush
	unsigned         no_gone : 1;     // send no ConnGone
	unsigned         ping_pending : 1;// PINGRESP owed once accepted
};

typedef struct edge_fwd_peer {
	hw_link_peer *peer;
	const char   *url;
	hw_item     **items;
	size_t        n;
	size_t        cap;
} edge_fwd_peer;

typedef struct edge_stats {
	hw_counter *closed[EDGE_CAUSE_COUNT];
	hw_counter *perr[EDGE_PERR_COUNT];
	hw_counter *packets_rx;
	hw_counter *bytes_rx;
	hw_counter *bytes_tx;
	hw_counter *ka_timeouts;
	hw_counter *dropped_qos0;
	hw_counter *slow;
	hw_counter *busy;
	hw_counter *unknown_conn;
	hw_counter *batches_tx;
	hw_counter *items_tx;
} edge_stats;

struct edge_server {
	const hw_config    *cfg;
	hw_metrics         *metrics;
	edge_stats          st;
	struct lws_context *ctx;
	struct ev_loop     *evloop;       // lws runs on it (epoll, not poll)
	edge_listener       ls[EDGE_L_COUNT];

	// Broker link.
	hw_link            *link;
	edge_fwd_peer      *peers;
	size_t              npeers;
	const char        **broker_urls;  // cfg->edge.brokers, for hw_slot_owner

	// Batches from brokers, handed over from the NNG thread (inq_mu).
	pthread_mutex_t     inq_mu;
	pthread_cond_t      inq_cv;       // the queue has room / closed
	hw_batch          **inq;
	size_t              inq_n;
	size_t              inq_cap;
	bool                inq_open;     // ctx alive: wake it on arrival

	// Connections.
	edge_map            conns;
	uint64_t            next_id;
	uint64_t            id_seed;
	uint64_t            nconns;
	edge_conn          *reap;
	edge_wheel          wheel;
	uint8_t            *scratch;      // coalesced writes, LWS_PRE first
	size_t              scratch_cap;

	// Loop.
	lws_sorted_usec_list_t tick_sul;
	lws_sorted_usec_list_t pass_sul;
	bool                pass_scheduled;
	bool                destroying;
	atomic_bool         stop_requested;
	atomic_bool         ready;
	bool                draining;
	uint64_t            drain_deadline_ms;
	bool                done;

	// Drain: the ids of the connections open when it started, closed in
	// order at edge.drain_rate per second by drain_sul.
	lws_sorted_usec_list_t drain_sul;
	uint64_t           *drain_ids;
	size_t              drain_n;
	size_t              drain_pos;
	uint64_t            drain_start_ms;
};

// server.c
// edge_server_kick schedules the end-of-pass work (flush batches to
// brokers, free closed connections) for the next loop iteration.
void edge_server_kick(edge_server *s);
// edge_server_wake runs on LWS_CALLBACK_EVENT_WAIT_CANCELLED: takes
// broker batches and stop requests from other threads. Idempotent.
void edge_server_wake(edge_server *s);
// edge_server_conn_gone is called when a connection has closed; it may end
// a drain.
void edge_server_conn_gone(edge_server *s);

// listen.c
// edge_listen_open creates the vhost of listener l on address `spec`.
hw_err edge_listen_open(edge_server *s, edge_listener *l, const char *spec);
// edge_listen_protocols returns the lws protocol list of a listener kind.
const struct lws_protocols *edge_listen_protocols(int kind);

// http.c
typedef struct edge_http_pss {
	uint8_t    *body;     // LWS_PRE bytes, then the body
	size_t      len;
	unsigned    status;
	const char *ctype;
} edge_http_pss;
// edge_http_handle serves one lws HTTP callback (GET /metrics, /healthz,
// /readyz, and / when edge.demo_page is on).
int edge_http_handle(edge_server *s, struct lws *wsi, enum lws_callback_reasons reason,
    edge_http_pss *pss, void *in, size_t len);
// edge_http_cb is the callback of the "http" protocol.
int edge_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len);

// conn.c
// edge_conn_open makes the connection of a new socket; NULL refuses it.
edge_conn *edge_conn_open(edge_server *s, edge_listener *l, struct lws *wsi);
// edge_conn_rx feeds received bytes. Returns -1 when lws must close now.
int edge_conn_rx(edge_conn *c, const uint8_t *in, size_t n);
// edge_conn_writable writes queued frames. Returns -1 to close.
int edge_conn_writable(edge_conn *c);
// edge_conn_closed: lws closed the socket. Sends ConnGone when due, unlinks
// c and queues it for freeing at the end of the pass (never freed here).
void edge_conn_closed(edge_conn *c);
// edge_conn_close starts closing c for `cause`; with flush the queued
// frames are written first. Asynchronous: lws closes it later.
void edge_conn_close(edge_conn *c, edge_cause cause, bool flush);
// edge_conn_send queues a control frame the edge itself produced.
void edge_conn_send(edge_conn *c, const uint8_t *p, size_t n);
// edge_conn_write / edge_conn_broker_close apply a broker's ConnWrite and
// ConnClose.
void edge_conn_write(edge_server *s, const edge_connwrite *w);
void edge_conn_broker_close(edge_server *s, const edge_connclose *cl);
// edge_conn_peer formats the client address as "ip:port" ("[ip6]:port").
void edge_conn_peer(edge_conn *c, char *out, size_t n);
// edge_conn_shutdown closes c because the edge is stopping: everything
// already queued for it is written first, then (accepted MQTT 5 clients) a
// DISCONNECT 0x8B, or 0x9C with edge.server_reference when set, then
// (WebSocket) a close frame 1001 going away. No-op if c is already closing.
void edge_conn_shutdown(edge_conn *c);
// edge_conn_abandon marks c as closed by the shutdown without writing
// anything (the drain deadline passed); lws closes it with the context.
void edge_conn_abandon(edge_conn *c);
// edge_conn_timer is the wheel callback (CONNECT timeout, keepalive).
void edge_conn_timer(void *arg, edge_wheel_node *node);
// edge_conn_reap frees the connections closed during this pass.
void edge_conn_reap(edge_server *s);

// forward.c
// edge_forward_open opens the NNG link and one peer per broker.
hw_err edge_forward_open(edge_server *s);
// edge_forward_packet queues a copy of a client packet for c's broker.
// is_connect adds the ConnInfo; assigned_id (NULL unless the client sent an
// empty id) goes into it. HW_ENOMEM or HW_EINVAL (no broker): close c.
hw_err edge_forward_packet(edge_server *s, edge_conn *c, const uint8_t *pkt, size_t len,
    bool is_connect, const char *assigned_id);
// edge_forward_gone queues ConnGone for c.
void edge_forward_gone(edge_server *s, edge_conn *c, edge_cause cause);
// edge_forward_flush sends every broker's pending items as one Batch each.
void edge_forward_flush(edge_server *s);
// edge_forward_inbound applies the batches received from brokers.
void edge_forward_inbound(edge_server *s);
// edge_forward_close closes the link (after the lws context is gone).
void edge_forward_close(edge_server *s);

#endif
