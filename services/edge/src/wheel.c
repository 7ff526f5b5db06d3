#include "wheel.h"

#include <stddef.h>

void edge_wheel_init(edge_wheel *w, uint64_t now_ms)
{
	for (unsigned i = 0; i < EDGE_WHEEL_SLOTS; i++) {
		w->slots[i].next = &w->slots[i];
		w->slots[i].prev = &w->slots[i];
		w->slots[i].due_ms = 0;
	}
	w->tick = now_ms / EDGE_WHEEL_TICK_MS;
	w->count = 0;
}

void edge_wheel_del(edge_wheel *w, edge_wheel_node *node)
{
	if (node->due_ms == 0)
		return;
	node->prev->next = node->next;
	node->next->prev = node->prev;
	node->prev = node->next = NULL;
	node->due_ms = 0;
	w->count--;
}

void edge_wheel_add(edge_wheel *w, edge_wheel_node *node, uint64_t due_ms)
{
	uint64_t t;
	edge_wheel_node *head;

	edge_wheel_del(w, node);
	if (due_ms == 0)
		due_ms = 1;
	// The tick at or after due_ms; never one already processed.
	t = (due_ms + EDGE_WHEEL_TICK_MS - 1) / EDGE_WHEEL_TICK_MS;
	if (t < w->tick)
		t = w->tick;
	head = &w->slots[t % EDGE_WHEEL_SLOTS];
	node->due_ms = due_ms;
	node->next = head;
	node->prev = head->prev;
	head->prev->next = node;
	head->prev = node;
	w->count++;
}

// edge_wheel_run_slot expires the nodes of one slot that are due by the end
// of tick t; nodes due in a later turn of the wheel stay.
static void edge_wheel_run_slot(edge_wheel *w, uint64_t t, edge_wheel_fn fn, void *arg)
{
	edge_wheel_node *head = &w->slots[t % EDGE_WHEEL_SLOTS];
	edge_wheel_node *n = head->next;
	uint64_t limit = t * EDGE_WHEEL_TICK_MS;
	// Detach the slot's list first: callbacks may re-add nodes to this same
	// slot (a deadline one full turn away) and must not be seen again now.
	edge_wheel_node pending;

	if (n == head)
		return;
	pending.next = n;
	pending.prev = head->prev;
	n->prev = &pending;
	head->prev->next = &pending;
	head->next = head->prev = head;

	while (pending.next != &pending) {
		n = pending.next;
		pending.next = n->next;
		n->next->prev = &pending;
		if (n->due_ms > limit) {
			// A later turn: put it back.
			n->next = head;
			n->prev = head->prev;
			head->prev->next = n;
			head->prev = n;
			continue;
		}
		n->prev = n->next = NULL;
		n->due_ms = 0;
		w->count--;
		fn(arg, n);
	}
}

void edge_wheel_advance(edge_wheel *w, uint64_t now_ms, edge_wheel_fn fn, void *arg)
{
	uint64_t now_tick = now_ms / EDGE_WHEEL_TICK_MS;

	// After a long stall, one pass over every slot covers all of them.
	if (now_tick >= w->tick + EDGE_WHEEL_SLOTS) {
		uint64_t from = now_tick - EDGE_WHEEL_SLOTS + 1;

		w->tick = from;
	}
	while (w->tick <= now_tick) {
		edge_wheel_run_slot(w, w->tick, fn, arg);
		w->tick++;
	}
}
