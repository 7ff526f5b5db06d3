// Batches that live in one arena (link/arena.h).
//
// Design notes:
// - A chunk is a header and its memory; the first chunk's header also
//   points at the chunk now allocated from. The Batch is the first
//   allocation of the first chunk: protobuf-c allocates the top message
//   first when unpacking, and the copy does the same, so link_batch_release
//   finds the chain right in front of the batch.
// - Unpacking does not know the final size in advance (a batch takes a few
//   times its packed size unpacked), so it starts with 4 × len + 512 bytes
//   and chains bigger chunks if needed.
// - Copying measures first (msg_size) and takes one chunk of exactly that
//   size, then fills it front to back (msg_copy): one malloc per batch, and
//   no slack in batches that wait in a queue (the edge's hand-over).
//   Both passes round every allocation the same way, so the fill never
//   runs past what was measured.
// - The copy walks protobuf-c's field descriptors, so it follows the
//   generated structs exactly: scalars come with the memcpy of each
//   message, and only what points elsewhere (strings, bytes, sub-messages,
//   repeated arrays, unknown fields) is copied by hand. A oneof member is
//   copied only when its case is the current one: its storage is shared
//   with the other members.
#include "link/arena.h"

#include <assert.h>
#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <string.h>

typedef struct link_chunk {
	struct link_chunk *next;
	struct link_chunk *cur;  // first chunk only: the one allocated from
	size_t             used;
	size_t             cap;
} link_chunk;

#define ARENA_ROUND(n) (((n) + 15u) & ~(size_t)15u)
#define CHUNK_HDR ARENA_ROUND(sizeof(link_chunk))
#define CHUNK_MEM(c) ((uint8_t *)(c) + CHUNK_HDR)

static link_chunk *chunk_new(size_t cap)
{
	link_chunk *c = malloc(CHUNK_HDR + cap);

	if (c != NULL) {
		c->next = NULL;
		c->cur = c;
		c->used = 0;
		c->cap = cap;
	}
	return c;
}

static void chunks_free(link_chunk *c)
{
	while (c != NULL) {
		link_chunk *next = c->next;

		free(c);
		c = next;
	}
}

void link_batch_release(hw_batch *b)
{
	if (b != NULL)
		chunks_free((link_chunk *)(void *)((uint8_t *)b - CHUNK_HDR));
}

// ---------------------------------------------------------------------------
// Unpacking

static void *arena_alloc(void *data, size_t size)
{
	link_chunk *head = data, *c = head->cur;
	void       *p;

	size = ARENA_ROUND(size);
	if (c->cap - c->used < size) {
		link_chunk *n = chunk_new(size > 2 * c->cap ? size : 2 * c->cap);

		if (n == NULL)
			return NULL;
		c->next = n;
		head->cur = n;
		c = n;
	}
	p = CHUNK_MEM(c) + c->used;
	c->used += size;
	return p;
}

static void arena_free(void *data, void *p)
{
	(void)data; // everything goes at once, in link_batch_release
	(void)p;
}

hw_batch *link_batch_unpack(const uint8_t *buf, size_t len)
{
	link_chunk        *head = chunk_new(4 * len + 512);
	ProtobufCAllocator a = { arena_alloc, arena_free, head };
	hw_batch          *b;

	if (head == NULL)
		return NULL;
	b = hawser__internal__v1__batch__unpack(&a, len, buf);
	if (b == NULL || (void *)b != (void *)CHUNK_MEM(head)) {
		// Not a batch (or, impossibly, not the first allocation: then it
		// cannot be freed by address; drop it rather than leak or crash).
		chunks_free(head);
		return NULL;
	}
	return b;
}

// ---------------------------------------------------------------------------
// Copying (design notes)

// elt_size is the size of one element of a repeated field of type t.
static size_t elt_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default: // the 32-bit scalars and enums
		return 4;
	}
}

// field_live says whether f's storage in m holds f: not so for a oneof
// member other than the current case.
static bool field_live(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0)
		return true;
	return *(const uint32_t *)(const void *)((const uint8_t *)m + f->quantifier_offset) == f->id;
}

static size_t repeated_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	return *(const size_t *)(const void *)((const uint8_t *)m + f->quantifier_offset);
}

static size_t msg_size(const ProtobufCMessage *m);

// value_size is what one value of type t at v needs beyond its slot.
static size_t value_size(ProtobufCType t, const void *v)
{
	switch (t) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)v;

		return s != NULL && *s != '\0' ? ARENA_ROUND(strlen(s) + 1) : 0;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *d = v;

		return d->len > 0 ? ARENA_ROUND(d->len) : 0;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)v;

		return sub != NULL ? msg_size(sub) : 0;
	}
	default:
		return 0;
	}
}

static size_t msg_size(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	size_t                            n = ARENA_ROUND(d->sizeof_message);

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const uint8_t                  *slot = (const uint8_t *)m + f->offset;

		if (!field_live(m, f))
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t         k = repeated_count(m, f), es = elt_size(f->type);
			const uint8_t *arr = *(uint8_t *const *)(const void *)slot;

			if (k == 0)
				continue;
			n += ARENA_ROUND(k * es);
			for (size_t j = 0; j < k; j++)
				n += value_size(f->type, arr + j * es);
		} else {
			n += value_size(f->type, slot);
		}
	}
	if (m->n_unknown_fields > 0) {
		n += ARENA_ROUND(m->n_unknown_fields * sizeof(ProtobufCMessageUnknownField));
		for (unsigned i = 0; i < m->n_unknown_fields; i++)
			n += ARENA_ROUND(m->unknown_fields[i].len);
	}
	return n;
}

// fill hands out a measured chunk front to back.
typedef struct fill {
	uint8_t *p;
} fill;

static void *fill_take(fill *a, const void *src, size_t n)
{
	void *p = a->p;

	a->p += ARENA_ROUND(n);
	if (n > 0)
		memcpy(p, src, n);
	return p;
}

static ProtobufCMessage *msg_copy(fill *a, const ProtobufCMessage *src);

// value_copy makes the value of type t in slot dst (a bit copy of src's)
// point at copies of its own.
static void value_copy(fill *a, ProtobufCType t, void *dst)
{
	switch (t) {
	case PROTOBUF_C_TYPE_STRING: {
		char **s = dst;

		// proto3: an absent string unpacks as protobuf-c's empty string.
		if (*s == NULL || **s == '\0')
			*s = (char *)protobuf_c_empty_string;
		else
			*s = fill_take(a, *s, strlen(*s) + 1);
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *d = dst;

		d->data = d->len > 0 ? fill_take(a, d->data, d->len) : NULL;
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		ProtobufCMessage **sub = dst;

		if (*sub != NULL)
			*sub = msg_copy(a, *sub);
		break;
	}
	default:
		break;
	}
}

static bool type_points(ProtobufCType t)
{
	return t == PROTOBUF_C_TYPE_STRING || t == PROTOBUF_C_TYPE_BYTES ||
	       t == PROTOBUF_C_TYPE_MESSAGE;
}

static ProtobufCMessage *msg_copy(fill *a, const ProtobufCMessage *src)
{
	const ProtobufCMessageDescriptor *d = src->descriptor;
	ProtobufCMessage                 *m = fill_take(a, src, d->sizeof_message);

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		uint8_t                        *slot = (uint8_t *)m + f->offset;

		if (!field_live(m, f))
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t    k = repeated_count(m, f), es = elt_size(f->type);
			uint8_t **arr = (uint8_t **)(void *)slot;

			if (k == 0) {
				*arr = NULL;
				continue;
			}
			*arr = fill_take(a, *arr, k * es);
			if (type_points(f->type)) {
				for (size_t j = 0; j < k; j++)
					value_copy(a, f->type, *arr + j * es);
			}
		} else {
			value_copy(a, f->type, slot);
		}
	}
	if (m->n_unknown_fields > 0) {
		m->unknown_fields = fill_take(a, m->unknown_fields,
		    m->n_unknown_fields * sizeof(ProtobufCMessageUnknownField));
		for (unsigned i = 0; i < m->n_unknown_fields; i++) {
			ProtobufCMessageUnknownField *u = &m->unknown_fields[i];

			u->data = u->len > 0 ? fill_take(a, u->data, u->len) : NULL;
		}
	} else {
		m->unknown_fields = NULL;
	}
	return m;
}

hw_batch *link_batch_copy(const hw_batch *b)
{
	size_t      n = msg_size(&b->base);
	link_chunk *c = chunk_new(n);
	fill        a;
	hw_batch   *out;

	if (c == NULL)
		return NULL;
	c->used = n;
	a.p = CHUNK_MEM(c);
	out = (hw_batch *)(void *)msg_copy(&a, &b->base);
	assert(a.p == CHUNK_MEM(c) + n); // the fill used exactly what was measured
	return out;
}
