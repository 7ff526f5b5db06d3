#ifndef EDGE_WHEEL_H
#define EDGE_WHEEL_H

#include <stdint.h>

// A hashed timing wheel for per-connection deadlines (CONNECT timeout,
// 1.5x keepalive). Adding, re-arming and removing are O(1); one periodic
// tick expires what is due. Nodes are embedded in the connection, so a
// connection costs no allocation and no system timer.
//
// Keepalive is re-armed lazily by the caller: a packet only records its
// arrival time, and when the node expires the caller checks the real
// deadline and re-adds the node if it has moved. One re-insert per
// keepalive period instead of one per packet.
//
// Resolution is EDGE_WHEEL_TICK_MS; a deadline fires at the first tick at
// or after it, never before. Not thread-safe (the lws service thread).

#define EDGE_WHEEL_TICK_MS 100u
#define EDGE_WHEEL_SLOTS 1024u

typedef struct edge_wheel_node edge_wheel_node;
struct edge_wheel_node {
	edge_wheel_node *prev;
	edge_wheel_node *next;
	uint64_t         due_ms;   // 0 = not on the wheel
};

typedef struct edge_wheel {
	edge_wheel_node slots[EDGE_WHEEL_SLOTS]; // list heads (circular)
	uint64_t        tick;                     // next tick to process
	uint64_t        count;
} edge_wheel;

// edge_wheel_init starts an empty wheel at time now_ms.
void edge_wheel_init(edge_wheel *w, uint64_t now_ms);

// edge_wheel_add puts node on the wheel to fire at due_ms (re-arms it if it
// was already on). due_ms in the past fires at the next advance.
void edge_wheel_add(edge_wheel *w, edge_wheel_node *node, uint64_t due_ms);

// edge_wheel_del takes node off the wheel (no-op if it is not on).
void edge_wheel_del(edge_wheel *w, edge_wheel_node *node);

// edge_wheel_armed reports whether node is on the wheel.
static inline int edge_wheel_armed(const edge_wheel_node *node)
{
	return node->due_ms != 0;
}

// edge_wheel_fn is called for each expired node, already taken off the
// wheel; it may re-add the node or free its owner.
typedef void (*edge_wheel_fn)(void *arg, edge_wheel_node *node);

// edge_wheel_advance processes every tick up to now_ms.
void edge_wheel_advance(edge_wheel *w, uint64_t now_ms, edge_wheel_fn fn, void *arg);

#endif
