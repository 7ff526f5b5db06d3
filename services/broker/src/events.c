// Client lifecycle events for the router (events.h).
//
// Design notes: an event is a stack-built ClientEvent item packed by
// hw_link_send at once (the link copies it into its own Batch), so nothing
// is kept after the call and no output of the worker waits for it. The
// rate is that of CONNECT/SUBSCRIBE packets, small next to publishes, so
// one NNG message per event is affordable; it is not batched with the
// worker's other output, and may overtake publishes the worker queued
// earlier in the same drain (events and messages are separate streams).

#include "events.h"

#include <stdlib.h>
#include <string.h>

#include "auth_impl.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/slot.h"

typedef Hawser__V1__ClientEvent brk_event_pb;

bool brk_events_on(const brk_worker *w)
{
	const char *t = w->srv->cfg->router.kafka.events_topic;

	return t != NULL && t[0] != '\0' && w->srv->nrouters > 0;
}

static void brk_events_send(brk_worker *w, brk_session *s, brk_event_pb *ev)
{
	brk_server *srv = w->srv;
	uint32_t    slot = hw_slot_of((hw_bytes){ (const uint8_t *)s->client_id, s->client_id_len });
	hw_item     item = HAWSER__INTERNAL__V1__ITEM__INIT;
	hw_item    *items[1] = { &item };
	brk_dest   *d;
	const brk_edge *e = s->edge;

	ev->client_id = s->client_id;
	if (s->identity != NULL && s->identity->user != NULL)
		ev->user_id = s->identity->user;
	ev->at_us = hw_clock_unix_us();
	if (srv->cfg->node.id != NULL)
		ev->broker_id = srv->cfg->node.id;
	if (e != NULL && e->node != NULL)
		ev->edge_id = e->node;
	item.body_case = HAWSER__INTERNAL__V1__ITEM__BODY_EVENT;
	item.event = ev;
	// One router per client, the same as its publishes.
	d = brk_out_dest(w, srv->routers[slot % srv->nrouters]);
	if (d == NULL || hw_link_send(d->peer, items, 1) != HW_OK)
		hw_counter_inc(hw_metrics_counter(srv->st.reg, "hawser_broker_events_lost_total",
		    "Client lifecycle events that could not be sent to a router.", NULL, NULL));
}

void brk_events_connected(brk_worker *w, brk_session *s)
{
	brk_event_pb ev = HAWSER__V1__CLIENT_EVENT__INIT;

	if (!brk_events_on(w) || s == NULL)
		return;
	ev.kind = HAWSER__V1__CLIENT_EVENT__KIND__CONNECTED;
	brk_events_send(w, s, &ev);
}

void brk_events_disconnected(brk_worker *w, brk_session *s, const char *reason)
{
	brk_event_pb ev = HAWSER__V1__CLIENT_EVENT__INIT;

	if (!brk_events_on(w) || s == NULL || !s->connected)
		return;
	ev.kind = HAWSER__V1__CLIENT_EVENT__KIND__DISCONNECTED;
	ev.reason = (char *)reason;
	brk_events_send(w, s, &ev);
}

void brk_events_gone(brk_worker *w, brk_session *s, int cause)
{
	static const char *const names[] = {
		[HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NORMAL] = "normal",
		[HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__NETWORK] = "network",
		[HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__KEEPALIVE] = "keepalive",
		[HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__PROTOCOL] = "protocol",
		[HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SLOW_CONSUMER] = "slow_consumer",
		[HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__SHUTDOWN] = "shutdown",
		[HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__WILL_DISCONNECT] = "disconnect_with_will",
	};

	if (cause == HAWSER__INTERNAL__V1__CONN_GONE__CAUSE__MOVED)
		return;
	brk_events_disconnected(w, s, cause >= 0 && (size_t)cause < sizeof(names) / sizeof(names[0]) &&
	    names[cause] != NULL ? names[cause] : "network");
}

// brk_events_filters sends kind with the filters of c's packet whose code
// in rc is a success.
static void brk_events_filters(brk_ctx *c, const uint8_t *rc, uint32_t n, bool sub)
{
	brk_event_pb     ev = HAWSER__V1__CLIENT_EVENT__INIT;
	hw_mqtt_sub_iter it;
	hw_bytes         f;
	char           **topics;
	char            *text;
	size_t           bytes = 0, k = 0;
	uint32_t         i = 0;

	if (!brk_events_on(c->w) || c->s == NULL || n == 0)
		return;
	// One allocation: the pointer array, then the NUL-terminated filters.
	if (sub)
		hw_mqtt_sub_iter_init(&it, &c->pkt->u.subscribe, c->s->version);
	else
		hw_mqtt_unsub_iter_init(&it, &c->pkt->u.subscribe, c->s->version);
	for (i = 0; i < n && hw_mqtt_sub_next(&it, &f, NULL); i++)
		bytes += f.len + 1;
	if ((topics = malloc(n * sizeof(*topics) + bytes)) == NULL)
		return;
	text = (char *)(topics + n);
	if (sub)
		hw_mqtt_sub_iter_init(&it, &c->pkt->u.subscribe, c->s->version);
	else
		hw_mqtt_unsub_iter_init(&it, &c->pkt->u.subscribe, c->s->version);
	for (i = 0; i < n && hw_mqtt_sub_next(&it, &f, NULL); i++) {
		if (rc[i] >= 0x80 || (!sub && rc[i] != 0x00))
			continue;
		memcpy(text, f.ptr, f.len);
		text[f.len] = '\0';
		topics[k++] = text;
		text += f.len + 1;
	}
	if (k > 0) {
		ev.kind = sub ? HAWSER__V1__CLIENT_EVENT__KIND__SUBSCRIBED :
		    HAWSER__V1__CLIENT_EVENT__KIND__UNSUBSCRIBED;
		ev.n_topics = k;
		ev.topics = topics;
		brk_events_send(c->w, c->s, &ev);
	}
	free(topics);
}

void brk_events_subscribed(brk_ctx *c, const uint8_t *rc, uint32_t n)
{
	brk_events_filters(c, rc, n, true);
}

void brk_events_unsubscribed(brk_ctx *c, const uint8_t *rc, uint32_t n)
{
	brk_events_filters(c, rc, n, false);
}
