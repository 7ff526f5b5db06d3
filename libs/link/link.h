#ifndef HW_LINK_LINK_H
#define HW_LINK_LINK_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "core/metrics.h"
#include "hawser/internal/v1/link.pb-c.h"

// NNG wiring between tiers.
//
// A link is one process's inbox (an NNG pull socket listening on
// `listen_url`) plus one push socket per peer it sends to (dialed lazily,
// reconnecting by itself). Every NNG message is one protobuf Batch that
// carries the sender's node id and inbox URL, so a receiver can always answer
// (hw_link_peer(link, batch->reply_to)).
//
// Design notes:
// - Receiving: the link runs one NNG aio receive loop; `recv` is called on an
//   NNG thread, one Batch at a time, in arrival order. The callback owns the
//   batch and frees it with hw_link_batch_free() (possibly later, on another
//   thread).
// - inproc:// links (the all-in-one) bypass NNG (link/local.h): `recv` runs
//   on the SENDER's thread, still one Batch at a time and in order. So a
//   callback must be quick and must not wait for anything the sending
//   thread could be holding; it may send (nested sends never wait for a
//   link lock).
// - Sending is thread-safe and never blocks: each peer socket buffers up to
//   HW_LINK_SENDBUF messages (also while it is disconnecting/reconnecting);
//   beyond that hw_link_send fails with HW_EFULL and counts
//   hawser_link_send_full_total. Messages handed to a connection that then
//   breaks may be lost: the tiers' acknowledgements cover that.
// - Peers live as long as the link; hw_link_peer returns the same peer for the
//   same URL.

#define HW_LINK_SENDBUF 8192

typedef Hawser__Internal__V1__Batch hw_batch;
typedef Hawser__Internal__V1__Item hw_item;

typedef struct hw_link hw_link;
typedef struct hw_link_peer hw_link_peer;

// hw_link_recv_fn receives one batch; ownership passes to the callee.
typedef void (*hw_link_recv_fn)(void *arg, hw_batch *batch);

// hw_link_open creates the link and starts listening on listen_url (tcp://,
// ipc:// or inproc://; a tcp port of 0 picks a free port, see hw_link_url).
// advertise_url is what peers dial to reach us; NULL or "" derives it from the
// bound listen address (0.0.0.0 becomes the host name). Receiving starts with
// hw_link_start. `metrics` may be NULL.
hw_err hw_link_open(hw_link **out, const char *node_id, const char *listen_url,
    const char *advertise_url, hw_metrics *metrics);

// hw_link_start starts delivering received batches to fn(arg, batch).
// Call once; HW_EEXIST if already started. A message that does not unpack
// as a Batch is dropped and counted (hawser_link_bad_batches_total).
// Metrics registered when `metrics` is given: hawser_link_batches_sent_total,
// hawser_link_items_sent_total, hawser_link_batches_received_total,
// hawser_link_items_received_total, hawser_link_send_full_total,
// hawser_link_bad_batches_total (unlabelled; links sharing one registry, as
// in the all-in-one, add up).
hw_err hw_link_start(hw_link *l, hw_link_recv_fn fn, void *arg);

// hw_link_url returns the inbox URL peers dial (advertised, with the real
// port when 0 was asked for). Valid until hw_link_close.
const char *hw_link_url(const hw_link *l);

// hw_link_node returns this link's node id.
const char *hw_link_node(const hw_link *l);

// hw_link_peer_get finds or creates the peer that sends to url. The dial is
// asynchronous and retried forever with backoff; sends queue meanwhile. A
// parked peer (hw_link_peer_park) is dialed again. Thread-safe. The link
// owns the peer.
//
// hw_link_peer(l, url, &p) is the same call: C cannot have a function and a
// typedef with one name, so the call spelling is a function-like macro (it
// only expands when followed by '(', leaving the type name hw_link_peer
// intact).
hw_err hw_link_peer_get(hw_link *l, const char *url, hw_link_peer **out);
#define hw_link_peer(l, url, out) hw_link_peer_get((l), (url), (out))

// hw_link_peer_url returns the URL the peer dials.
const char *hw_link_peer_url(const hw_link_peer *p);

// hw_link_peer_connected reports whether the peer has a live connection.
bool hw_link_peer_connected(const hw_link_peer *p);

// hw_link_peer_reset drops everything buffered for p and restarts its dial
// (a fresh socket): used when the broker set drops p, so a process that
// later comes back at that URL never receives stale items. Thread-safe;
// sends racing with it go to the old or the new socket.
hw_err hw_link_peer_reset(hw_link_peer *p);

// hw_link_peer_park drops everything buffered for p and stops dialing it:
// used when the broker set no longer lists p's address at all (a Kubernetes
// pod that is gone), so the link does not redial a dead address for the
// rest of its life. Sends to a parked peer fail with HW_ECLOSED;
// hw_link_peer_get of its URL (or hw_link_peer_reset) gives it a fresh
// socket and dials again. Thread-safe.
void hw_link_peer_park(hw_link_peer *p);

// hw_link_send packs items[0..n) into one Batch (from, reply_to filled in) and
// queues it for p without blocking. The items stay owned by the caller.
// HW_EFULL when the peer's buffer is full, HW_ENOMEM, HW_ECLOSED.
hw_err hw_link_send(hw_link_peer *p, hw_item *const *items, size_t n);

// hw_link_batch_free frees a batch passed to a hw_link_recv_fn (all of it at
// once: receivers never free or keep parts of a batch past this call).
void hw_link_batch_free(hw_batch *b);

// Inline hosts. In one process (the all-in-one) a batch sent over an
// inproc:// link is delivered on the sender's thread. A thread that calls
// hw_link_inline_host_set declares that a receiver may do the batch's whole
// work there (an "inline pass") instead of handing it to a thread of its
// own, which saves a thread switch per hop. The caller promises that its
// own inbound hand-over never waits while on this thread (the edge's loop:
// edge/src/forward.c), so work done inline cannot deadlock on it. Per
// thread; never set on an NNG thread.
void hw_link_inline_host_set(void);
bool hw_link_inline_host(void);

// hw_link_close stops receiving (waits for a running callback to return),
// closes every peer and frees the link. Batches still buffered for a peer
// are dropped. Must not be called from the link's own recv callback (it
// would wait for itself).
void hw_link_close(hw_link *l);

#endif
