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
// - The copy follows protobuf-c's field descriptors, so it follows the
//   generated structs exactly: scalars come with the memcpy of each
//   message, and only what points elsewhere (strings, bytes, sub-messages,
//   repeated arrays, unknown fields) is copied by hand, field by field from
//   a plan made once per message type. A oneof member is
//   copied only when its case is the current one: its storage is shared
//   with the other members.
#include "link/arena.h"

#include <assert.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdbool.h>
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

// A plan lists, for one message type, only the fields that point elsewhere
// (strings, bytes, sub-messages, repeated arrays), with what the copy needs
// of each at hand: the scalars come with the memcpy of the message, so a
// Publish walks 11 of its 19 fields and a ConnWrite 1 of 6. The plans are
// built once, from the Batch descriptor down (pthread_once), and each
// message field points at its type's plan, so a copy never looks one up.
typedef struct plan plan;

typedef struct plan_field {
	uint32_t    offset;
	uint32_t    qoffset;  // repeated: the count; oneof: the case
	uint32_t    id;       // oneof: this member's case
	uint32_t    esize;    // repeated: the size of one element
	uint8_t     type;     // ProtobufCType
	bool        repeated;
	bool        oneof;
	const plan *sub;      // PROTOBUF_C_TYPE_MESSAGE
} plan_field;

struct plan {
	const ProtobufCMessageDescriptor *desc;
	plan                             *next; // every plan, for the build's lookup
	size_t                            n;
	plan_field                       *f;
};

static pthread_once_t plans_once = PTHREAD_ONCE_INIT;
static plan          *plans;      // every plan built
static const plan    *batch_plan; // NULL: a build failed (ENOMEM)

// elt_size is the size of one element of a repeated field of type t.
static uint32_t elt_size(ProtobufCType t)
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

static bool type_points(ProtobufCType t)
{
	return t == PROTOBUF_C_TYPE_STRING || t == PROTOBUF_C_TYPE_BYTES ||
	       t == PROTOBUF_C_TYPE_MESSAGE;
}

// field_planned says whether f goes in its message's plan: it points
// elsewhere (a repeated field's array does, whatever its type).
static bool field_planned(const ProtobufCFieldDescriptor *f)
{
	return f->label == PROTOBUF_C_LABEL_REPEATED || type_points(f->type);
}

// plan_for returns d's plan, building it (and those of its sub-messages)
// if needed; NULL on ENOMEM. A plan is listed before its fields are
// planned, so a message type that contains itself finds its own plan.
static plan *plan_for(const ProtobufCMessageDescriptor *d)
{
	plan  *p;
	size_t k = 0;

	for (p = plans; p != NULL; p = p->next)
		if (p->desc == d)
			return p;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->desc = d;
	p->next = plans;
	plans = p;
	for (unsigned i = 0; i < d->n_fields; i++)
		p->n += field_planned(&d->fields[i]);
	if (p->n > 0 && (p->f = calloc(p->n, sizeof(*p->f))) == NULL)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		plan_field                     *pf;

		if (!field_planned(f))
			continue;
		pf = &p->f[k++];
		pf->offset = f->offset;
		pf->qoffset = f->quantifier_offset;
		pf->id = f->id;
		pf->esize = elt_size(f->type);
		pf->type = (uint8_t)f->type;
		pf->repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
		pf->oneof = (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    (pf->sub = plan_for((const ProtobufCMessageDescriptor *)f->descriptor)) == NULL)
			return NULL;
	}
	return p;
}

static void plans_build(void)
{
	batch_plan = plan_for(&hawser__internal__v1__batch__descriptor);
}

// field_live says whether f's storage in m holds f: not so for a oneof
// member other than the current case.
static bool field_live(const ProtobufCMessage *m, const plan_field *f)
{
	return !f->oneof ||
	       *(const uint32_t *)(const void *)((const uint8_t *)m + f->qoffset) == f->id;
}

static size_t repeated_count(const ProtobufCMessage *m, const plan_field *f)
{
	return *(const size_t *)(const void *)((const uint8_t *)m + f->qoffset);
}

static size_t msg_size(const plan *p, const ProtobufCMessage *m);

// value_size is what one value of f's type at v needs beyond its slot.
static size_t value_size(const plan_field *f, const void *v)
{
	switch (f->type) {
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

		return sub != NULL ? msg_size(f->sub, sub) : 0;
	}
	default:
		return 0;
	}
}

static size_t msg_size(const plan *p, const ProtobufCMessage *m)
{
	size_t n = ARENA_ROUND(p->desc->sizeof_message);

	assert(m->descriptor == p->desc);
	for (size_t i = 0; i < p->n; i++) {
		const plan_field *f = &p->f[i];
		const uint8_t    *slot = (const uint8_t *)m + f->offset;

		if (!field_live(m, f))
			continue;
		if (f->repeated) {
			size_t         k = repeated_count(m, f);
			const uint8_t *arr = *(uint8_t *const *)(const void *)slot;

			if (k == 0)
				continue;
			n += ARENA_ROUND(k * f->esize);
			if (type_points(f->type))
				for (size_t j = 0; j < k; j++)
					n += value_size(f, arr + j * f->esize);
		} else {
			n += value_size(f, slot);
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

static ProtobufCMessage *msg_copy(const plan *p, fill *a, const ProtobufCMessage *src);

// value_copy makes the value of f's type in slot dst (a bit copy of src's)
// point at copies of its own.
static void value_copy(const plan_field *f, fill *a, void *dst)
{
	switch (f->type) {
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
			*sub = msg_copy(f->sub, a, *sub);
		break;
	}
	default:
		break;
	}
}

static ProtobufCMessage *msg_copy(const plan *p, fill *a, const ProtobufCMessage *src)
{
	ProtobufCMessage *m = fill_take(a, src, p->desc->sizeof_message);

	for (size_t i = 0; i < p->n; i++) {
		const plan_field *f = &p->f[i];
		uint8_t          *slot = (uint8_t *)m + f->offset;

		if (!field_live(m, f))
			continue;
		if (f->repeated) {
			size_t    k = repeated_count(m, f);
			uint8_t **arr = (uint8_t **)(void *)slot;

			if (k == 0) {
				*arr = NULL;
				continue;
			}
			*arr = fill_take(a, *arr, k * f->esize);
			if (type_points(f->type))
				for (size_t j = 0; j < k; j++)
					value_copy(f, a, *arr + j * f->esize);
		} else {
			value_copy(f, a, slot);
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
	size_t      n;
	link_chunk *c;
	fill        a;
	hw_batch   *out;

	(void)pthread_once(&plans_once, plans_build);
	if (batch_plan == NULL)
		return NULL;
	n = msg_size(batch_plan, &b->base);
	if ((c = chunk_new(n)) == NULL)
		return NULL;
	c->used = n;
	a.p = CHUNK_MEM(c);
	out = (hw_batch *)(void *)msg_copy(batch_plan, &a, &b->base);
	assert(a.p == CHUNK_MEM(c) + n); // the fill used exactly what was measured
	return out;
}
