// Connections: MQTT handling at the edge.
//
// Design notes:
// - States: new (waiting for CONNECT, connect timeout armed) -> forwarded
//   (CONNECT sent to the owner broker) -> accepted (the broker's accepting
//   CONNACK arrived: keepalive enforced) -> closing -> closed (lws called
//   back, or tcp.c closed the socket; on s->reap) -> freed at the end of
//   the loop pass.
// - Two transports: lws (WebSocket, TLS) and plain TCP (tcp.c, l->plain).
//   edge_conn_poke asks either to write (and to close, once c->kill).
// - A connection is never freed inside an lws callback path: edge_conn_closed
//   only unlinks it (map, wheel) and puts it on s->reap.
// - Closing is always asynchronous (lws_set_timeout kill, or a writable
//   callback returning -1 once the queue is flushed; plain TCP: at the
//   pass's end, edge_conn_flush_dirty), so the code that decides to close
//   can keep using the connection until it returns.
// - ConnGone is sent at most once, from edge_conn_closed, for connections
//   whose CONNECT was forwarded, to the owner of that moment if it is live,
//   unless the client sent DISCONNECT, the broker asked for the close, or
//   the connection could not be re-homed (EDGE_CAUSE_REHOME).
// - Owner: set at CONNECT from the slot's owner in the current view and
//   changed only by a re-home (forward.c, view.c); broker items are checked
//   against it before they reach edge_conn_write / edge_conn_broker_close.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/slot.h"
#include "impl.h"
#include "mqtt/codec.h"

static const uint8_t edge_conn_pingresp[2] = { 0xD0, 0x00 };

// A flushing close gives a client that does not read this long.
#define EDGE_CLOSE_SEND_MS 5000u

// Idle memory per connection is what the bench measures: a connection must
// stay in glibc's 128-byte chunk (120 usable bytes on 64-bit).
_Static_assert(sizeof(void *) != 8 || sizeof(edge_conn) <= 120,
    "edge_conn outgrew its 128-byte malloc chunk");

static uint64_t edge_conn_mix(uint64_t k)
{
	k ^= k >> 30;
	k *= UINT64_C(0xbf58476d1ce4e5b9);
	k ^= k >> 27;
	k *= UINT64_C(0x94d049bb133111eb);
	k ^= k >> 31;
	return k;
}

edge_conn *edge_conn_open(edge_server *s, edge_listener *l, struct lws *wsi)
{
	edge_conn *c;
	uint64_t now = hw_clock_mono_ms();

	if (s->draining || s->nconns >= s->cfg->edge.max_connections)
		return NULL;
	c = calloc(1, l->plain ? sizeof(edge_tcp_conn) : sizeof(edge_conn));
	if (c == NULL)
		return NULL;
	c->wsi = wsi;
	c->open = 1;
	c->l = l;
	c->id = ++s->next_id;
	c->last_rx_ms = now;
	c->owner = EDGE_OWNER_NONE;
	if (edge_map_put(&s->conns, c->id, c) != HW_OK) {
		free(c);
		return NULL;
	}
	s->nconns++;
	hw_gauge_add(l->conns, 1);
	hw_counter_inc(l->accepted);
	edge_wheel_add(&s->wheel, &c->timer, now + s->cfg->edge.connect_timeout_ms);
	return c;
}

static void edge_conn_mark_dirty(edge_server *s, edge_conn *c);

// edge_conn_poke gets c's queue written (and c closed once c->kill, or
// once the queue is empty with flush_close): lws's writable callback, or
// for plain TCP the end of the pass.
static void edge_conn_poke(edge_conn *c)
{
	if (!c->l->plain) {
		lws_callback_on_writable(c->wsi);
		return;
	}
	edge_conn_mark_dirty(c->l->s, c);
	edge_server_kick(c->l->s);
}

// edge_conn_kill closes c at the next chance, writing nothing more.
static void edge_conn_kill(edge_conn *c)
{
	c->kill = 1;
	if (!c->l->plain) {
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		edge_server_lws_timeout(c->l->s);
	} else {
		edge_conn_poke(c);
	}
}

void edge_conn_send(edge_conn *c, const uint8_t *p, size_t n)
{
	if (!c->open || c->kill)
		return;
	if (edge_wq_push_force(&c->wq, p, n, LWS_PRE) != HW_OK) {
		edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
		return;
	}
	edge_conn_poke(c);
}

void edge_conn_close(edge_conn *c, edge_cause cause, bool flush)
{
	if (!c->open)
		return;
	if (c->closing) {
		// A flushing close may be cut short; never the other way round.
		if (!flush && !c->kill)
			edge_conn_kill(c);
		return;
	}
	c->closing = 1;
	c->cause = (uint8_t)cause;
	if (cause == EDGE_CAUSE_CLIENT || cause == EDGE_CAUSE_BROKER)
		c->no_gone = 1;
	edge_wheel_del(&c->l->s->wheel, &c->timer);
	// A WebSocket closed by the shutdown always goes through the writable
	// callback, which sets the close frame's status (1001).
	if (flush && (c->wq.bytes > 0 || (c->l->ws && cause == EDGE_CAUSE_SHUTDOWN))) {
		c->flush_close = 1;
		edge_conn_poke(c);
		// A client that stops reading cannot hold the socket open.
		if (!c->l->plain) {
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
			edge_server_lws_timeout(c->l->s);
		} else {
			edge_wheel_add(&c->l->s->wheel, &c->timer,
			    hw_clock_mono_ms() + EDGE_CLOSE_SEND_MS);
		}
	} else {
		edge_conn_kill(c);
	}
}

// edge_conn_disconnect closes c, telling an accepted MQTT 5 client why
// with a DISCONNECT carrying `reason` first.
static void edge_conn_disconnect(edge_conn *c, edge_cause cause, uint8_t reason,
    hw_bytes server_ref)
{
	if (c->accepted && c->version == HW_MQTT_V5 && !c->closing) {
		hw_buf b = { 0 };

		if (hw_mqtt_encode_disconnect(reason, server_ref, HW_MQTT_V5, &b) == HW_OK)
			edge_conn_send(c, b.ptr, b.len);
		hw_buf_fini(&b);
		edge_conn_close(c, cause, true);
		return;
	}
	edge_conn_close(c, cause, false);
}

static void edge_conn_perr(edge_conn *c, int which)
{
	hw_counter_inc(c->l->s->st.perr[which]);
}

// edge_conn_peek_level reads the protocol level of a CONNECT that failed to
// decode, or returns 0 when even that is unreadable.
static uint8_t edge_conn_peek_level(const uint8_t *pkt, size_t len)
{
	hw_rd rd = hw_rd_of(pkt, len);
	uint8_t b, level;
	uint32_t rl;
	uint16_t nlen;
	hw_bytes name;

	if (hw_rd_u8(&rd, &b) != HW_OK || hw_mqtt_varint_read(&rd, &rl) != HW_OK ||
	    hw_rd_u16(&rd, &nlen) != HW_OK || hw_rd_bytes(&rd, nlen, &name) != HW_OK ||
	    hw_rd_u8(&rd, &level) != HW_OK)
		return 0;
	if (!hw_bytes_eq(name, HW_BYTES_STR("MQTT")))
		return 0;
	return level;
}

static void edge_conn_connack(edge_conn *c, uint8_t version, uint8_t reason)
{
	if (version == HW_MQTT_V5) {
		uint8_t f[5] = { 0x20, 0x03, 0x00, reason, 0x00 };

		edge_conn_send(c, f, sizeof(f));
	} else {
		uint8_t f[4] = { 0x20, 0x02, 0x00, reason };

		edge_conn_send(c, f, sizeof(f));
	}
}

void edge_conn_peer(edge_conn *c, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0, fd;

	out[0] = '\0';
	if (!c->open)
		return;
	fd = c->l->plain ? ((edge_tcp_conn *)c)->io.fd : lws_get_socket_fd(c->wsi);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		port = ntohs(a->sin_port);
		snprintf(out, n, "%s:%d", ip, port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		port = ntohs(a->sin6_port);
		// An IPv4 client of a dual-stack listener reads as plain IPv4.
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], ip, sizeof(ip));
			snprintf(out, n, "%s:%d", ip, port);
		} else {
			inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
			snprintf(out, n, "[%s]:%d", ip, port);
		}
	}
}

static int edge_conn_connect(edge_conn *c, const uint8_t *pkt, size_t len)
{
	edge_server *s = c->l->s;
	hw_mqtt_packet p;
	uint8_t reason = HW_RC_MALFORMED;
	hw_err err;
	char assigned[24];
	const char *aid = NULL;
	hw_bytes cid;
	uint16_t owner;
	uint64_t now;

	memset(&p, 0, sizeof(p));
	err = hw_mqtt_decode(pkt, len, 0, true, &p, &reason);
	if (err == HW_EUNSUPPORTED) {
		hw_log_debug("EDGE-CONNECT", "conn=%llu unsupported protocol level %u",
		    (unsigned long long)c->id, p.u.connect.version);
		edge_conn_connack(c, HW_MQTT_V311, HW_RC311_BAD_VERSION);
		edge_conn_close(c, EDGE_CAUSE_PROTOCOL, true);
		return 1;
	}
	if (err != HW_OK) {
		uint8_t level = edge_conn_peek_level(pkt, len);

		edge_conn_perr(c, EDGE_PERR_MALFORMED);
		hw_log_debug("EDGE-CONNECT", "conn=%llu bad CONNECT: %s (reason 0x%02x)",
		    (unsigned long long)c->id, hw_strerror(err), reason);
		if (level == HW_MQTT_V5) {
			edge_conn_connack(c, HW_MQTT_V5, reason < 0x80 ? HW_RC_MALFORMED : reason);
			edge_conn_close(c, EDGE_CAUSE_PROTOCOL, true);
		} else {
			edge_conn_close(c, EDGE_CAUSE_PROTOCOL, false);
		}
		return 1;
	}

	c->version = p.u.connect.version;
	cid = p.u.connect.client_id;
	if (cid.len == 0) {
		c->assigned_id = 1;
		edge_conn_assigned_id(c, assigned);
		aid = assigned;
		cid = hw_bytes_of_cstr(assigned);
	}
	c->slot = hw_slot_of(cid);
	owner = s->slot_owner[c->slot % HW_SLOTS];
	if (owner == EDGE_OWNER_NONE) {
		edge_conn_connack(c, c->version, c->version == HW_MQTT_V5 ?
		    HW_RC_SERVER_UNAVAILABLE : HW_RC311_SERVER_UNAVAILABLE);
		edge_conn_close(c, EDGE_CAUSE_BROKER, true);
		return 1;
	}
	// Kept for ConnResume should the slot move (a client id is at most
	// 65535 bytes; the edge-assigned one is derived again instead).
	if (aid == NULL) {
		c->cid = malloc(2 + cid.len);
		if (c->cid == NULL) {
			edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
			return 1;
		}
		c->cid[0] = (uint8_t)(cid.len >> 8);
		c->cid[1] = (uint8_t)cid.len;
		memcpy(c->cid + 2, cid.ptr, cid.len);
	}
	c->owner = owner;
	if (edge_forward_packet(s, c, pkt, len, true, aid) != HW_OK) {
		edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
		return 1;
	}
	c->forwarded = 1;
	hw_log_debug("EDGE-CONNECT", "conn=%llu listener=%s v=%u client=%.*s slot=%u broker=%s",
	    (unsigned long long)c->id, c->l->name, c->version, (int)cid.len,
	    (const char *)cid.ptr, c->slot, s->peers[owner].url);
	// Until the broker accepts, the session gets the CONNECT timeout plus
	// the keepalive the client asked for; then the broker's keepalive rules.
	now = hw_clock_mono_ms();
	edge_wheel_add(&s->wheel, &c->timer, now + s->cfg->edge.connect_timeout_ms +
	    (uint64_t)p.u.connect.keepalive * 1500u);
	return 0;
}

// edge_conn_packet handles one framed packet; returns non-zero to stop
// reading (the connection is closing).
static int edge_conn_packet(void *arg, const uint8_t *pkt, size_t len)
{
	edge_conn *c = arg;
	edge_server *s = c->l->s;
	uint8_t type = pkt[0] >> 4;

	if (c->closing)
		return 1;
	hw_counter_inc(s->st.packets_rx);
	if (!c->forwarded) {
		if (type != HW_MQTT_CONNECT) {
			edge_conn_perr(c, EDGE_PERR_UNEXPECTED);
			edge_conn_close(c, EDGE_CAUSE_PROTOCOL, false);
			return 1;
		}
		return edge_conn_connect(c, pkt, len);
	}
	switch (type) {
	case HW_MQTT_CONNECT:
		edge_conn_perr(c, EDGE_PERR_UNEXPECTED);
		edge_conn_disconnect(c, EDGE_CAUSE_PROTOCOL, HW_RC_PROTOCOL_ERROR, HW_BYTES_NULL);
		return 1;
	case HW_MQTT_PINGREQ:
		if (len != 2 || pkt[0] != 0xC0) {
			edge_conn_perr(c, EDGE_PERR_MALFORMED);
			edge_conn_disconnect(c, EDGE_CAUSE_PROTOCOL, HW_RC_MALFORMED, HW_BYTES_NULL);
			return 1;
		}
		// PINGRESP must not overtake the CONNACK.
		if (c->accepted)
			edge_conn_send(c, edge_conn_pingresp, sizeof(edge_conn_pingresp));
		else
			c->ping_pending = 1;
		return 0;
	case HW_MQTT_DISCONNECT:
		if (edge_forward_packet(s, c, pkt, len, false, NULL) != HW_OK) {
			edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
			return 1;
		}
		edge_conn_close(c, EDGE_CAUSE_CLIENT, false);
		return 1;
	default:
		if (edge_forward_packet(s, c, pkt, len, false, NULL) != HW_OK) {
			edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
			return 1;
		}
		return 0;
	}
}

int edge_conn_rx(edge_conn *c, const uint8_t *in, size_t n)
{
	edge_server *s = c->l->s;
	hw_err err;

	if (c->closing)
		return 0;
	hw_counter_add(s->st.bytes_rx, n);
	c->last_rx_ms = hw_clock_mono_ms();
	err = edge_rx_feed(&c->rx, in, n, s->cfg->edge.max_packet_size, edge_conn_packet, c);
	switch (err) {
	case HW_OK:
	case HW_ECLOSED:
		break;
	case HW_ETOOBIG:
		edge_rx_fini(&c->rx);
		edge_conn_perr(c, EDGE_PERR_TOO_LARGE);
		edge_conn_disconnect(c, EDGE_CAUSE_PROTOCOL, HW_RC_PACKET_TOO_LARGE, HW_BYTES_NULL);
		break;
	case HW_EMALFORMED:
		edge_rx_fini(&c->rx);
		edge_conn_perr(c, EDGE_PERR_MALFORMED);
		edge_conn_disconnect(c, EDGE_CAUSE_PROTOCOL, HW_RC_MALFORMED, HW_BYTES_NULL);
		break;
	default:
		edge_rx_fini(&c->rx);
		edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
		break;
	}
	if (c->closing)
		edge_rx_fini(&c->rx);
	return 0;
}

int edge_conn_writable(edge_conn *c)
{
	edge_server *s = c->l->s;
	uint8_t *p;
	size_t n;
	int m;

	if (c->kill)
		return -1;
	n = edge_wq_peek(&c->wq, s->scratch, s->scratch_cap, LWS_PRE, &p);
	if (n > 0) {
		m = lws_write(c->wsi, p, n, c->l->ws ? LWS_WRITE_BINARY : LWS_WRITE_RAW);
		if (m < 0) {
			if (!c->closing) {
				c->closing = 1;
				c->cause = EDGE_CAUSE_NETWORK;
			}
			return -1;
		}
		edge_wq_pop(&c->wq, n);
		hw_counter_add(s->st.bytes_tx, n);
		// More to write, or a close waiting for lws to drain what it holds:
		// lws calls back only once its own buffer is empty.
		if (c->wq.bytes > 0 || c->flush_close)
			lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (!c->flush_close)
		return 0;
	if (c->l->ws && c->cause == EDGE_CAUSE_SHUTDOWN)
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
	return -1;
}

void edge_conn_closed(edge_conn *c)
{
	edge_server *s = c->l->s;
	edge_cause cause = c->closing ? (edge_cause)c->cause : EDGE_CAUSE_NETWORK;

	if (c->forwarded && !c->no_gone)
		edge_forward_gone(s, c, cause);
	// Frees c->cid, which shares its place with reap_next.
	edge_forward_conn_closed(s, c);
	hw_counter_inc(s->st.closed[cause]);
	edge_wheel_del(&s->wheel, &c->timer);
	edge_map_del(&s->conns, c->id);
	edge_rx_fini(&c->rx);
	edge_wq_clear(&c->wq);
	hw_gauge_add(c->l->conns, -1);
	s->nconns--;
	if (c->dirty) {
		// Not left behind in the list: c may be freed before it is read.
		for (size_t i = 0; i < s->ndirty; i++)
			if (s->dirty[i] == c)
				s->dirty[i] = NULL;
		c->dirty = 0;
	}
	c->wsi = NULL;
	c->open = 0;
	c->closing = 1;
	c->reap_next = s->reap;
	s->reap = c;
	hw_log_debug("EDGE-CLOSE", "conn=%llu cause=%d", (unsigned long long)c->id, (int)cause);
	edge_server_kick(s);
	edge_server_conn_gone(s);
}

void edge_conn_reap(edge_server *s)
{
	while (s->reap != NULL) {
		edge_conn *c = s->reap;

		s->reap = c->reap_next;
		free(c);
	}
}

static void edge_conn_accept(edge_conn *c, const edge_connwrite *w)
{
	edge_server *s = c->l->s;

	c->accepted = 1;
	if (w->version != 0)
		c->version = (uint8_t)w->version;
	c->keepalive = w->keepalive > 65535 ? 65535 : (uint16_t)w->keepalive;
	if (c->keepalive != 0)
		edge_wheel_add(&s->wheel, &c->timer,
		    c->last_rx_ms + (uint64_t)c->keepalive * 1500u);
	else
		edge_wheel_del(&s->wheel, &c->timer);
}

// Writes from brokers (design note): a frame for a plain TCP connection is
// not written at once nor through a writable callback (lws's cost two
// epoll_ctl calls and a loop round per write: 24,000 epoll_ctl/s at 12,000
// writes/s, strace on the QoS 1 fan-in). The connection goes on s->dirty
// instead, and at the end of the pass edge_conn_flush_dirty writes each
// one's queue with one send(2), coalesced (tcp.c keeps what the socket
// does not take and waits for POLLOUT). An lws connection (WebSocket or
// TLS: lws frames or encrypts) takes lws's writable callback.
static void edge_conn_mark_dirty(edge_server *s, edge_conn *c)
{
	if (!c->l->plain) {
		lws_callback_on_writable(c->wsi);
		return;
	}
	if (c->dirty)
		return;
	if (s->ndirty == s->dirty_cap) {
		size_t      cap = s->dirty_cap ? s->dirty_cap * 2 : 64;
		edge_conn **d = realloc(s->dirty, cap * sizeof(*d));

		if (d == NULL) {
			edge_tcp_send(s, c); // no list: write now
			return;
		}
		s->dirty = d;
		s->dirty_cap = cap;
	}
	c->dirty = 1;
	s->dirty[s->ndirty++] = c;
}

void edge_conn_flush_dirty(edge_server *s)
{
	// Indexes, not a saved pointer: a close may mark others (and grow it).
	for (size_t i = 0; i < s->ndirty; i++) {
		edge_conn *c = s->dirty[i];

		if (c == NULL)
			continue; // closed meanwhile
		c->dirty = 0;
		edge_tcp_send(s, c);
	}
	s->ndirty = 0;
}

void edge_conn_write(edge_server *s, edge_conn *c, const edge_connwrite *w)
{
	edge_wq_verdict v;

	if (c->closing || !c->open)
		return;
	// Answers drop their packets from the replay log (a no-op unless one
	// is waiting, which the flag tells without a lookup).
	if (c->replay)
		edge_forward_answered(s, c, w->data.data, w->data.len);
	if (w->accepted && !c->accepted) {
		edge_conn_accept(c, w);
		edge_conn_send(c, w->data.data, w->data.len);
		if (c->ping_pending) {
			c->ping_pending = 0;
			edge_conn_send(c, edge_conn_pingresp, sizeof(edge_conn_pingresp));
		}
		return;
	}
	if (w->data.len == 0)
		return;
	if (edge_wq_push(&c->wq, w->data.data, w->data.len, w->droppable,
	    s->cfg->edge.write_queue_bytes, LWS_PRE, &v) != HW_OK) {
		edge_conn_close(c, EDGE_CAUSE_NETWORK, false);
		return;
	}
	switch (v) {
	case EDGE_WQ_ACCEPT:
		edge_conn_mark_dirty(s, c);
		break;
	case EDGE_WQ_DROP:
		hw_counter_inc(s->st.dropped_qos0);
		break;
	case EDGE_WQ_OVERFLOW:
		hw_counter_inc(s->st.slow);
		hw_log_debug("EDGE-SLOW", "conn=%llu write queue over %u bytes",
		    (unsigned long long)c->id, s->cfg->edge.write_queue_bytes);
		edge_wq_clear(&c->wq);
		edge_conn_close(c, EDGE_CAUSE_SLOW_CONSUMER, false);
		break;
	}
}

void edge_conn_broker_close(edge_server *s, edge_conn *c, const edge_connclose *cl)
{
	(void)s;
	if (!c->open)
		return;
	// The broker has forgotten the connection: no ConnGone, whatever else
	// was already under way.
	c->no_gone = 1;
	if (c->closing)
		return;
	edge_conn_send(c, cl->data.data, cl->data.len);
	edge_conn_close(c, EDGE_CAUSE_BROKER, true);
}

void edge_conn_drop(edge_conn *c, uint8_t reason)
{
	c->no_gone = 1;
	edge_conn_disconnect(c, EDGE_CAUSE_REHOME, reason, HW_BYTES_NULL);
}

void edge_conn_assigned_id(const edge_conn *c, char *out)
{
	snprintf(out, 24, "hw-%016llx",
	    (unsigned long long)edge_conn_mix(c->l->s->id_seed ^ c->id));
}

void edge_conn_shutdown(edge_conn *c)
{
	const char *ref = c->l->s->cfg->edge.server_reference;

	if (c->closing || !c->open)
		return;
	// Queued behind whatever is already waiting (PUBACKs, messages), so
	// the client gets those first.
	if (c->accepted && c->version == HW_MQTT_V5) {
		hw_buf b = { 0 };
		hw_err err;

		if (ref != NULL && ref[0] != '\0')
			err = hw_mqtt_encode_disconnect(HW_RC_USE_ANOTHER_SERVER,
			    hw_bytes_of_cstr(ref), HW_MQTT_V5, &b);
		else
			err = hw_mqtt_encode_disconnect(HW_RC_SERVER_SHUTTING_DOWN, HW_BYTES_NULL,
			    HW_MQTT_V5, &b);
		if (err == HW_OK)
			edge_conn_send(c, b.ptr, b.len);
		hw_buf_fini(&b);
		if (c->closing)
			return; // out of memory: already being killed
	}
	edge_conn_close(c, EDGE_CAUSE_SHUTDOWN, true);
}

void edge_conn_abandon(edge_conn *c)
{
	if (c->closing || !c->open)
		return;
	c->closing = 1;
	c->cause = EDGE_CAUSE_SHUTDOWN;
	edge_wheel_del(&c->l->s->wheel, &c->timer);
}

void edge_conn_timer(void *arg, edge_wheel_node *node)
{
	edge_server *s = arg;
	edge_conn *c = (edge_conn *)((char *)node - offsetof(edge_conn, timer));
	uint64_t now = hw_clock_mono_ms();

	if (!c->open)
		return;
	if (c->closing) {
		// A plain TCP client that did not read what a flushing close
		// wrote in EDGE_CLOSE_SEND_MS (lws has its own timeout).
		if (c->l->plain && !c->kill)
			edge_conn_kill(c);
		return;
	}
	if (!c->forwarded) {
		edge_conn_perr(c, EDGE_PERR_CONNECT_TIMEOUT);
		edge_conn_close(c, EDGE_CAUSE_PROTOCOL, false);
		return;
	}
	if (!c->accepted) {
		// The broker never answered the CONNECT.
		edge_conn_perr(c, EDGE_PERR_CONNECT_TIMEOUT);
		edge_conn_close(c, EDGE_CAUSE_KEEPALIVE, false);
		return;
	}
	if (c->keepalive == 0)
		return;
	{
		uint64_t due = c->last_rx_ms + (uint64_t)c->keepalive * 1500u;

		if (now < due) {
			edge_wheel_add(&s->wheel, &c->timer, due);
			return;
		}
	}
	hw_counter_inc(s->st.ka_timeouts);
	hw_log_debug("EDGE-KEEPALIVE", "conn=%llu keepalive %us expired",
	    (unsigned long long)c->id, c->keepalive);
	edge_conn_disconnect(c, EDGE_CAUSE_KEEPALIVE, HW_RC_KEEPALIVE_TIMEOUT, HW_BYTES_NULL);
}
