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
#include "core/slot.h"
#include "link/link.h"
#include "link/members.h"
#include "map.h"
#include "replay.h"
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
	EDGE_CAUSE_REHOME,        // could not be re-homed (no ConnGone)
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
	bool              plain;     // plain TCP: served by tcp.c, not lws
	int               fd;        // plain: the listening socket
	ev_io             io;        // plain: readable = connections to accept
	ev_timer          retry;     // plain: accept paused (out of fds)
	int               port;      // bound port, -1 when disabled
	hw_gauge         *conns;
	hw_counter       *accepted;
} edge_listener;

// No broker: c->owner before CONNECT, or while no broker is live.
#define EDGE_OWNER_NONE 0xFFFFu

// One client connection. Lean on purpose: no buffer while idle (edge_rx
// allocates only for a partial packet; edge_wq holds only queued frames;
// the replay log exists only while a packet waits for its answer, in
// s->replays, so it costs no pointer here). 120 bytes: one 128-byte malloc
// chunk; think twice before adding a field.
typedef struct edge_conn edge_conn;
struct edge_conn {
	struct lws      *wsi;        // lws connections; NULL for plain TCP
	edge_listener   *l;
	uint64_t         id;
	edge_rx          rx;
	edge_wq          wq;
	edge_wheel_node  timer;      // CONNECT timeout, then keepalive
	uint64_t         last_rx_ms;
	union {
		// Open: the client id for ConnResume, [u16 length][bytes]; NULL
		// before CONNECT and when the edge assigned it (assigned_id:
		// derived again from the connection id).
		uint8_t     *cid;
		edge_conn   *reap_next;  // closed: on s->reap (cid freed by then)
	};
	uint32_t         slot;
	uint16_t         keepalive;  // seconds, from the accepting ConnWrite
	uint16_t         owner;      // index in s->peers, EDGE_OWNER_NONE
	uint8_t          version;    // MQTT protocol level (0 before CONNECT)
	uint8_t          cause;      // edge_cause, once closing
	unsigned         forwarded : 1;   // CONNECT went to the broker
	unsigned         accepted : 1;    // broker accepted the session
	unsigned         closing : 1;     // a close is under way
	unsigned         flush_close : 1; // close once the queue is written
	unsigned         kill : 1;        // close at the next chance, no flush
	unsigned         no_gone : 1;     // send no ConnGone
	unsigned         ping_pending : 1;// PINGRESP owed once accepted
	unsigned         assigned_id : 1; // the edge assigned the client id
	unsigned         replay : 1;      // has a replay log in s->replays
	unsigned         replay_lost : 1; // the log overflowed: not replayable
	unsigned         dirty : 1;       // on s->dirty: write at the pass's end
	unsigned         open : 1;        // the socket is open (cleared by edge_conn_closed)
};

// A plain TCP connection (tcp.c): the connection and its libev watcher.
typedef struct edge_tcp_conn {
	edge_conn c;
	ev_io     io;
} edge_tcp_conn;

// A broker this edge has known (in some view). Entries are never removed,
// so a connection's owner is a stable index; `live` says whether it is in
// the current view. Only live peers are sent to.
typedef struct edge_fwd_peer {
	hw_link_peer *peer;
	char         *url;
	hw_item     **items;
	size_t        n;
	size_t        cap;
	bool          live;
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
	hw_counter *rehomed;
	hw_counter *replayed;
	hw_counter *stale;
	hw_counter *replay_overflow;
	hw_counter *unowned_dropped;
} edge_stats;

struct edge_server {
	const hw_config    *cfg;
	hw_metrics         *metrics;
	edge_stats          st;
	struct lws_context *ctx;
	struct lws_protocols ws_protocols[2]; // the WebSocket vhosts' (listen.c)
	struct ev_loop     *evloop;       // lws runs on it (epoll, not poll)
	edge_listener       ls[EDGE_L_COUNT];

	// Broker link and the broker set (view.c).
	hw_link            *link;
	edge_fwd_peer      *peers;        // every broker ever in a view
	size_t              npeers;
	size_t              peers_cap;
	hw_members         *members;
	hw_members_view    *view;         // applied on this thread
	uint16_t            slot_owner[HW_SLOTS]; // index in peers, or NONE
	edge_map            replays;      // conn id -> edge_replay *
	size_t              replay_max_bytes;
	bool                warned_sender;
	// Connections a ConnMoved left without an owner until the view catches
	// up (forward.c): id and deadline, in arrival order.
	struct edge_parked { uint64_t id; uint64_t due_ms; } *parked;
	size_t              nparked;
	size_t              parked_cap;

	// Batches from brokers, handed over from the NNG thread (inq_mu).
	pthread_mutex_t     inq_mu;
	pthread_cond_t      inq_cv;       // the queue has room / closed
	hw_batch          **inq;
	size_t              inq_n;
	size_t              inq_cap;
	bool                inq_open;     // ctx alive: wake it on arrival
	bool                inq_self;     // queued by the loop's own thread
	pthread_t           loop_thread;  // runs edge_server_run (inq_mu)
	bool                loop_running; // loop_thread is set (inq_mu)
	hw_members_view    *view_next;    // from the members thread, not applied
	uint64_t            view_applied; // version of s->view (for `changed`)

	// Connections.
	edge_map            conns;
	uint64_t            next_id;
	uint64_t            id_seed;
	uint64_t            nconns;
	edge_conn          *reap;
	edge_wheel          wheel;
	uint8_t            *scratch;      // coalesced writes, LWS_PRE first
	size_t              scratch_cap;
	uint8_t            *rxbuf;        // plain TCP reads (tcp.c)
	edge_conn         **dirty;        // written to in this inbound pass
	size_t              ndirty;
	size_t              dirty_cap;

	// Loop.
	ev_async            wake;         // other threads: edge_server_signal
	ev_timer            tick;         // the timer wheel, the drain deadline
	bool                pass_scheduled;
	bool                lws_nudge;    // an lws timeout was set outside lws
	bool                destroying;
	atomic_bool         stop_requested;
	atomic_bool         ready;
	bool                draining;
	uint64_t            drain_deadline_ms;
	bool                done;

	// Drain: the ids of the connections open when it started, closed in
	// order at edge.drain_rate per second by the drain timer.
	ev_timer            drain;
	uint64_t           *drain_ids;
	size_t              drain_n;
	size_t              drain_pos;
	uint64_t            drain_start_ms;
};

// server.c
// edge_server_kick schedules the end-of-pass work (flush batches to
// brokers, write plain TCP queues, free closed connections) for the end of
// this loop iteration.
void edge_server_kick(edge_server *s);
// edge_server_lws_timeout notes that an lws timeout (a kill, a close
// deadline) was set, maybe outside an lws callback: lws 4.1 re-arms its
// timer only after its own events, so the pass wakes it.
void edge_server_lws_timeout(edge_server *s);
// edge_server_signal wakes the loop from any thread (ev_async): it then
// takes broker batches, a new view and stop requests. Idempotent.
void edge_server_signal(edge_server *s);
// edge_server_conn_gone is called when a connection has closed; it may end
// a drain.
void edge_server_conn_gone(edge_server *s);

// listen.c
// edge_listen_open creates the vhost of listener l on address `spec`.
hw_err edge_listen_open(edge_server *s, edge_listener *l, const char *spec);
// edge_listen_protocols returns the lws protocol list of a listener kind
// (the WebSocket kinds' lives in s: its rx buffer size is configured).
const struct lws_protocols *edge_listen_protocols(edge_server *s, int kind);

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

// tcp.c: plain TCP (the mqtt listener) on the edge's libev loop, no lws.
// edge_tcp_listen binds and listens on addr; l->port gets the bound port.
hw_err edge_tcp_listen(edge_server *s, edge_listener *l, const char *host, int port,
    bool ipv6);
// edge_tcp_send writes c's queue until it is empty or the socket is full
// (then waits for POLLOUT); an empty queue with flush_close, or a write
// error, closes c.
void edge_tcp_send(edge_server *s, edge_conn *c);
// edge_tcp_kill closes c's socket now and calls edge_conn_closed.
void edge_tcp_kill(edge_conn *c);
// edge_tcp_close_all closes every plain TCP connection and the listening
// sockets (the server is being freed).
void edge_tcp_close_all(edge_server *s);

// conn.c
// edge_conn_open makes the connection of a new socket (an edge_tcp_conn on
// a plain listener, wsi NULL); NULL refuses it.
edge_conn *edge_conn_open(edge_server *s, edge_listener *l, struct lws *wsi);
// edge_conn_rx feeds received bytes. Returns -1 when lws must close now.
int edge_conn_rx(edge_conn *c, const uint8_t *in, size_t n);
// edge_conn_writable writes queued frames (lws). Returns -1 to close.
int edge_conn_writable(edge_conn *c);
// edge_conn_closed: the socket is closed (by lws, or by tcp.c). Sends
// ConnGone when due, unlinks c and queues it for freeing at the end of the
// pass (never freed here).
void edge_conn_closed(edge_conn *c);
// edge_conn_close starts closing c for `cause`; with flush the queued
// frames are written first. Asynchronous: the socket closes later.
void edge_conn_close(edge_conn *c, edge_cause cause, bool flush);
// edge_conn_flush_dirty writes what the pass queued, straight to the
// sockets of plain TCP connections, and closes those being killed (see
// conn.c).
void edge_conn_flush_dirty(edge_server *s);

// edge_conn_send queues a control frame the edge itself produced.
void edge_conn_send(edge_conn *c, const uint8_t *p, size_t n);
// edge_conn_write / edge_conn_broker_close apply a broker's ConnWrite and
// ConnClose.
// (forward.c has checked that the item comes from c's owner.)
void edge_conn_write(edge_server *s, edge_conn *c, const edge_connwrite *w);
void edge_conn_broker_close(edge_server *s, edge_conn *c, const edge_connclose *cl);
// edge_conn_peer formats the client address as "ip:port" ("[ip6]:port").
void edge_conn_peer(edge_conn *c, char *out, size_t n);
// edge_conn_shutdown closes c because the edge is stopping: everything
// already queued for it is written first, then (accepted MQTT 5 clients) a
// DISCONNECT 0x8B, or 0x9C with edge.server_reference when set, then
// (WebSocket) a close frame 1001 going away. No-op if c is already closing.
void edge_conn_shutdown(edge_conn *c);
// edge_conn_abandon marks c as closed by the shutdown without writing
// anything (the drain deadline passed); it is closed when the server is
// freed (lws: with the context; plain TCP: edge_tcp_close_all).
void edge_conn_abandon(edge_conn *c);
// edge_conn_timer is the wheel callback (CONNECT timeout, keepalive).
void edge_conn_timer(void *arg, edge_wheel_node *node);
// edge_conn_reap frees the connections closed during this pass.
void edge_conn_reap(edge_server *s);

// edge_conn_drop closes c because it cannot be re-homed: MQTT 5 clients
// that were accepted get DISCONNECT `reason` first; no ConnGone.
void edge_conn_drop(edge_conn *c, uint8_t reason);
// edge_conn_assigned_id writes the client id the edge assigned to c
// (derived from its id, the same every time) into out[24].
void edge_conn_assigned_id(const edge_conn *c, char *out);

// forward.c
// edge_forward_open opens the NNG link and the broker set (view.c).
hw_err edge_forward_open(edge_server *s);
// edge_forward_packet handles a client packet after CONNECT (and the
// CONNECT itself, is_connect, with ConnInfo; assigned_id is the id the edge
// assigned or NULL): a packet that waits for an answer goes into c's replay
// log; then a copy is queued for c's owner if it is live. With no owner the
// packet waits in the log (QoS 0 PUBLISH and acks are dropped and counted).
// HW_ENOMEM: close c.
hw_err edge_forward_packet(edge_server *s, edge_conn *c, const uint8_t *pkt, size_t len,
    bool is_connect, const char *assigned_id);
// edge_forward_gone queues ConnGone for c to its owner, if live.
void edge_forward_gone(edge_server *s, edge_conn *c, edge_cause cause);
// edge_forward_answered drops from c's replay log what a ConnWrite from its
// owner answers (data: whole MQTT packets).
void edge_forward_answered(edge_server *s, edge_conn *c, const uint8_t *data, size_t len);
// edge_forward_conn_closed frees c's replay log and client id.
void edge_forward_conn_closed(edge_server *s, edge_conn *c);
// edge_forward_rehome moves c to owner `to` (an index in s->peers, or
// EDGE_OWNER_NONE): ConnGone MOVED to the old owner when gone_to_old and it
// is live, then to `to` ConnResume (accepted) and the replay log in order.
// A connection whose log overflowed cannot be replayed and is closed.
void edge_forward_rehome(edge_server *s, edge_conn *c, uint16_t to, bool gone_to_old);
// edge_forward_peer_find returns the index of url in s->peers, or
// EDGE_OWNER_NONE.
uint16_t edge_forward_peer_find(const edge_server *s, const char *url);
// edge_forward_peer_add returns the index of url, adding it (peer from the
// link) if new; EDGE_OWNER_NONE on ENOMEM or a full table.
uint16_t edge_forward_peer_add(edge_server *s, const char *url, hw_link_peer *peer);
// edge_forward_peer_drop frees the items pending for a peer without sending.
void edge_forward_peer_drop(edge_server *s, uint16_t idx);
// edge_forward_flush sends every broker's pending items as one Batch each.
void edge_forward_flush(edge_server *s);
// edge_forward_inbound applies the batches received from brokers.
void edge_forward_inbound(edge_server *s);
// edge_forward_tick closes the parked connections whose wait is over
// (from the wheel tick).
void edge_forward_tick(edge_server *s, uint64_t now_ms);
// edge_forward_close closes the link (after the lws context is gone).
void edge_forward_close(edge_server *s);

// view.c: the broker set (libs/link/members.h) on the loop thread.
// edge_view_open opens the members watcher on s->link and applies its
// first view. Called before the loop runs.
hw_err edge_view_open(edge_server *s);
// edge_view_poll applies the newest view the members thread handed over,
// if any: peers, slot owners, and the re-home pass. Loop thread.
void edge_view_poll(edge_server *s);
// edge_view_close stops the watcher and drops the views (before the link
// closes; the loop must not be running).
void edge_view_close(edge_server *s);

#endif
