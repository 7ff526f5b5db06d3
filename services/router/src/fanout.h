#ifndef RTR_FANOUT_H
#define RTR_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/metrics.h"
#include "link/link.h"
#include "link/members.h"
#include "outbox.h"
#include "sink/sink.h"

// The fanout offers messages to every live broker of the current members
// view and gathers their acks; nothing unacknowledged is lost when the
// broker set changes (docs/cluster.md, "Router"). It is the target of the
// direct sink and of the Kafka consumers (where `done` commits an offset).
//
// Design notes:
// - The broker set is the hw_members view the server installs with
//   rtr_fanout_view. The fanout keeps its own copy of what it needs from a
//   view (URLs, peers, slot owners), so views are never referenced across
//   calls. Before the first view there is no broker set at all (a router
//   with an empty router.brokers): offers complete at once with 0x10.
// - A message that wants completion gets a pending **entry** {done, deadline,
//   matched, failed, a deep copy of the message, open sub-offers, retry
//   slots}. Every time the message is sent it is a **sub-offer** with its
//   own router seq (never 0), made in one view: the live members it went to
//   (each waiting or done) and the slots it covers (every slot for the
//   first offer, Publish.only_slots for a re-offer). Sub-offers are in a
//   hash map by seq; entries in a list in deadline order.
// - Acks are matched by seq and by the sender's inbox URL (Batch.reply_to:
//   a broker's broker.advertise is the URL the router knows it by), so a
//   duplicated Ack counts once and an Ack from a member the sub-offer did
//   not go to is ignored. 0x00: taken with a match, 0x10: taken without,
//   0x80+: failed. An Ack's retry_slots are slots that broker did not
//   take; they go out again only if no Ack holds them (below).
// - Covered is positive (docs/cluster.md): an entry counts a slot covered
//   only when an Ack of one of its sub-offers had it in `held` (the slots
//   that broker held while it took the offer), or, for an Ack without
//   held (a broker that predates it), when the sub-offer had it and the
//   Ack's retry_slots did not. Once no sub-offer of the entry waits and
//   its retry set is empty, the slots nobody covered go to the retry set
//   (hawser_router_reoffers_total{cause="retry_slots"} when some Ack named
//   retry_slots since the last round, else cause="uncovered") until some
//   broker holds them or the deadline fails the message. A slot one Ack
//   refused and another held is not offered again: the broker that held it
//   delivered to its sessions, and they would get the message twice.
// - A view change that removes a member a sub-offer still waits for: that
//   member is done, and the slots it owned (in the sub-offer's view and in
//   the view just replaced) that the sub-offer covered are offered again at
//   once to every live member of the new view, with only_slots
//   (hawser_router_reoffers_total{cause="member_left"}).
// - Retry set: slots nobody covered, from sends that failed
//   (HW_EFULL: the member's share is retried), and slots that had nobody to
//   go to (no live member). They go out again in the next **round**: one
//   timer for the fanout, armed a backoff after a slot is refused (10 ms,
//   doubling up to 500 ms while refusals keep coming back from re-offers;
//   back to 10 ms once nothing is held). A round offers every entry's retry
//   slots, in creation order, one sub-offer per entry (cause="retry_slots";
//   "member_left" when they came from a departed member and the view was
//   empty; "uncovered" when they are only slots no Ack held).
// - Per-slot order. A slot is **held** while some entry has it in its retry
//   set or in a re-offer (member_left or round) not yet answered by every
//   member. A new message goes at once to every slot that is not held
//   (only_slots = the others, when some are) and to the held ones in the
//   next round, after the earlier messages, so the sessions of a slot get
//   messages in the order they were offered (the broker delivers each
//   link's items in order). Rounds wait while held re-offers are in flight.
// - An entry completes once no sub-offer waits, its retry set is empty and
//   every slot is covered (or a member failed it):
//   0x80 if any member answered 0x80+, else 0x00 if any matched, else 0x10.
//   At its deadline it fails with 0x80 (hawser_router_ack_timeouts_total),
//   whatever still waits. A joining member gets new offers only: a broker
//   that joins claims slots on demand, and the brokers that held them
//   answer retry_slots for what they no longer hold.
// - Memory the outbox still points into (message copies, only_slots arrays)
//   is freed only when the outbox is empty (after its flush), at the start
//   of the next outermost call.
// - An offer without completion (QoS 0) goes out with seq 0 to the live
//   members and is forgotten.
// - Offers are queued in the outbox in call order, so offers to one broker
//   leave in the order they were made.
// - Single-threaded: only the router's processing thread calls in.

#define RTR_FANOUT_TIMEOUT_MS 30000u
// Beyond this many entries waiting for acks, new offers that want
// completion fail at once (0x80) instead of growing memory without bound.
#define RTR_FANOUT_MAX_PENDING (1u << 20)
// Backoff of a round after a refusal: first wait, then doubling up to max.
#define RTR_FANOUT_RETRY_MIN_MS 10u
#define RTR_FANOUT_RETRY_MAX_MS 500u

// rtr_fanout_alloc creates the fanout, queueing through `ob` (borrowed; the
// fanout installs itself as ob's fail callback). Entries not completed
// within timeout_ms fail. Registers hawser_router_pending (gauge),
// hawser_router_ack_timeouts_total and hawser_router_reoffers_total{cause}
// in metrics (may be NULL; causes member_left, retry_slots, uncovered).
// There is no broker set until rtr_fanout_view.
hw_err rtr_fanout_alloc(rtr_fanout **out, rtr_outbox *ob, uint32_t timeout_ms,
    hw_metrics *metrics);

// rtr_fanout_view installs v (borrowed for the call; the fanout copies what
// it needs) as the broker set. A view whose version is not newer than the
// current one is ignored. Sub-offers waiting for members that v no longer
// lists are offered again (see the design notes); members v adds get new
// offers only. The peers in v must belong to the link the outbox sends on.
// HW_ENOMEM leaves the previous view in place.
hw_err rtr_fanout_view(rtr_fanout *f, const hw_members_view *v);

// rtr_fanout_brokers returns how many live members the current view has.
size_t rtr_fanout_brokers(const rtr_fanout *f);

// rtr_fanout_connected returns how many live members have a connected link
// now (the Kafka consumer pauses while there is none: its offers could only
// wait).
size_t rtr_fanout_connected(const rtr_fanout *f);

// rtr_fanout_offer queues msg (borrowed until the outbox flush; copied when
// done.fn is set) for every live member. With done.fn set, done is called
// exactly once with the outcome: later, or before this returns when there
// is no broker set (0x10). On an error (HW_ENOMEM, HW_EFULL: too many
// pending) nothing was queued and done is not called.
hw_err rtr_fanout_offer(rtr_fanout *f, const rtr_msg *msg, rtr_sink_done done);

// rtr_fanout_ack_held takes the Ack (seq, reason, retry_slots[0..nretry),
// held[0..held_len): Ack.held, a bitmap with bit slot % 8 of byte slot / 8;
// held_len 0: an Ack without it) that the member whose inbox URL is `from`
// sent. HW_ENOTFOUND for unknown seqs (late, after a timeout) and for a
// sender the sub-offer did not go to; HW_EEXIST for a duplicate. Those are
// ignored. rtr_fanout_ack is the same without held (held_len 0).
hw_err rtr_fanout_ack_held(rtr_fanout *f, const char *from, uint64_t seq, uint32_t reason,
    const uint32_t *retry_slots, size_t nretry, const uint8_t *held, size_t held_len);
hw_err rtr_fanout_ack(rtr_fanout *f, const char *from, uint64_t seq, uint32_t reason,
    const uint32_t *retry_slots, size_t nretry);

// rtr_fanout_expire does what is due at now_ms (hw_clock_mono_ms time):
// fails (0x80) every entry whose deadline is <= now_ms, then runs the round
// if it is due and no held re-offer is in flight.
void rtr_fanout_expire(rtr_fanout *f, uint64_t now_ms);

// rtr_fanout_next_deadline returns when rtr_fanout_expire next has work (an
// entry's deadline, or the round unless it waits for Acks;
// hw_clock_mono_ms time), or UINT64_MAX when nothing is pending.
uint64_t rtr_fanout_next_deadline(const rtr_fanout *f);

// rtr_fanout_pending returns how many messages wait for acks.
size_t rtr_fanout_pending(const rtr_fanout *f);

// rtr_fanout_free frees the fanout; pending entries are dropped without
// calling done. The peers belong to the link. NULL ok.
void rtr_fanout_free(rtr_fanout *f);

#endif
