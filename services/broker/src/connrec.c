// Connection records: what a broker that takes over a slot needs to carry
// on a live connection without a second CONNECT (docs/cluster.md).
//
// Design notes:
// - Written at the CONNACK that accepted a session (conn_put, fenced like
//   the session's other writes), removed when the connection ends; read by
//   ConnResume (resume.c). Not written to a local_only store (memory):
//   no other broker could read it there.
// - The CONNECT is kept re-encoded WITHOUT its password: the identity the
//   authentication chain produced is stored next to it, so the resuming
//   broker never authenticates again (a JWT may have expired since) and no
//   credential sits in the store.
// - The identity is read through the auth module's internals (auth_impl.h):
//   auth.h has no encoder, and its per-client rules are kept compiled only.
//   An identity that carried per-client rules is flagged and NOT resumed
//   (resume.c closes the connection, the client reconnects and
//   authenticates): resuming it without its rules could widen its rights.
//
// Layout (integers big endian): u8 format (1), u8 flags (BRK_CONNREC_*),
// u16 keepalive granted, u32 session expiry granted, u32 n + the CONNECT,
// then with BRK_CONNREC_IDENTITY: user (u32 n + bytes, n = 0xFFFFFFFF for
// none), u32 attribute count, per attribute name and value (u32 n + bytes).
#include <stdlib.h>
#include <string.h>

#include "auth_impl.h"
#include "impl.h"

#define BRK_CONNREC_FORMAT 1
#define BRK_CONNREC_NONE 0xFFFFFFFFu

static hw_err brk_connrec_str(hw_buf *b, const char *s)
{
	hw_err err;

	if (s == NULL)
		return hw_buf_append_u32be(b, BRK_CONNREC_NONE);
	if ((err = hw_buf_append_u32be(b, (uint32_t)strlen(s))) != HW_OK)
		return err;
	return hw_buf_append(b, s, strlen(s));
}

hw_err brk_connrec_encode(hw_buf *out, const hw_mqtt_connect *cn, uint8_t flags,
    uint16_t keepalive, uint32_t expiry, const brk_identity *id)
{
	hw_mqtt_packet p = { .type = HW_MQTT_CONNECT };
	hw_buf pkt = { 0 };
	hw_err err;

	p.u.connect = *cn;
	p.u.connect.has_password = false;
	p.u.connect.password = HW_BYTES_NULL;
	if ((err = hw_mqtt_encode(&p, cn->version, &pkt)) != HW_OK)
		goto done;
	if (id != NULL)
		flags |= BRK_CONNREC_IDENTITY;
	if (id != NULL && id->rules.n != 0)
		flags |= BRK_CONNREC_RULES;
	if ((err = hw_buf_append_u8(out, BRK_CONNREC_FORMAT)) != HW_OK ||
	    (err = hw_buf_append_u8(out, flags)) != HW_OK ||
	    (err = hw_buf_append_u16be(out, keepalive)) != HW_OK ||
	    (err = hw_buf_append_u32be(out, expiry)) != HW_OK ||
	    (err = hw_buf_append_u32be(out, (uint32_t)pkt.len)) != HW_OK ||
	    (err = hw_buf_append(out, pkt.ptr, pkt.len)) != HW_OK)
		goto done;
	if (id == NULL)
		goto done;
	if ((err = brk_connrec_str(out, id->user)) != HW_OK ||
	    (err = hw_buf_append_u32be(out, (uint32_t)id->n_attrs)) != HW_OK)
		goto done;
	for (size_t i = 0; i < id->n_attrs; i++)
		if ((err = brk_connrec_str(out, id->attr_names[i])) != HW_OK ||
		    (err = brk_connrec_str(out, id->attr_values[i])) != HW_OK)
			goto done;
done:
	hw_buf_fini(&pkt);
	return err;
}

// brk_connrec_rd_str reads a string into a new heap copy (*out NULL for none).
static hw_err brk_connrec_rd_str(hw_rd *rd, char **out)
{
	uint32_t n;
	hw_bytes v;

	*out = NULL;
	if (hw_rd_u32(rd, &n) != HW_OK)
		return HW_EMALFORMED;
	if (n == BRK_CONNREC_NONE)
		return HW_OK;
	if (hw_rd_bytes(rd, n, &v) != HW_OK)
		return HW_EMALFORMED;
	if ((*out = malloc((size_t)n + 1)) == NULL)
		return HW_ENOMEM;
	memcpy(*out, v.ptr, n);
	(*out)[n] = 0;
	return HW_OK;
}

static hw_err brk_connrec_identity(hw_rd *rd, const char *cid, brk_identity **out)
{
	char *user = NULL, **attrs = NULL;
	uint32_t n = 0;
	hw_err err;

	if ((err = brk_connrec_rd_str(rd, &user)) != HW_OK)
		goto done;
	err = HW_EMALFORMED;
	if (hw_rd_u32(rd, &n) != HW_OK || n > hw_rd_left(rd) / 8)
		goto done;
	err = HW_ENOMEM;
	if ((attrs = calloc(2 * (size_t)n + 1, sizeof(*attrs))) == NULL)
		goto done;
	for (uint32_t i = 0; i < 2 * n; i++) {
		if ((err = brk_connrec_rd_str(rd, &attrs[i])) != HW_OK)
			goto done;
		if (attrs[i] == NULL) {
			err = HW_EMALFORMED;
			goto done;
		}
	}
	err = brk_identity_alloc(out, user, cid, (const char *const *)attrs, NULL, NULL);
done:
	for (uint32_t i = 0; attrs != NULL && i < 2 * n; i++)
		free(attrs[i]);
	free(attrs);
	free(user);
	return err;
}

hw_err brk_connrec_decode(const uint8_t *p, size_t n, const char *cid, brk_connrec *out)
{
	hw_rd rd = hw_rd_of(p, n);
	uint8_t fmt, reason;
	uint32_t len;
	hw_bytes pkt;

	memset(out, 0, sizeof(*out));
	if (hw_rd_u8(&rd, &fmt) != HW_OK || fmt != BRK_CONNREC_FORMAT ||
	    hw_rd_u8(&rd, &out->flags) != HW_OK || hw_rd_u16(&rd, &out->keepalive) != HW_OK ||
	    hw_rd_u32(&rd, &out->expiry) != HW_OK || hw_rd_u32(&rd, &len) != HW_OK ||
	    hw_rd_bytes(&rd, len, &pkt) != HW_OK)
		return HW_EMALFORMED;
	// The packet's views point into p, which the caller keeps.
	if (hw_mqtt_decode(pkt.ptr, pkt.len, HW_MQTT_V311, true, &out->pkt, &reason) != HW_OK ||
	    out->pkt.type != HW_MQTT_CONNECT)
		return HW_EMALFORMED;
	if (out->flags & BRK_CONNREC_IDENTITY)
		return brk_connrec_identity(&rd, cid, &out->identity);
	return HW_OK;
}

void brk_connrec_fini(brk_connrec *r)
{
	brk_identity_unref(r->identity);
	r->identity = NULL;
}
