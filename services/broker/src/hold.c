// Holding a connection's packets while the auth module decides.
//
// Design notes:
// - A CONNECT starts brk_auth_connect and waits in w->authing (by
//   connection) as a brk_connauth; a SUBSCRIBE or PUBLISH whose ACL check
//   answered PENDING (a delegated rule asked its callback) waits as the
//   session's brk_hold. Either way, every later packet of that connection
//   is copied into the wait's queue, so a client's packets are handled in
//   the order sent and its acks go out in order.
// - The auth module answers through a brk_auth_ticket allocated before the
//   check (the worker keeps one spare, so a PUBLISH costs no allocation
//   when nothing is pending). The callback, on whatever thread, only fills
//   in the answer and pushes the ticket to the worker's mailbox.
// - On the worker, a ticket finds its wait by connection key and serial;
//   a wait that ended meanwhile (connection closed, taken over, broker
//   stopping) does not match and the answer is dropped (its identity
//   released with the ticket). A completed wait re-runs the packet's
//   handler with the verdicts (brk_ctx.authed / .resumed), then replays the
//   held packets; a replayed packet that waits again keeps the rest
//   queued behind it.
// - Bounds: a connection holding more than BRK_HOLD_MAX_PACKETS packets or
//   BRK_HOLD_MAX_BYTES bytes is closed (v5: DISCONNECT 0x97).
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "impl.h"

brk_auth_ticket *brk_hold_ticket(brk_worker *w, const uint8_t key[12], uint64_t serial)
{
	brk_auth_ticket *t = w->spare_ticket;

	if (t != NULL)
		w->spare_ticket = NULL;
	else if ((t = malloc(sizeof(*t))) == NULL)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->wk.kind = BRK_WORK_AUTH;
	t->w = w;
	t->serial = serial;
	memcpy(t->key, key, sizeof(t->key));
	return t;
}

void brk_hold_ticket_keep(brk_worker *w, brk_auth_ticket *t)
{
	if (t == NULL)
		return;
	if (w->spare_ticket == NULL)
		w->spare_ticket = t;
	else
		free(t);
}

void brk_hold_ticket_fini(brk_auth_ticket *t)
{
	brk_identity_unref(t->res.identity);
	t->res.identity = NULL;
}

void brk_hold_connect_fn(void *arg, brk_auth_connect_result *res)
{
	brk_auth_ticket *t = arg;

	t->res = *res;
	brk_worker_push(t->w, &t->wk, &t->wk);
}

void brk_hold_acl_fn(void *arg, brk_acl_result res)
{
	brk_auth_ticket *t = arg;

	t->acl = res;
	brk_worker_push(t->w, &t->wk, &t->wk);
}

void brk_hold_clear(brk_heldq *q)
{
	brk_held *p = q->head, *n;

	for (; p != NULL; p = n) {
		n = p->next;
		free(p);
	}
	memset(q, 0, sizeof(*q));
}

static bool brk_hold_push(brk_heldq *q, const uint8_t *data, size_t len)
{
	brk_held *p;

	if (q->n >= BRK_HOLD_MAX_PACKETS || q->bytes + len > BRK_HOLD_MAX_BYTES)
		return false;
	if ((p = malloc(sizeof(*p) + len)) == NULL)
		return false;
	p->next = NULL;
	p->len = len;
	memcpy(p->data, data, len);
	if (q->tail != NULL)
		q->tail->next = p;
	else
		q->head = p;
	q->tail = p;
	q->n++;
	q->bytes += len;
	return true;
}

void brk_connauth_free(brk_connauth *ca)
{
	if (ca == NULL)
		return;
	brk_identity_unref(ca->res.identity);
	brk_hold_clear(&ca->q);
	free(ca->cid);
	free(ca);
}

static void brk_hold_free(brk_hold *h)
{
	if (h == NULL)
		return;
	brk_hold_clear(&h->q);
	free(h->rc);
	free(h);
}

void brk_hold_drop(brk_session *s)
{
	brk_hold_free(s->hold);
	s->hold = NULL;
}

bool brk_hold_take(brk_worker *w, brk_session *s, brk_edge *e, const brk_connpacket *cp)
{
	uint8_t key[12];
	hw_bytes k = brk_conn_key(key, e, cp->conn);
	brk_connauth *ca = NULL;
	brk_heldq *q;

	if (s != NULL) {
		if (s->hold == NULL)
			return false;
		q = &s->hold->q;
	} else if ((ca = brk_map_get(&w->authing, k)) != NULL) {
		q = &ca->q;
	} else {
		return false;
	}
	if (brk_hold_push(q, cp->data.data, cp->data.len))
		return true;
	// A client that keeps sending while its decision is pending.
	if (s != NULL) {
		brk_protocol_error(w, s, HW_RC_QUOTA_EXCEEDED);
	} else {
		brk_map_del(&w->authing, k);
		brk_out_close(w, e, cp->conn, NULL);
		brk_connauth_free(ca);
	}
	return true;
}

hw_err brk_hold_start(brk_ctx *c, uint64_t serial, const uint8_t *rc, uint32_t n,
    uint32_t waiting)
{
	brk_hold *h = calloc(1, sizeof(*h) + c->cp->data.len);

	if (h == NULL)
		return HW_ENOMEM;
	if ((h->rc = malloc(n ? n : 1)) == NULL) {
		free(h);
		return HW_ENOMEM;
	}
	memcpy(h->rc, rc, n);
	h->serial = serial;
	h->type = (uint8_t)(c->cp->data.data[0] >> 4);
	h->waiting = waiting;
	h->n = n;
	h->len = c->cp->data.len;
	memcpy(h->data, c->cp->data.data, h->len);
	brk_hold_drop(c->s); // none expected: packets are held while one waits
	c->s->hold = h;
	return HW_OK;
}

void brk_hold_replay(brk_worker *w, brk_edge *e, uint64_t conn, brk_heldq *q)
{
	uint8_t key[12];
	brk_held *p;

	while ((p = q->head) != NULL) {
		brk_session *s = brk_set_get(&w->conns, brk_conn_key(key, e, conn));
		Hawser__Internal__V1__ConnPacket cp = HAWSER__INTERNAL__V1__CONN_PACKET__INIT;

		if (s == NULL)
			break; // the connection ended: the rest is moot
		if (s->hold != NULL) {
			// A replayed packet waits again: the rest goes before what
			// (nothing, on this thread) arrived since.
			if (s->hold->q.head != NULL) {
				q->tail->next = s->hold->q.head;
				q->tail = s->hold->q.tail;
			}
			s->hold->q.head = q->head;
			s->hold->q.tail = q->tail;
			s->hold->q.n += q->n;
			s->hold->q.bytes += q->bytes;
			memset(q, 0, sizeof(*q));
			return;
		}
		q->head = p->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->n--;
		q->bytes -= p->len;
		cp.conn = conn;
		cp.data.data = p->data;
		cp.data.len = p->len;
		brk_worker_dispatch(w, s, e, &cp);
		free(p);
	}
	brk_hold_clear(q);
}

// brk_hold_resume re-runs the held packet of s with all its verdicts in.
static void brk_hold_resume(brk_worker *w, brk_session *s)
{
	brk_hold *h = s->hold;
	brk_edge *e = s->edge;
	uint64_t conn = s->conn;
	Hawser__Internal__V1__ConnPacket cp = HAWSER__INTERNAL__V1__CONN_PACKET__INIT;
	hw_mqtt_packet pkt;
	brk_ctx c = { .w = w, .edge = e, .cp = &cp, .s = s, .pkt = &pkt,
		.now_ms = hw_clock_mono_ms(), .resumed = h };
	uint8_t reason;
	brk_heldq q;

	// Detached first: the handler may end the connection (and drop holds).
	s->hold = NULL;
	q = h->q;
	memset(&h->q, 0, sizeof(h->q));
	cp.conn = conn;
	cp.data.data = h->data;
	cp.data.len = h->len;
	if (hw_mqtt_decode(h->data, h->len, s->version, true, &pkt, &reason) != HW_OK) {
		brk_protocol_error(w, s, reason); // it decoded before: not expected
	} else if (h->type == HW_MQTT_SUBSCRIBE) {
		brk_handle_subscribe(&c);
	} else {
		brk_handle_publish(&c);
	}
	brk_hold_free(h);
	brk_hold_replay(w, e, conn, &q);
}

void brk_hold_answer(brk_worker *w, brk_auth_ticket *t)
{
	hw_bytes k = { t->key, sizeof(t->key) };
	brk_session *s;
	brk_hold *h;

	if (t->connect) {
		brk_connauth *ca = brk_map_get(&w->authing, k);

		if (ca == NULL || ca->serial != t->serial)
			return; // the connection went away meanwhile
		brk_map_del(&w->authing, k);
		ca->res = t->res;
		t->res.identity = NULL;
		brk_connect_authed(w, ca);
		return;
	}
	s = brk_set_get(&w->conns, k);
	h = s != NULL ? s->hold : NULL;
	if (h == NULL || h->serial != t->serial || t->index >= h->n || h->rc[t->index] != BRK_HOLD_WAIT)
		return;
	// A denied PUBLISH is marked 0x87 whatever the version: its handler
	// turns that into the ack to send (3.1.1 acks it as usual).
	h->rc[t->index] = t->acl.verdict == BRK_ACL_ALLOW ? t->acl.qos :
	    h->type == HW_MQTT_SUBSCRIBE ? brk_auth_denied_code(s->version, BRK_ACL_SUBSCRIBE) :
	    HW_RC_NOT_AUTHORIZED;
	if (--h->waiting == 0)
		brk_hold_resume(w, s);
}

void brk_hold_conn_gone(brk_worker *w, brk_edge *e, uint64_t conn)
{
	uint8_t key[12];

	brk_connauth_free(brk_map_del(&w->authing, brk_conn_key(key, e, conn)));
}

static void brk_hold_free_connauth(void *arg, hw_bytes key, void *val)
{
	(void)arg;
	(void)key;
	brk_connauth_free(val);
}

void brk_hold_fini(brk_worker *w)
{
	brk_map_each(&w->authing, brk_hold_free_connauth, NULL);
	brk_map_fini(&w->authing);
	free(w->spare_ticket);
	w->spare_ticket = NULL;
}
