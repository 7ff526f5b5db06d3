#include "wq.h"

#include <stdlib.h>
#include <string.h>

struct edge_wq_chunk {
	edge_wq_chunk *next;
	size_t         len;
	size_t         headroom;
	uint8_t        mem[];   // headroom bytes, then len bytes of data
};

edge_wq_verdict edge_wq_decide(size_t queued, size_t len, bool droppable, size_t limit)
{
	if (droppable) {
		if (queued > limit / 2 || len > limit - (queued < limit ? queued : limit))
			return EDGE_WQ_DROP;
		return EDGE_WQ_ACCEPT;
	}
	if (queued > limit || len > limit - queued)
		return EDGE_WQ_OVERFLOW;
	return EDGE_WQ_ACCEPT;
}

hw_err edge_wq_push_force(edge_wq *q, const uint8_t *data, size_t len, size_t headroom)
{
	edge_wq_chunk *c;

	if (len == 0)
		return HW_OK;
	c = malloc(sizeof(*c) + headroom + len);
	if (c == NULL)
		return HW_ENOMEM;
	c->next = NULL;
	c->len = len;
	c->headroom = headroom;
	memcpy(c->mem + headroom, data, len);
	if (q->tail != NULL)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->bytes += len;
	return HW_OK;
}

hw_err edge_wq_push(edge_wq *q, const uint8_t *data, size_t len, bool droppable,
    size_t limit, size_t headroom, edge_wq_verdict *out)
{
	*out = edge_wq_decide(q->bytes, len, droppable, limit);
	if (*out != EDGE_WQ_ACCEPT)
		return HW_OK;
	return edge_wq_push_force(q, data, len, headroom);
}

size_t edge_wq_peek(edge_wq *q, uint8_t *scratch, size_t scratch_cap, size_t headroom,
    uint8_t **p)
{
	edge_wq_chunk *c = q->head;
	size_t n = 0;

	if (c == NULL) {
		*p = NULL;
		return 0;
	}
	if (c->next == NULL || scratch == NULL || headroom + c->len > scratch_cap) {
		*p = c->mem + c->headroom;
		return c->len;
	}
	for (; c != NULL && headroom + n + c->len <= scratch_cap; c = c->next) {
		memcpy(scratch + headroom + n, c->mem + c->headroom, c->len);
		n += c->len;
	}
	*p = scratch + headroom;
	return n;
}

void edge_wq_pop(edge_wq *q, size_t n)
{
	while (n > 0 && q->head != NULL) {
		edge_wq_chunk *c = q->head;

		if (n < c->len) {
			// A partial write (tcp.c): the rest of the chunk stays first.
			c->headroom += n;
			c->len -= n;
			q->bytes -= n;
			return;
		}
		n -= c->len;
		q->bytes -= c->len;
		q->head = c->next;
		if (q->head == NULL)
			q->tail = NULL;
		free(c);
	}
}

void edge_wq_clear(edge_wq *q)
{
	edge_wq_pop(q, q->bytes);
	q->head = q->tail = NULL;
	q->bytes = 0;
}
