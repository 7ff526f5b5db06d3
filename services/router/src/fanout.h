#ifndef RTR_FANOUT_H
#define RTR_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/metrics.h"
#include "link/link.h"
#include "outbox.h"
#include "sink/sink.h"

// The fanout offers messages to every broker of router.brokers and gathers
// their acks. It is the target of the direct sink today and of the Kafka
// consumers later (where `done` commits an offset).
//
// Design notes:
// - One hw_link_peer per broker URL, created by rtr_fanout_start.
// - An offer goes to every broker of router.brokers, connected or not. The
//   link queues offers for a broker that is still dialing or reconnecting
//   (HW_LINK_SENDBUF batches), so a broker that comes up late gets them in
//   order; if it never acks, the entry fails at its deadline. Skipping
//   unconnected brokers would ack publishes that a broker holding
//   subscribers never took (it was lost right after startup, when the
//   router's first dial had not connected yet). A broker that is gone for
//   good makes QoS 1/2 publishes fail (0x80) after the timeout until it is
//   removed from the list; session ownership (membership from DNS) removes
//   dead brokers by itself.
// - An offer that wants completion gets its own router seq (never 0) and a
//   pending entry {seq, brokers still to ack, any-match, failed, deadline,
//   done}, kept in a hash map by seq and in a list in deadline order. Every
//   offered broker answers with an Ack carrying that seq: 0x00 taken with a
//   match, 0x10 taken without one, 0x80+ failed. When the last one has
//   answered, done gets 0x00 if any matched, else 0x10; 0x80 if any failed,
//   if a send to one of them failed, or if the entry passed its deadline
//   (hawser_router_ack_timeouts_total; e.g. a broker died holding it).
//   Brokers are counted, not named (a broker's reply_to need not equal the
//   URL the router dials), so a duplicated Ack would count twice; brokers
//   send one Ack per seq.
// - An offer without completion (QoS 0) goes out with seq 0 and is forgotten.
// - Offers are queued in the outbox in call order, so offers to one broker
//   leave in the order they were made.
// - Single-threaded: only the router's processing thread calls in.

#define RTR_FANOUT_TIMEOUT_MS 30000u
// Beyond this many entries waiting for acks, new offers that want
// completion fail at once (0x80) instead of growing memory without bound.
#define RTR_FANOUT_MAX_PENDING (1u << 20)

// rtr_fanout_alloc creates the fanout for `brokers` (NULL-terminated URLs,
// borrowed for the fanout's life), queueing through `ob` (borrowed; the
// fanout installs itself as ob's fail callback). Acks that do not come
// within timeout_ms fail. Registers hawser_router_pending (gauge) and
// hawser_router_ack_timeouts_total in metrics (may be NULL).
hw_err rtr_fanout_alloc(rtr_fanout **out, hw_link *link, char *const *brokers,
    rtr_outbox *ob, uint32_t timeout_ms, hw_metrics *metrics);

// rtr_fanout_start creates the broker peers (starting their dials).
hw_err rtr_fanout_start(rtr_fanout *f);

// rtr_fanout_brokers returns how many brokers the fanout offers to.
size_t rtr_fanout_brokers(const rtr_fanout *f);

// rtr_fanout_connected returns how many brokers have a live link now (the
// Kafka consumer pauses while there is none: its offers could only wait).
size_t rtr_fanout_connected(const rtr_fanout *f);

// rtr_fanout_offer queues msg (borrowed until the outbox flush) for every
// connected broker. With done.fn set, done is called exactly once with the
// outcome: later, or before this returns when there is nothing to wait for
// (no broker connected: 0x10). On an error (HW_ENOMEM, HW_EFULL: too many
// pending) nothing was queued and done is not called.
hw_err rtr_fanout_offer(rtr_fanout *f, const rtr_msg *msg, rtr_sink_done done);

// rtr_fanout_ack takes a broker's Ack. Unknown seqs (late, after a timeout)
// are ignored and return HW_ENOTFOUND.
hw_err rtr_fanout_ack(rtr_fanout *f, uint64_t seq, uint32_t reason);

// rtr_fanout_expire fails (0x80) every entry whose deadline is <= now_ms
// (hw_clock_mono_ms time).
void rtr_fanout_expire(rtr_fanout *f, uint64_t now_ms);

// rtr_fanout_next_deadline returns the earliest deadline of a pending entry
// (hw_clock_mono_ms time), or UINT64_MAX when nothing is pending.
uint64_t rtr_fanout_next_deadline(const rtr_fanout *f);

// rtr_fanout_pending returns how many offers wait for acks.
size_t rtr_fanout_pending(const rtr_fanout *f);

// rtr_fanout_free frees the fanout; pending entries are dropped without
// calling done. The peers belong to the link. NULL ok.
void rtr_fanout_free(rtr_fanout *f);

#endif
