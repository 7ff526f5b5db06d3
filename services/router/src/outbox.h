#ifndef RTR_OUTBOX_H
#define RTR_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/metrics.h"
#include "link/link.h"
#include "sink/sink.h"

// The outbox collects what one processing pass sends to each peer (offers
// to brokers, acks to publishing brokers) and sends it as one Batch per
// peer when the pass ends, so the items ready in one pass share one NNG
// message per peer. Items queued for one peer leave in the order they were
// added.
//
// Design notes:
// - The Item and Publish/Ack structs that go out live in an arena of the
//   outbox that is reset by rtr_outbox_flush. A queued Publish is a shallow
//   copy of a received one (its topic and payload still point into the
//   received Batch), so the caller keeps received batches alive until the
//   flush returns. One Item may be queued for several peers.
// - A send that fails (peer buffer full: hawser_router_send_full_total)
//   reports every non-NULL `owner` of that batch to the fail callback, which
//   may queue more items (acks); flush sends those too before returning.
// - Single-threaded: only the router's processing thread uses an outbox.

typedef struct rtr_outbox rtr_outbox;

// rtr_outbox_fail_fn is told that the item queued with `owner` was not
// handed to its peer.
typedef void (*rtr_outbox_fail_fn)(void *arg, void *owner);

// rtr_outbox_alloc creates an empty outbox. Counters registered in metrics
// (may be NULL): hawser_router_offers_sent_total (Publish items handed to a
// peer, counted once per peer) and hawser_router_send_full_total.
hw_err rtr_outbox_alloc(rtr_outbox **out, hw_metrics *metrics);

// rtr_outbox_on_fail sets the callback for items that could not be sent.
void rtr_outbox_on_fail(rtr_outbox *ob, rtr_outbox_fail_fn fn, void *arg);

// rtr_outbox_slot finds or creates the queue of peer p and returns its index
// in *slot; the index stays valid for the outbox's life.
hw_err rtr_outbox_slot(rtr_outbox *ob, hw_link_peer *p, size_t *slot);

// rtr_outbox_publish makes an Item holding a shallow copy of src with seq
// replaced by `seq`. It lives until the next flush returns.
hw_err rtr_outbox_publish(rtr_outbox *ob, const rtr_msg *src, uint64_t seq, hw_item **out);

// rtr_outbox_ack makes an Ack Item; it lives until the next flush returns.
hw_err rtr_outbox_ack(rtr_outbox *ob, uint64_t seq, uint32_t reason, hw_item **out);

// rtr_outbox_add queues item for the peer of `slot`. owner (may be NULL) is
// what the fail callback gets if the send fails.
hw_err rtr_outbox_add(rtr_outbox *ob, size_t slot, hw_item *item, void *owner);

// rtr_outbox_queued returns how many items are queued over all peers.
size_t rtr_outbox_queued(const rtr_outbox *ob);

// rtr_outbox_flush sends every peer's queue as one Batch (never blocks),
// reports failed sends, and resets the arena: every Item made since the
// previous flush is invalid afterwards.
void rtr_outbox_flush(rtr_outbox *ob);

// rtr_outbox_free frees the outbox (queued items are dropped). NULL ok.
void rtr_outbox_free(rtr_outbox *ob);

#endif
