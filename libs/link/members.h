#ifndef HW_LINK_MEMBERS_H
#define HW_LINK_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/metrics.h"
#include "core/slot.h"
#include "link/link.h"

// The broker set, as one process sees it: which brokers are live, and which
// of them owns each session slot (docs/cluster.md).
//
// Sources are the configured entries (edge.brokers, router.brokers,
// broker.peers): an NNG URL is one member; dns://name:port is every address
// `name` resolves to (tcp://ip:port each), resolved again every
// dns_refresh_ms, as a Kubernetes headless Service gives. A member is live
// unless it has had no connection for down_ms (counted from when it was
// first listed, so a member that never answers leaves after down_ms too);
// `self` is always live. A member that leaves has its link peer reset
// (hw_link_peer_reset): what was buffered for it is dropped, so a process
// that comes back at that address never gets stale items.
//
// Every change (a member leaves, joins, or appears/disappears in DNS) makes a
// new immutable view; owners are computed with hw_slot_owner over the live
// URLs, so every process with the same live set computes the same owners.
//
// Threads: one thread per hw_members watches the link peers and resolves
// names; `changed` runs on it. Views are reference counted and immutable:
// any thread may hold one.

#define HW_MEMBERS_NONE 0xFFFFu

typedef struct hw_members hw_members;

typedef struct hw_members_view {
	uint64_t        version; // 1 for the first view, +1 per change
	size_t          n;       // live members
	char          **urls;    // n inbox URLs, sorted (strcmp)
	hw_link_peer  **peers;   // n peers; NULL for self
	int             self;    // index of self in urls, or -1
	uint16_t        owner[HW_SLOTS]; // index in urls; HW_MEMBERS_NONE if n == 0
	// private
	int             refs;
} hw_members_view;

typedef struct hw_members_opts {
	const char *const *sources;   // NULL-terminated entries (see above)
	const char        *self;      // this broker's inbox URL, or NULL
	uint32_t           down_ms;   // cluster.member_down_ms
	uint32_t           dns_refresh_ms; // cluster.dns_refresh_ms
	const char        *tier;      // "edge" | "broker" | "router": metric label
	hw_metrics        *metrics;   // may be NULL
	// changed(arg, v): called on the members thread after every change,
	// with the new view (borrowed: take a reference to keep it). May be NULL.
	void             (*changed)(void *arg, hw_members_view *v);
	void              *arg;
} hw_members_opts;

// hw_members_open builds the first view at once (every static member live,
// dns:// entries resolved once; a name that does not resolve yet is retried)
// and starts watching. Peers are created on `link`. Metrics (label tier):
// hawser_cluster_brokers (gauge: live members), hawser_cluster_changes_total,
// hawser_cluster_dns_errors_total.
hw_err hw_members_open(hw_members **out, hw_link *link, const hw_members_opts *o);

// hw_members_get returns the current view with a reference taken.
hw_members_view *hw_members_get(hw_members *m);

// hw_members_view_ref takes one more reference; hw_members_view_release
// drops one (NULL is ignored).
hw_members_view *hw_members_view_ref(hw_members_view *v);
void hw_members_view_release(hw_members_view *v);

// hw_members_owner returns the owner's index of slot in v (HW_MEMBERS_NONE
// when the view is empty).
static inline uint16_t hw_members_owner(const hw_members_view *v, uint32_t slot)
{
	return v->owner[slot % HW_SLOTS];
}

// hw_members_find returns the index of url in v, or -1.
int hw_members_find(const hw_members_view *v, const char *url);

// hw_members_close stops the thread (waits for a running `changed`) and
// frees m; views still referenced stay valid until released.
void hw_members_close(hw_members *m);

#endif
