// The replay log of one connection (see replay.h for the design notes).
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "mqtt/codec.h"
#include "replay.h"

// Entry header, followed by the packet, padded to EDGE_RP_ALIGN.
typedef struct edge_rp_ent {
	uint32_t len;     // packet bytes
	uint16_t id;      // packet id the answer carries (0: CONNECT)
	uint8_t  answer;  // MQTT packet type that answers it
	uint8_t  dead;    // answered; skipped, squeezed out at compaction
} edge_rp_ent;

#define EDGE_RP_ALIGN 8u
#define EDGE_RP_MIN_CAP 256u

struct edge_replay {
	uint8_t *buf;
	size_t   head;   // offset of the first entry (live once trimmed)
	size_t   tail;   // end of the last entry
	size_t   cap;
	size_t   live;   // live entries
	size_t   bytes;  // packet bytes of the live entries
};

static size_t edge_rp_size(size_t len)
{
	return (sizeof(edge_rp_ent) + len + EDGE_RP_ALIGN - 1) & ~(size_t)(EDGE_RP_ALIGN - 1);
}

static edge_rp_ent *edge_rp_at(const edge_replay *r, size_t off)
{
	return (edge_rp_ent *)(void *)(r->buf + off);
}

// edge_rp_header reads a packet's fixed header: its type, flags and where
// its variable header starts. Fails past the end.
static hw_err edge_rp_header(hw_rd *rd, uint8_t *b0, uint32_t *rl)
{
	hw_err err = hw_rd_u8(rd, b0);

	if (err == HW_OK)
		err = hw_mqtt_varint_read(rd, rl);
	if (err == HW_OK && hw_rd_left(rd) < *rl)
		err = HW_EMALFORMED;
	return err;
}

uint8_t edge_replay_wants(const uint8_t *pkt, size_t len, uint16_t *id)
{
	hw_rd rd = hw_rd_of(pkt, len);
	uint8_t b0, answer;
	uint32_t rl;
	uint16_t tlen;
	hw_bytes skip;

	*id = 0;
	if (edge_rp_header(&rd, &b0, &rl) != HW_OK)
		return 0;
	switch (b0 >> 4) {
	case HW_MQTT_CONNECT:
		return HW_MQTT_CONNACK;
	case HW_MQTT_PUBLISH:
		switch ((b0 >> 1) & 3) {
		case 1:
			answer = HW_MQTT_PUBACK;
			break;
		case 2:
			answer = HW_MQTT_PUBREC;
			break;
		default:
			return 0; // QoS 0 (or the invalid QoS 3: the broker refuses it)
		}
		if (hw_rd_u16(&rd, &tlen) != HW_OK || hw_rd_bytes(&rd, tlen, &skip) != HW_OK)
			return 0;
		break;
	case HW_MQTT_PUBREL:
		answer = HW_MQTT_PUBCOMP;
		break;
	case HW_MQTT_SUBSCRIBE:
		answer = HW_MQTT_SUBACK;
		break;
	case HW_MQTT_UNSUBSCRIBE:
		answer = HW_MQTT_UNSUBACK;
		break;
	default:
		return 0;
	}
	if (hw_rd_u16(&rd, id) != HW_OK)
		return 0;
	return answer;
}

// edge_rp_compact moves the live entries to the front of the buffer, in
// order, dropping the dead ones.
static void edge_rp_compact(edge_replay *r)
{
	size_t out = 0, off = r->head;

	while (off < r->tail) {
		edge_rp_ent *e = edge_rp_at(r, off);
		size_t sz = edge_rp_size(e->len);

		if (!e->dead) {
			if (out != off)
				memmove(r->buf + out, e, sz);
			out += sz;
		}
		off += sz;
	}
	r->head = 0;
	r->tail = out;
}

hw_err edge_replay_add(edge_replay **rp, const uint8_t *pkt, size_t len, uint8_t answer,
    uint16_t id, size_t max_entries, size_t max_bytes)
{
	edge_replay *r = *rp;
	size_t sz = edge_rp_size(len);
	edge_rp_ent *e;

	if (len > UINT32_MAX)
		return HW_EFULL;
	if (r != NULL && (r->live >= max_entries || r->bytes + len > max_bytes))
		return HW_EFULL;
	if (r == NULL && (max_entries == 0 || len > max_bytes))
		return HW_EFULL;
	if (r == NULL) {
		r = calloc(1, sizeof(*r));
		if (r == NULL)
			return HW_ENOMEM;
	}
	if (r->tail + sz > r->cap) {
		// Squeeze out the answered entries first; grow unless that left a
		// quarter of the buffer free, so compaction stays amortized O(1).
		edge_rp_compact(r);
		if (r->tail + sz > r->cap - r->cap / 4) {
			// Doubling, but a big packet gets just what it needs.
			size_t ncap = r->cap * 2 > EDGE_RP_MIN_CAP ? r->cap * 2 : EDGE_RP_MIN_CAP;
			uint8_t *nb;

			if (ncap < r->tail + sz)
				ncap = r->tail + sz;
			nb = realloc(r->buf, ncap);
			if (nb == NULL) {
				if (*rp == NULL)
					free(r);
				return HW_ENOMEM;
			}
			r->buf = nb;
			r->cap = ncap;
		}
	}
	e = edge_rp_at(r, r->tail);
	e->len = (uint32_t)len;
	e->id = id;
	e->answer = answer;
	e->dead = 0;
	memcpy(e + 1, pkt, len);
	r->tail += sz;
	r->live++;
	r->bytes += len;
	*rp = r;
	return HW_OK;
}

// edge_rp_drop marks the oldest live entry waiting for (answer, id) dead;
// returns 1 if there was one.
static size_t edge_rp_drop(edge_replay *r, uint8_t answer, uint16_t id)
{
	for (size_t off = r->head; off < r->tail; off += edge_rp_size(edge_rp_at(r, off)->len)) {
		edge_rp_ent *e = edge_rp_at(r, off);

		if (e->dead || e->answer != answer || e->id != id)
			continue;
		e->dead = 1;
		r->live--;
		r->bytes -= e->len;
		// Keep head on a live entry so the next search starts there.
		while (r->head < r->tail && edge_rp_at(r, r->head)->dead)
			r->head += edge_rp_size(edge_rp_at(r, r->head)->len);
		return 1;
	}
	return 0;
}

size_t edge_replay_answer(edge_replay **rp, const uint8_t *data, size_t len)
{
	edge_replay *r = *rp;
	hw_rd rd = hw_rd_of(data, len);
	size_t dropped = 0;

	if (r == NULL)
		return 0;
	while (hw_rd_left(&rd) > 0 && r->live > 0) {
		uint8_t b0, type;
		uint32_t rl;
		uint16_t id = 0;
		hw_bytes body;
		hw_rd in;

		if (edge_rp_header(&rd, &b0, &rl) != HW_OK || hw_rd_bytes(&rd, rl, &body) != HW_OK)
			break;
		type = b0 >> 4;
		switch (type) {
		case HW_MQTT_CONNACK:
			break;
		case HW_MQTT_PUBACK:
		case HW_MQTT_PUBREC:
		case HW_MQTT_PUBCOMP:
		case HW_MQTT_SUBACK:
		case HW_MQTT_UNSUBACK:
			in = hw_rd_of(body.ptr, body.len);
			if (hw_rd_u16(&in, &id) != HW_OK)
				continue;
			break;
		default:
			continue; // PUBLISH, PUBREL, DISCONNECT...: answer nothing
		}
		dropped += edge_rp_drop(r, type, id);
	}
	if (r->live == 0) {
		edge_replay_free(r);
		*rp = NULL;
	}
	return dropped;
}

size_t edge_replay_count(const edge_replay *r)
{
	return r != NULL ? r->live : 0;
}

size_t edge_replay_bytes(const edge_replay *r)
{
	return r != NULL ? r->bytes : 0;
}

int edge_replay_each(const edge_replay *r, edge_replay_fn fn, void *arg)
{
	if (r == NULL)
		return 0;
	for (size_t off = r->head; off < r->tail; off += edge_rp_size(edge_rp_at(r, off)->len)) {
		const edge_rp_ent *e = edge_rp_at(r, off);
		int rc;

		if (e->dead)
			continue;
		rc = fn(arg, (const uint8_t *)(e + 1), e->len, e->answer);
		if (rc != 0)
			return rc;
	}
	return 0;
}

void edge_replay_free(edge_replay *r)
{
	if (r == NULL)
		return;
	free(r->buf);
	free(r);
}
