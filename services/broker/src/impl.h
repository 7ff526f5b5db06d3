#ifndef BRK_IMPL_H
#define BRK_IMPL_H

// Internals shared by the broker's modules (server, worker, handlers,
// delivery, output). Not a public contract: server.h is.

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/slot.h"
#include "link/httpd.h"
#include "link/link.h"
#include "link/members.h"
#include "map.h"
#include "mqtt/codec.h"
#include "msg.h"
#include "retain.h"
#include "server.h"
#include "session.h"
#include "set.h"
#include "store/store.h"
#include "subindex.h"

typedef Hawser__Internal__V1__ConnPacket brk_connpacket;
typedef Hawser__Internal__V1__ConnGone brk_conngone;
typedef Hawser__Internal__V1__Ack brk_ack_pb;
typedef Hawser__Internal__V1__ConnResume brk_connresume;

// Seqs of our upstream publishes carry the sending worker in the low bits,
// so the router's Ack goes straight back to that worker.
#define BRK_SEQ_WORKER_BITS 10
#define BRK_SEQ_WORKER_MASK ((UINT64_C(1) << BRK_SEQ_WORKER_BITS) - 1)

typedef struct brk_stats {
	hw_metrics   *reg;
	hw_gauge     *sessions, *connections, *subscriptions, *inflight, *queued, *retained;
	hw_counter   *received[3], *delivered[3];
	hw_counter   *queue_dropped, *takeovers, *wills, *expired, *too_large, *send_lost;
	// slot ownership (docs/cluster.md)
	hw_gauge     *slots_owned;
	hw_counter   *slot_claims, *slots_lost, *resumed;
	hw_histogram *slot_load;
} brk_stats;

// A received batch shared by the items dispatched to workers.
typedef struct brk_batch {
	atomic_int refs;
	hw_batch  *b;
} brk_batch;

// A set of session slots (one bit each).
#define BRK_SLOT_WORDS (HW_SLOTS / 64)
typedef struct brk_slotset {
	uint64_t bits[BRK_SLOT_WORDS];
} brk_slotset;

static inline void brk_slotset_add(brk_slotset *set, uint32_t slot)
{
	set->bits[(slot % HW_SLOTS) / 64] |= UINT64_C(1) << (slot % 64);
}

static inline bool brk_slotset_has(const brk_slotset *set, uint32_t slot)
{
	return (set->bits[(slot % HW_SLOTS) / 64] >> (slot % 64)) & 1;
}

// Countdown of the workers still to take one downstream Publish. Each
// worker counts down only after its store writes for the message are
// confirmed (after its flush), so the last one's Ack promises durability
// for all of them; `retry` collects the slots any of them could not take
// (Ack.retry_slots), `held` the slots they held while they took it, not
// lost in that flush (Ack.held; docs/cluster.md, "Covered is positive").
// The workers not woken for the offer (no matching subscription) add
// their held slots when it is dispatched (brk_server_downstream).
typedef struct brk_fanin {
	atomic_int left;
	atomic_int matched;
	uint64_t   seq;
	_Atomic uint64_t retry[BRK_SLOT_WORDS];
	_Atomic uint64_t held[BRK_SLOT_WORDS];
	char       url[];      // router inbox to Ack
} brk_fanin;

enum { BRK_WORK_PACKET, BRK_WORK_GONE, BRK_WORK_PUBLISH, BRK_WORK_ACK, BRK_WORK_AUTH,
	BRK_WORK_RESUME, BRK_WORK_VIEW };

typedef struct brk_work brk_work;
struct brk_work {
	brk_work      *next;
	int            kind;
	brk_batch     *batch;    // PACKET, GONE, ACK
	const hw_item *item;
	brk_msg       *msg;      // PUBLISH
	brk_fanin     *fanin;    // PUBLISH with seq != 0
	hw_members_view *view;   // VIEW: the new view (a reference)
	brk_slotset   *retry;    // PUBLISH: slots this worker could not take
	brk_slotset   *held;     // PUBLISH with a fanin: slots it held when it took it
};

// An output destination (an edge or a router inbox) and its pending items.
typedef struct brk_dest {
	char         *url;
	hw_link_peer *peer;
	hw_item     **items;
	size_t        n, cap;
} brk_dest;

// An edge node as seen by one worker.
typedef struct brk_edge {
	char     *node;
	uint32_t  index;
	brk_dest *dest;
} brk_edge;

// An upstream publish awaiting the router's Ack.
typedef struct brk_pending {
	uint64_t seq;
	uint64_t at_ms;        // when it was forwarded
	uint32_t conn_gen;
	uint16_t pid;
	uint8_t  qos;
	size_t   cid_len;
	char     cid[];
} brk_pending;

// Interest summary of a worker's shard, read by the receive thread so a
// router Publish only wakes the workers that may hold a matching
// subscription. Each filter counts once in interest[k][hash of its first k
// levels], k = its literal levels before the first wildcard (at most
// BRK_INTEREST_LEVELS). A topic may match only if some k has a non-zero
// counter for the hash of its own first k levels. False positives only
// cost a wakeup; a subscription being added while a publish is dispatched
// may miss that publish, like any subscription racing a publish.
#define BRK_INTEREST_LEVELS 4
#define BRK_INTEREST_SLOTS 1024

// The sessions one downstream publish matched (deliver.c): one entry per
// session, in the order found, with the highest QoS and retain-as-published
// of its matching subscriptions and their identifiers (a chain in `ids`).
// Worker scratch, kept here rather than in every session: a session only
// remembers its entry's index (brk_session.match_idx), valid while that
// entry points back at it.
typedef struct brk_match_ent {
	brk_session *s;
	uint32_t     last_id;  // 1 + index in brk_match.ids of its last id, 0 none
	uint32_t     nsub;
	uint8_t      qos;
	bool         rap;
} brk_match_ent;

typedef struct brk_match_id {
	uint32_t id;
	uint32_t prev;         // 1 + index of the session's previous id, 0 none
} brk_match_id;

typedef struct brk_match {
	brk_match_ent *ent;
	uint32_t       n, cap;
	brk_match_id  *ids;
	uint32_t       nids, capids;
	uint32_t      *out;    // one session's ids in order, for brk_deliver_to
	uint32_t       capout;
} brk_match;

typedef struct brk_worker {
	struct brk_server *srv;
	uint32_t          index;
	pthread_t         thread;
	bool              started;

	pthread_mutex_t   pass_mu;    // held by whoever runs a pass (worker.c)
	pthread_mutex_t   mu;         // guards head, tail, stop, taken, woken
	pthread_cond_t    cv;
	brk_work         *head, *tail;
	bool              stop;
	bool              taken;      // the thread took work it has not passed
	bool              woken;      // an inline pass moved the next deadline

	brk_set           sessions;   // by client id (brk_session_cid_key)
	brk_set           conns;      // connected, by (edge index, conn id) (brk_session_conn_key)
	brk_subindex     *subs;
	brk_edge        **edges;
	size_t            nedges;
	brk_dest        **dests;
	size_t            ndests;
	brk_map           pending;    // seq -> brk_pending
	uint64_t          next_seq;
	brk_session      *offline;    // sessions with a timer (expiry or will)
	uint64_t          next_timer; // earliest timer, 0 = none (may be early)
	uint64_t          now_ms;     // hw_clock_mono_ms read by the pass (worker.c):
	                              // once per pass (per item with a Redis store)
	brk_match         match;      // scratch of brk_deliver_publish
	uint64_t          send_warned_ms;
	uint64_t          pending_swept_ms;
	uint64_t          store_refreshed_ms; // last store refresh of connected sessions
	atomic_uint       interest[BRK_INTEREST_LEVELS + 1][BRK_INTEREST_SLOTS];
	// authentication and ACL decisions awaiting the auth module (hold.c)
	brk_map           authing;    // (edge index, conn id) -> brk_connauth
	uint64_t          auth_serial;
	struct brk_auth_ticket *spare_ticket;
	// slot ownership (slot.c): the epoch of each slot this worker holds
	// (only slots with slot % nworkers == index), 0 = not held
	uint64_t         *slot_epoch;
	brk_slotset       shard;      // the slots with slot % nworkers == index
	// The held slots of the shard whose sessions are loaded, for the
	// receive thread (release after the load, acquire there; slot.c).
	_Atomic uint64_t  held_bits[BRK_SLOT_WORDS];
	// when (hw_clock_mono_ms) and in which view version each slot was
	// last lost or given up on a ConnGone MOVED (0: never, or claimed
	// since): not claimed again for an offer in that view (slot.c)
	uint64_t         *moved_ms;
	uint64_t         *moved_view;
	hw_members_view  *view;       // the last view this worker acted on
	bool              viewed;     // it acted on its first view
	brk_slotset       touched;    // slots delivered to in this pass
	brk_slotset       lost;       // slots lost (or given up) in this pass
} brk_worker;

struct brk_server {
	const hw_config *cfg;
	brk_stats        st;
	hw_link         *link;
	char           **routers;     // router inbox URLs (from cfg)
	size_t           nrouters;
	brk_retain      *retain;
	brk_worker      *workers;
	uint32_t         nworkers;
	hw_httpd        *httpd;
	atomic_bool      running;
	const brk_store_ops *store_ops;
	brk_store       *store;
	brk_auth        *auth;        // authentication and ACL (services/broker/auth)
	hw_members      *members;     // the broker set; NULL: this broker alone
	const char      *self_url;    // our inbox URL as the others know it
	pthread_mutex_t  view_mu;     // orders the views given to the workers
	uint64_t         view_version;
	atomic_uint      viewed;      // workers done with their first view
};

// BRK_SLOT_OF(s) is the session slot of s (= the worker's shard).
#define BRK_SLOT_OF(s) ((uint32_t)(s)->slot)

// BRK_STORE(w, op, args...) writes through to the session store.
#define BRK_STORE(w, op, ...) ((w)->srv->store_ops->op((w)->srv->store, __VA_ARGS__))
// brk_cid is the client id of s as bytes.
#define brk_cid(s) ((hw_bytes){ (const uint8_t *)(s)->client_id, (s)->client_id_len })

// worker.c
// brk_worker_init prepares worker `index` of srv (no thread yet);
// brk_worker_fini frees what it holds (sessions, queued work, outputs)
// after brk_worker_stop.
hw_err brk_worker_init(brk_worker *w, struct brk_server *srv, uint32_t index);
void brk_worker_fini(brk_worker *w);
// brk_worker_start starts the thread; brk_worker_stop makes it drain what is
// queued, flush and exit, and joins it. Both from the server's thread.
hw_err brk_worker_start(brk_worker *w);
void brk_worker_stop(brk_worker *w);
// brk_worker_push appends a chain of work items (first..last), ownership
// passing to the worker; any thread.
void brk_worker_push(brk_worker *w, brk_work *first, brk_work *last);
// brk_worker_inline runs the pass over `list` on the caller's thread, if
// nothing is queued or being passed (worker.c, "Inline passes"); false: the
// caller pushes it instead.
bool brk_worker_inline(brk_worker *w, brk_work *list);
// brk_worker_sub_add / brk_worker_sub_remove change the worker's shard of
// the subscription index and its interest summary (worker thread only).
hw_err brk_worker_sub_add(brk_worker *w, hw_bytes filter, brk_session *s,
    const brk_subopts *o, bool *existed);
bool brk_worker_sub_remove(brk_worker *w, hw_bytes filter, brk_session *s);
// brk_worker_interested tells whether w may hold a subscription matching
// topic. Any thread.
bool brk_worker_interested(brk_worker *w, hw_bytes topic);
// brk_batch_unref drops a reference and frees the batch with the last.
void brk_batch_unref(brk_batch *b);

// brk_frame is an encoded MQTT frame shared by the ConnWrite items of many
// connections (a QoS 0 fan-out encodes once per protocol version and RETAIN
// flag, not once per subscriber).
typedef struct brk_frame {
	atomic_int refs;
	size_t     len;
	uint8_t    data[];
} brk_frame;

// brk_frame_from copies the bytes of b into a new frame (one reference).
brk_frame *brk_frame_from(const hw_buf *b);
void brk_frame_unref(brk_frame *f);

// out.c: outputs of a worker, flushed once per drain. Worker thread only.
// brk_out_dest finds or creates the destination for an inbox url (NULL on
// ENOMEM); brk_out_edge the edge of a node id, answering at url.
brk_dest *brk_out_dest(brk_worker *w, const char *url);
brk_edge *brk_out_edge(brk_worker *w, const char *node, const char *url);
// brk_out_write queues a ConnWrite taking the bytes of *frame (emptied).
void brk_out_write(brk_worker *w, brk_edge *e, uint64_t conn, hw_buf *frame, bool droppable);
// brk_out_write_frame queues a ConnWrite that references f (adds a ref).
void brk_out_write_frame(brk_worker *w, brk_edge *e, uint64_t conn, brk_frame *f, bool droppable);
// brk_out_accept is brk_out_write for the CONNACK that accepts a session.
void brk_out_accept(brk_worker *w, brk_edge *e, uint64_t conn, hw_buf *frame,
    uint32_t keepalive, uint8_t version);
// brk_out_close queues a ConnClose with *frame (may be NULL or empty).
void brk_out_close(brk_worker *w, brk_edge *e, uint64_t conn, hw_buf *frame);
// brk_out_publish queues a Publish of m (referenced, not copied) for a
// router; brk_out_ack an Ack with retry_slots `retry` (may be NULL) and
// `held` as the HW_SLOTS-bit bitmap Ack.held (always sent, all 128 bytes:
// an empty one would mean "every slot" to the router).
void brk_out_publish(brk_worker *w, brk_dest *d, brk_msg *m, uint64_t seq, uint64_t now_ms);
void brk_out_ack(brk_worker *w, brk_dest *d, uint64_t seq, uint32_t reason,
    const brk_slotset *retry, const brk_slotset *held);
// brk_out_moved queues a ConnMoved for (e, conn) naming owner ("" unknown).
void brk_out_moved(brk_worker *w, brk_edge *e, uint64_t conn, const char *owner);
// brk_out_forget drops the ConnWrite/ConnClose items queued for the
// connections in `conns` (keys: brk_out_conn_key) and the upstream
// Publishes of sessions in `slots`, before a flush.
void brk_out_forget(brk_worker *w, brk_map *conns, const brk_slotset *slots);
// brk_out_conn_key builds the key of (d, conn) for brk_out_forget.
hw_bytes brk_out_conn_key(uint8_t key[16], const brk_dest *d, uint64_t conn);
// brk_out_publish_slot is brk_out_publish for a client's publish, tagged
// with its session slot so a lost slot can cancel it.
void brk_out_publish_slot(brk_worker *w, brk_dest *d, brk_msg *m, uint64_t seq,
    uint64_t now_ms, uint32_t slot);
// brk_out_flush sends one Batch per destination with pending items (a
// refused batch is counted in hawser_broker_send_lost_total) and frees them.
void brk_out_flush(brk_worker *w);
// brk_out_fini frees the destinations and edges.
void brk_out_fini(brk_worker *w);

// Session helpers (worker.c), worker thread only.
// brk_send_ack writes a PUBACK/PUBREC/PUBREL/PUBCOMP to s if connected.
void brk_send_ack(brk_worker *w, brk_session *s, hw_mqtt_type type, uint16_t pid, uint8_t reason);
// brk_protocol_error closes s's connection (v5: DISCONNECT with reason;
// 3.1.1: no data), counts it, and handles it as a lost connection (will).
void brk_protocol_error(brk_worker *w, brk_session *s, uint8_t reason);
// brk_publish_fail answers a QoS 1/2 PUBLISH (packet id pid) the gateway
// could not take (reason >= 0x80: Kafka or the router failed, no memory).
// MQTT 5: a PUBACK/PUBREC with the reason. 3.1.1 acks carry no reason, so a
// PUBACK would read as success and the message would be lost behind an
// acknowledgement: the connection is closed instead (MQTT-3.3.5-2 allows
// it), the message stays unacknowledged and the client sends it again on
// reconnect. Counted in hawser_broker_publish_failed_total{reason}. May
// free s. Not for ACL denials, which 3.1.1 acknowledges (docs/auth.md).
void brk_publish_fail(brk_worker *w, brk_session *s, uint8_t qos, uint16_t pid, uint8_t reason);
// brk_conn_lost detaches s from its connection: the will goes out now, is
// armed (Will Delay), or is dropped (!publish_will); then the session ends
// (expiry 0) or waits offline for its expiry. May free s.
void brk_conn_lost(brk_worker *w, brk_session *s, bool publish_will);
// brk_session_end publishes an armed will, removes s's subscriptions and
// connection, and frees s.
void brk_session_end(brk_worker *w, brk_session *s);
// brk_publish_upstream sends m to the router chosen for s's client id
// (one router per client keeps its publishes in order); seq 0 = no Ack.
void brk_publish_upstream(brk_worker *w, brk_session *s, brk_msg *m, uint64_t seq);
// brk_publish_will publishes and drops s's will, if any.
void brk_publish_will(brk_worker *w, brk_session *s);
// brk_offline_update puts s on, or takes it off, the timer list.
void brk_offline_update(brk_worker *w, brk_session *s);
// brk_conn_key builds the connection table key (edge, conn id) in key.
hw_bytes brk_conn_key(uint8_t key[12], const brk_edge *e, uint64_t conn);
// The key functions of w->sessions (client id) and w->conns (brk_conn_key
// of the session's edge and connection: a session is in w->conns exactly
// while connected, and its edge and conn do not change meanwhile).
hw_bytes brk_session_cid_key(const void *s, uint8_t *buf);
hw_bytes brk_session_conn_key(const void *s, uint8_t *buf);

// brk_session_forget drops s from memory only (subscriptions, connection,
// timers, gauges) and frees it: no will, no store write. For a session
// whose slot moved to another broker (ConnGone MOVED, a lost slot).
void brk_session_forget(brk_worker *w, brk_session *s);
// brk_session_bind attaches s to connection (e, conn) with the settings of
// CONNECT cn (window, limits, aliases, will) and the granted expiry; in
// memory only (the caller writes the store). HW_ENOMEM leaves s unbound.
hw_err brk_session_bind(brk_worker *w, brk_session *s, brk_edge *e, uint64_t conn,
    const hw_mqtt_connect *cn, uint32_t expiry, uint64_t now_ms);

// slot.c: slot ownership (docs/cluster.md), worker thread only.
// brk_slot_init / brk_slot_fini hold the worker's slot table.
hw_err brk_slot_init(brk_worker *w);
void brk_slot_fini(brk_worker *w);
// brk_slot_held tells whether the worker holds slot (claimed, not lost).
bool brk_slot_held(const brk_worker *w, uint32_t slot);
// brk_slot_mine tells whether slot is this broker's in the worker's view
// (always, without peers).
bool brk_slot_mine(const brk_worker *w, uint32_t slot);
// brk_slot_owner_down tells whether the owner of slot in the worker's view
// is another broker whose link is down right now (it probably left and
// the view has not caught up yet).
bool brk_slot_owner_down(const brk_worker *w, uint32_t slot);
// brk_slot_elsewhere tells whether slot, not held here, belongs in the
// worker's view to another broker that is live (its link connected); its
// inbox URL is then copied to owner (cap bytes). A CONNECT or ConnResume
// for such a slot is answered with ConnMoved naming it rather than claimed
// on demand: an edge whose view lags must not take the slot away from its
// owner (the slot would ping-pong between brokers).
bool brk_slot_elsewhere(const brk_worker *w, uint32_t slot, char *owner, size_t cap);
// brk_slot_moved_recently tells whether slot was lost, or given up on a
// ConnGone MOVED, in the worker's current view less than
// cluster.member_down_ms (at least 1 s) ago: an offer's only_slots does
// not claim it back then (another broker claimed it, or the edges moved it
// and its new owner claims it when the connection resumes there).
bool brk_slot_moved_recently(const brk_worker *w, uint32_t slot);
// brk_slot_owner_name writes to out (cap bytes) the inbox URL a ConnMoved
// names for a connection of slot, which this broker does not hold: the
// store's owner when it is another broker, else the owner in our view when
// another broker (the slot was given up on a MOVED and its new owner has
// not claimed it yet), else "" (the edge asks its own view). One store
// round trip.
void brk_slot_owner_name(brk_worker *w, uint32_t slot, char *out, size_t cap);
// brk_slot_give_up handles a ConnGone MOVED for a session of slot: the
// edges consider the slot moved, so it is given up as if lost (not held,
// store claim dropped, every session of it forgotten from memory, the
// output prepared for them in this pass cancelled, ConnMoved for the other
// connections of it still bound here, named by brk_slot_owner_name), so
// that later offers are not covered here for it. Counted in
// hawser_broker_slots_lost_total. Does nothing for a slot not held.
void brk_slot_give_up(brk_worker *w, uint32_t slot);
// brk_slot_claim claims slot in the store unless held and loads every
// session of it as an offline session (blocking: store round trips); then
// the slot counts in w->held_bits.
hw_err brk_slot_claim(brk_worker *w, uint32_t slot);
// brk_slot_view acts on a new members view (takes the reference v; NULL:
// this broker alone): claims every slot of this worker that is ours in v
// and not held.
void brk_slot_view(brk_worker *w, hw_members_view *v);
// brk_slot_lost_drain, after a store flush: for every slot the store
// reported lost, drops its sessions from memory, cancels the output
// prepared for their connections in this pass, queues ConnMoved for them;
// the lost slots are added to w->lost.
void brk_slot_lost_drain(brk_worker *w);
// brk_slot_check makes sure a held slot is still ours in the store (after
// flushing what is queued): one claimed by another broker meanwhile is
// lost at once, as by brk_slot_lost_drain. Blocking (round trips).
void brk_slot_check(brk_worker *w, uint32_t slot);

// connrec.c: the connection record (Design notes there).
#define BRK_CONNREC_ASSIGNED 0x01  // the client id was assigned
#define BRK_CONNREC_IDENTITY 0x02  // an identity follows
#define BRK_CONNREC_RULES    0x04  // the identity had per-client rules
typedef struct brk_connrec {
	uint8_t        flags;
	uint16_t       keepalive;
	uint32_t       expiry;
	hw_mqtt_packet pkt;        // the CONNECT (views into the record bytes)
	brk_identity  *identity;   // owned; NULL for none
} brk_connrec;
// brk_connrec_encode appends the record of an accepted CONNECT to out.
hw_err brk_connrec_encode(hw_buf *out, const hw_mqtt_connect *cn, uint8_t flags,
    uint16_t keepalive, uint32_t expiry, const brk_identity *id);
// brk_connrec_decode reads a record (p must outlive out->pkt);
// HW_EMALFORMED when it is not one. Free with brk_connrec_fini.
hw_err brk_connrec_decode(const uint8_t *p, size_t n, const char *cid, brk_connrec *out);
void brk_connrec_fini(brk_connrec *r);

// resume.c: brk_resume handles a ConnResume from edge e (Design notes there).
void brk_resume(brk_worker *w, brk_edge *e, const brk_connresume *r);

// session_load.c
// brk_resume_grace_ms is how long a loaded session that was connected
// waits for its edge's ConnResume before it counts as disconnected (its
// will armed, expiry 0 ended): 10 x cluster.member_down_ms (edges re-home
// their connections after member_down_ms), at least 2 x the store's
// refresh_ms (a live broker that lost the slot moves its connections at
// its next write for them).
uint64_t brk_resume_grace_ms(const brk_worker *w);
// brk_session_load rebuilds the session of cid from the store into w (its
// map, subscription shard and gauges), offline: HW_ENOTFOUND when the
// store has none, another error when it could not be read (nothing is left
// behind). *connected (may be NULL) tells whether its record said
// connected (it may have a connection record).
hw_err brk_session_load(brk_worker *w, hw_bytes cid, brk_session **out, bool *connected);

// deliver.c
// brk_deliver_fini frees the worker's match scratch.
void brk_deliver_fini(brk_worker *w);
// brk_deliver_publish delivers msg to this worker's matching sessions
// (only those in `only` when it is not NULL); returns whether any matched.
bool brk_deliver_publish(brk_worker *w, brk_msg *msg, const brk_slotset *only);
// brk_deliver_to delivers m to s at qos (0: only when connected; 1/2: in
// flight or queued per the session policy).
void brk_deliver_to(brk_worker *w, brk_session *s, brk_msg *m, uint8_t qos, bool retain,
    const uint32_t *sub_ids, uint32_t nsub);
// brk_deliver_pump sends queued deliveries while the window has room.
void brk_deliver_pump(brk_worker *w, brk_session *s);
// brk_deliver_resend, after CONNACK: in-flight deliveries again in order
// (DUP PUBLISH, or PUBREL when PUBREC was seen), then queued ones.
void brk_deliver_resend(brk_worker *w, brk_session *s);

// Packet handlers: one per MQTT packet type (handle_*.c), dispatched by
// type through the table in worker.c. c->s is the connection's session
// (NULL only for CONNECT); c->pkt is decoded (CONNECT decodes itself).
typedef struct brk_ctx {
	brk_worker           *w;
	brk_edge             *edge;
	const brk_connpacket *cp;
	brk_session          *s;       // NULL before CONNECT
	hw_mqtt_packet       *pkt;
	uint64_t              now_ms;
	struct brk_connauth  *authed;   // CONNECT resumed with its authentication result
	const struct brk_hold *resumed; // SUBSCRIBE / PUBLISH resumed with their ACL verdicts
} brk_ctx;
typedef void (*brk_handler_fn)(brk_ctx *c);

void brk_handle_connect(brk_ctx *c);
void brk_handle_publish(brk_ctx *c);
void brk_handle_puback(brk_ctx *c);
void brk_handle_pubrec(brk_ctx *c);
void brk_handle_pubrel(brk_ctx *c);
void brk_handle_pubcomp(brk_ctx *c);
void brk_handle_subscribe(brk_ctx *c);
void brk_handle_unsubscribe(brk_ctx *c);
void brk_handle_pingreq(brk_ctx *c);
void brk_handle_disconnect(brk_ctx *c);
void brk_handle_auth(brk_ctx *c);
// brk_handle_router_ack answers the client once the router took its publish.
void brk_handle_router_ack(brk_worker *w, uint64_t seq, uint32_t reason);
// brk_pending_sweep forgets upstream publishes whose Ack has not come for
// BRK_PENDING_TIMEOUT_MS (a router died with them): the client's quota is
// given back and a QoS 2 packet id is released, so the client's resend
// after it reconnects is forwarded again.
#define BRK_PENDING_TIMEOUT_MS 60000
void brk_pending_sweep(brk_worker *w, uint64_t now_ms);

// hold.c: packets of a connection wait while an authentication or ACL
// decision is pending (Design notes there). Worker thread only, except
// the two callbacks, which run wherever the auth module calls them.
#define BRK_HOLD_WAIT 0xFF            // a verdict not in yet (brk_hold.rc)
#define BRK_HOLD_MAX_PACKETS 1000     // held packets per connection, then close
#define BRK_HOLD_MAX_BYTES (4u << 20)

typedef struct brk_held brk_held;
struct brk_held {
	brk_held *next;
	size_t    len;
	uint8_t   data[];
};

typedef struct brk_heldq {
	brk_held *head, *tail;
	uint32_t  n;
	size_t    bytes;
} brk_heldq;

// A SUBSCRIBE or PUBLISH whose ACL verdicts are not all in (brk_session.hold).
typedef struct brk_hold {
	uint64_t  serial;      // answers carry it (w->auth_serial)
	uint8_t   type;        // HW_MQTT_SUBSCRIBE | HW_MQTT_PUBLISH
	uint32_t  waiting;     // verdicts still to come
	uint32_t  n;           // entries of rc
	uint8_t  *rc;          // per filter (PUBLISH: one): the QoS allowed, a
	                       // failure (>= 0x80) or BRK_HOLD_WAIT
	brk_heldq q;           // packets that arrived meanwhile, in order
	size_t    len;
	uint8_t   data[];      // the packet itself
} brk_hold;

// A CONNECT whose authentication is running (w->authing).
typedef struct brk_connauth {
	uint64_t  serial;
	brk_edge *edge;
	uint64_t  conn;
	uint8_t   version;
	bool      assigned;    // the client id was assigned
	uint32_t  max_packet_size;       // ConnInfo's
	brk_auth_connect_result res;     // set when the answer came
	brk_heldq q;
	char     *cid;
	size_t    cid_len;
	size_t    len;
	uint8_t   data[];      // the CONNECT
} brk_connauth;

// What an auth callback posts to the worker: a work item (first member)
// plus the answer. Allocated before the check starts, so posting it never
// fails.
typedef struct brk_auth_ticket {
	brk_work                wk;
	brk_worker             *w;
	uint64_t                serial;
	uint8_t                 key[12];   // the connection (brk_conn_key)
	bool                    connect;
	uint32_t                index;     // SUBSCRIBE: which filter
	brk_acl_result          acl;
	brk_auth_connect_result res;       // CONNECT (res.identity owned)
} brk_auth_ticket;

// brk_hold_ticket returns a ticket for connection key and serial (the
// worker's spare, or a new one); NULL on ENOMEM. brk_hold_ticket_keep takes
// back one that no check consumed (t may be NULL).
brk_auth_ticket *brk_hold_ticket(brk_worker *w, const uint8_t key[12], uint64_t serial);
void brk_hold_ticket_keep(brk_worker *w, brk_auth_ticket *t);
// brk_hold_ticket_fini releases what a ticket holds (its identity) before
// it is freed as a work item.
void brk_hold_ticket_fini(brk_auth_ticket *t);
// The callbacks given to brk_auth_connect / brk_auth_check (arg: a
// ticket): they store the answer and push the ticket to its worker. Any
// thread.
void brk_hold_connect_fn(void *arg, brk_auth_connect_result *res);
void brk_hold_acl_fn(void *arg, brk_acl_result res);
// brk_hold_take holds a packet that arrived from the network if its
// connection is waiting (authentication, or an ACL verdict); true when
// held (or when the hold overflowed and the connection was closed). s is
// the connection's session in w->conns, NULL if it has none (yet).
bool brk_hold_take(brk_worker *w, brk_session *s, brk_edge *e, const brk_connpacket *cp);
// brk_hold_start makes c->s wait for `waiting` verdicts of the packet being
// handled (c->cp->data is copied), with rc[0..n) as known so far.
hw_err brk_hold_start(brk_ctx *c, uint64_t serial, const uint8_t *rc, uint32_t n,
    uint32_t waiting);
// brk_hold_answer handles a ticket popped from the mailbox.
void brk_hold_answer(brk_worker *w, brk_auth_ticket *t);
// brk_hold_replay dispatches held packets of (e, conn) in order until they
// are all done, the connection is gone, or one starts a new wait (the rest
// then waits behind it). Takes q's packets.
void brk_hold_replay(brk_worker *w, brk_edge *e, uint64_t conn, brk_heldq *q);
// brk_hold_clear frees the packets of q.
void brk_hold_clear(brk_heldq *q);
// brk_hold_drop forgets s's pending ACL wait and its held packets (the
// connection ended or was taken over).
void brk_hold_drop(brk_session *s);
// brk_hold_conn_gone forgets a CONNECT still authenticating on (e, conn).
void brk_hold_conn_gone(brk_worker *w, brk_edge *e, uint64_t conn);
// brk_hold_fini frees the worker's authenticating CONNECTs and spare ticket.
void brk_hold_fini(brk_worker *w);
// brk_connauth_free frees a CONNECT record (its identity, packets).
void brk_connauth_free(brk_connauth *ca);

// handle_connect.c: brk_connect_authed resumes the CONNECT ca (taken out of
// w->authing) with its answer in ca->res: CONNACK and session, or refusal.
void brk_connect_authed(brk_worker *w, brk_connauth *ca);
// worker.c: brk_worker_dispatch decodes and handles one packet of
// connection (e, cp->conn), whose session in w->conns is s (NULL: none),
// without looking at holds.
void brk_worker_dispatch(brk_worker *w, brk_session *s, brk_edge *e, const brk_connpacket *cp);

#endif
