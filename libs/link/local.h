#ifndef HW_LINK_LOCAL_H
#define HW_LINK_LOCAL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "link/link.h"

// inproc:// links without NNG (internal to libs/link).
//
// Inside one process (the all-in-one) a batch needs no transport. NNG's
// inproc transport passes every message through its task threads: about
// three thread switches per hop, measured as 31 % of the all-in-one's CPU
// at a moderate load (bench fan-in, 20,000 messages/s). A local endpoint is
// an entry in a process-wide table keyed by URL: the receiving link binds
// it, senders take references to it, and a send delivers on the sender's
// own thread.
//
// Contract (the same as the NNG path gives):
// - Deliveries to one endpoint are serialised by its mutex: the receiver's
//   callback sees one batch at a time, in the order the sends took the
//   mutex (per sender thread: send order).
// - A batch is handed over, not encoded: the sender gives the endpoint a
//   batch of its own (link_batch_copy) and the receiver's callback owns it.
// - While nothing is bound or started, up to `cap` batches wait in
//   the endpoint (in order) and are delivered when the receiver starts;
//   past that a send fails with HW_EFULL.
// - A send outside any local callback may wait for the endpoint (another
//   thread delivering to it); a send from inside a callback never waits for
//   a link lock: if the endpoint is busy the batch waits in it and the
//   thread delivering there hands it over before it lets go. The
//   receiver's callback itself may wait (the edge's hand-over queue waits
//   for its loop; see edge/src/forward.c).
// - After link_local_unbind returns, the callback is never called again.

typedef struct link_local link_local;

// link_local_deliver_fn gets one batch and owns it.
typedef void (*link_local_deliver_fn)(void *arg, hw_batch *b);

// link_local_get returns the endpoint of url (creating it), counted as one
// more reference. HW_ENOMEM.
hw_err link_local_get(const char *url, link_local **out);

// link_local_put drops a reference from link_local_get.
void link_local_put(link_local *e);

// link_local_bind makes e receive with fn(arg) once link_local_start is
// called; HW_EEXIST if another link is bound.
hw_err link_local_bind(link_local *e);

// link_local_start starts deliveries, first the batches that waited.
void link_local_start(link_local *e, link_local_deliver_fn fn, void *arg);

// link_local_unbind stops deliveries (waits for one in progress).
void link_local_unbind(link_local *e);

// link_local_bound reports whether a receiver is bound.
bool link_local_bound(link_local *e);

// link_local_send delivers b now if the receiver has started, else keeps it,
// up to cap batches (HW_EFULL past it; HW_ENOMEM). On HW_OK the endpoint
// owns b; on an error the caller still does.
hw_err link_local_send(link_local *e, hw_batch *b, size_t cap);

// link_local_drop forgets the batches waiting for a receiver that is not
// bound (a reset or park of the sending peer, as a fresh NNG socket would).
void link_local_drop(link_local *e);

#endif
