// The router tier (server.h).
//
// Design notes:
// - Threads: all processing (pipeline matching, offers, acks, timeouts,
//   sends) happens under s->pass_mu, so the pending map, the outbox and the
//   sinks need no other lock; s->mtx guards only the queue, the views,
//   `stopping`, `woken` and `sleep_until`. The processing thread takes the
//   queue, then pass_mu for its whole round.
// - Inline passes (direct mode): when a batch arrives while nothing is
//   queued and pass_mu is free, the receive callback runs the pass itself,
//   on the sender's thread (the link's receive callbacks are serialised, so
//   arrival order holds; a batch queued meanwhile waits for pass_mu and
//   goes after it). That saves the hand-over to the processing thread: a
//   thread switch per hop, which at moderate load cost more CPU than the
//   routing itself (bench fan-in at 20,000 messages/s: see bench/README.md).
//   Only what a pass does runs inline; views, Kafka, the HTTP publish API
//   and expiries stay on the processing thread. If the pass made a deadline
//   earlier than the one the thread sleeps until, the thread is woken.
//   Never with Kafka: a produce may wait for librdkafka's queue, and the
//   sender is a broker worker (or the all-in-one's edge loop, via it).
// - A pass: the processing thread takes every queued batch at once, handles
//   their items in arrival order, then flushes the sinks and the outbox: all
//   offers ready in one pass leave as one Batch per broker, in the order the
//   publishes arrived. A pass is cut early past RTR_PASS_ITEMS queued items
//   or RTR_PASS_BYTES of payload to bound the size of one NNG message.
//   Received batches are freed after the flush (queued offers point into
//   them).
// - Timeouts: the processing thread waits on its condition variable until
//   the earliest pending deadline (at most RTR_IDLE_MS), then expires what is
//   due; expired entries are answered 0x80.
// - Broker set: hw_members' `changed` runs on its own thread and only
//   queues the view in s->views (under s->mtx) and wakes the processing
//   thread, which installs them in the fanout, in order, before its next
//   pass. Every view is installed, not only the newest: a member that left
//   and came back between two passes had its link peer reset (what was
//   queued for it is gone), and only the view without it makes the fanout
//   offer that again.
// - Stop: readiness off, HTTP stopped, the thread drains what is queued and
//   exits, then the link is closed (which waits for a running receive
//   callback), then anything that arrived meanwhile is freed. Exactly once,
//   guarded by `stopped`.

#include "server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "fanout.h"
#include "httppub.h"
#include "kafka/kafka.h"
#include "kafka/pipeconf.h"
#include "link/httpd.h"
#include "link/link.h"
#include "link/members.h"
#include "outbox.h"
#include "pipeline.h"
#include "sink/sink.h"

#define RTR_PASS_ITEMS 4096u
#define RTR_PASS_BYTES (8u * 1024u * 1024u)
#define RTR_IDLE_MS    1000u

#define RTR_REASON_OK       0x00u
#define RTR_REASON_NO_MATCH 0x10u
#define RTR_REASON_FAILED   0x80u
// A publish no pipeline takes while router.direct is false: "Topic Name
// invalid" (the name is well-formed but not accepted here).
#define RTR_REASON_REFUSED  0x90u

struct rtr_server {
	const hw_config    *cfg;
	hw_metrics         *metrics;
	hw_link            *link;
	hw_httpd           *httpd;
	rtr_outbox         *ob;
	rtr_fanout         *fanout;
	rtr_pipeline_table *pipes;
	rtr_pipeconf_list   pconf;  // router.pipelines, parsed
	rtr_kafka          *kafka;  // NULL in direct mode
	rtr_httppub        *httppub; // POST /v1/publish; NULL when off
	hw_members         *members; // the broker set; NULL without router.brokers

	pthread_t           thread;
	bool                thread_running;
	bool                stopped;
	atomic_bool         ready;

	pthread_mutex_t     pass_mu; // held by whoever processes (design notes)
	pthread_mutex_t     mtx;  // guards q, qn, qcap, stopping, views, woken
	pthread_cond_t      cv;
	uint64_t            sleep_until; // the thread's wake-up time when idle
	bool                taken;  // the thread took batches it has not passed
	hw_batch          **q;    // received, not yet taken by the thread
	size_t              qn;
	size_t              qcap;
	bool                stopping;
	bool                woken;  // Kafka has events (or more work) waiting
	hw_members_view   **views;  // new broker sets for the fanout (references)
	size_t              nviews;
	size_t              capviews;

	hw_batch          **work; // the thread's own: batches of the pass
	size_t              workcap;

	hw_counter         *received;
	hw_counter         *acks_ok;
	hw_counter         *acks_no_match;
	hw_counter         *acks_failed;
	hw_counter         *refused;
};

// ---------------------------------------------------------------------------
// Processing (processing thread only)

// rtr_server_answer is the completion of an upstream publish: it queues the
// Ack for the publishing broker (`origin`, its peer) with its seq (`tag`).
static void rtr_server_answer(void *arg, void *origin, uint64_t tag, uint32_t reason)
{
	rtr_server *s = arg;
	hw_item    *item;
	size_t      slot;
	hw_err      err;

	if (reason == RTR_REASON_OK)
		hw_counter_inc(s->acks_ok);
	else if (reason < RTR_REASON_FAILED)
		hw_counter_inc(s->acks_no_match);
	else
		hw_counter_inc(s->acks_failed);
	if ((err = rtr_outbox_slot(s->ob, origin, &slot)) != HW_OK ||
	    (err = rtr_outbox_ack(s->ob, tag, reason, &item)) != HW_OK ||
	    (err = rtr_outbox_add(s->ob, slot, item, NULL)) != HW_OK)
		hw_log_warn("RTR-ACK", "cannot queue the ack of seq %llu for %s: %s",
		    (unsigned long long)tag, hw_link_peer_url(origin), hw_strerror(err));
}

// rtr_server_publish routes one upstream publish through its pipeline.
static void rtr_server_publish(rtr_server *s, const rtr_msg *msg, hw_link_peer *origin)
{
	const rtr_pipeline *row;
	rtr_sink_done       done = { 0 };
	hw_err              err;

	hw_counter_inc(s->received);
	if (msg->seq != 0 && origin != NULL) {
		done.fn = rtr_server_answer;
		done.arg = s;
		done.origin = origin;
		done.tag = msg->seq;
	}
	row = rtr_pipeline_match(s->pipes, hw_bytes_of_cstr(msg->topic));
	if (row == NULL) {
		// No pipeline and no catch-all direct row (router.direct
		// false): refused.
		hw_counter_inc(s->refused);
		if (done.fn != NULL)
			rtr_server_answer(s, origin, msg->seq, RTR_REASON_REFUSED);
		return;
	}
	if ((err = row->ops->publish(row->sink, msg, done)) != HW_OK) {
		hw_log_warn("RTR-PUBLISH", "pipeline %s refused a publish: %s", row->name,
		    hw_strerror(err));
		if (done.fn != NULL)
			rtr_server_answer(s, origin, msg->seq, RTR_REASON_FAILED);
	}
}

// rtr_server_batch handles one received batch; returns the payload bytes it
// queued, for the pass size bound.
static size_t rtr_server_batch(rtr_server *s, const hw_batch *b)
{
	hw_link_peer *origin = NULL;
	bool          looked = false;
	size_t        bytes = 0;

	for (size_t i = 0; i < b->n_items; i++) {
		const hw_item *it = b->items[i];

		switch (it->body_case) {
		case HAWSER__INTERNAL__V1__ITEM__BODY_PUBLISH:
			if (it->publish->seq != 0 && !looked) {
				looked = true;
				if (b->reply_to == NULL || b->reply_to[0] == '\0' ||
				    hw_link_peer(s->link, b->reply_to, &origin) != HW_OK) {
					origin = NULL;
					hw_log_warn("RTR-REPLY-TO", "batch from %s: cannot answer \"%s\"",
					    b->from, b->reply_to != NULL ? b->reply_to : "");
				}
			}
			rtr_server_publish(s, it->publish, origin);
			bytes += it->publish->payload.len;
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_ACK:
			// Acks are told apart by their sender (reply_to).
			(void)rtr_fanout_ack_held(s->fanout, b->reply_to, it->ack->seq, it->ack->reason,
			    it->ack->retry_slots, it->ack->n_retry_slots, it->ack->held.data,
			    it->ack->held.len);
			break;
		case HAWSER__INTERNAL__V1__ITEM__BODY_EVENT:
			rtr_kafka_event(s->kafka, it->event); // NULL kafka: events are off
			break;
		default:
			hw_log_debug("RTR-ITEM", "ignored an item of kind %d from %s",
			    (int)it->body_case, b->from);
			break;
		}
	}
	return bytes;
}

// rtr_server_flush ends a pass: sinks and outbox send, then the batches the
// queued offers pointed into are freed.
static void rtr_server_flush(rtr_server *s, hw_batch **batches, size_t n)
{
	rtr_pipeline_flush(s->pipes);
	rtr_outbox_flush(s->ob);
	for (size_t i = 0; i < n; i++)
		hw_link_batch_free(batches[i]);
}

static void rtr_server_pass(rtr_server *s, hw_batch **batches, size_t n)
{
	size_t first = 0, bytes = 0;

	for (size_t i = 0; i < n; i++) {
		bytes += rtr_server_batch(s, batches[i]);
		if (rtr_outbox_queued(s->ob) >= RTR_PASS_ITEMS || bytes >= RTR_PASS_BYTES) {
			rtr_server_flush(s, batches + first, i + 1 - first);
			first = i + 1;
			bytes = 0;
		}
	}
	rtr_server_flush(s, batches + first, n - first);
}

// rtr_server_wait_until waits on s->cv (s->mtx held) until deadline_ms
// (hw_clock_mono_ms time) at the latest.
static void rtr_server_wait_until(rtr_server *s, uint64_t deadline_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline_ms / 1000u);
	ts.tv_nsec = (long)(deadline_ms % 1000u) * 1000000L;
	(void)pthread_cond_timedwait(&s->cv, &s->mtx, &ts);
}

static void *rtr_server_main(void *arg)
{
	rtr_server *s = arg;

	for (;;) {
		uint64_t now = hw_clock_mono_ms();
		uint64_t due;

		pthread_mutex_lock(&s->pass_mu);
		due = rtr_fanout_next_deadline(s->fanout);
		pthread_mutex_unlock(&s->pass_mu);
		pthread_mutex_lock(&s->mtx);
		if (s->qn == 0 && !s->stopping && !s->woken && s->nviews == 0 && due > now) {
			if (due > now + RTR_IDLE_MS)
				due = now + RTR_IDLE_MS;
			s->sleep_until = due;
			rtr_server_wait_until(s, due);
		}
		s->sleep_until = 0;
		// Take the whole queue: swap it with the thread's empty array.
		{
			hw_batch **taken = s->q;
			size_t     takencap = s->qcap, n = s->qn;
			bool       stopping = s->stopping;
			bool       more = false;
			hw_members_view **views = s->views;
			size_t            nviews = s->nviews;

			s->views = NULL;
			s->nviews = s->capviews = 0;
			s->q = s->work;
			s->qcap = s->workcap;
			s->qn = 0;
			s->work = taken;
			s->workcap = takencap;
			s->woken = false;
			s->taken = n > 0 || nviews > 0;
			pthread_mutex_unlock(&s->mtx);
			pthread_mutex_lock(&s->pass_mu);
			for (size_t i = 0; i < nviews; i++) {
				(void)rtr_fanout_view(s->fanout, views[i]);
				hw_members_view_release(views[i]);
			}
			if (nviews > 0)
				rtr_outbox_flush(s->ob); // re-offers
			free(views);
			if (n > 0)
				rtr_server_pass(s, taken, n);
			rtr_httppub_poll(s->httppub, hw_clock_mono_ms());
			// Kafka: delivery reports (acks to publishing brokers),
			// rebalances, consumed records (offers).
			if (s->kafka != NULL)
				more = rtr_kafka_poll(s->kafka);
			rtr_fanout_expire(s->fanout, hw_clock_mono_ms());
			rtr_outbox_flush(s->ob); // acks of expired offers, Kafka's work
			if (s->kafka != NULL)
				rtr_kafka_pass_end(s->kafka); // commits; frees offered records
			rtr_httppub_pass_end(s->httppub);
			pthread_mutex_lock(&s->mtx);
			s->taken = false;
			if (more)
				s->woken = true;
			pthread_mutex_unlock(&s->mtx);
			pthread_mutex_unlock(&s->pass_mu);
			// Stopping: the pass just made took everything queued
			// before the stop; what arrives later is dropped.
			if (stopping)
				break;
		}
	}
	return NULL;
}

// rtr_server_inline runs b's pass on the caller's thread if nothing is
// queued and no pass is running (design notes); false: queue it.
static bool rtr_server_inline(rtr_server *s, hw_batch *b)
{
	bool     go;
	uint64_t due;

	if (s->kafka != NULL || pthread_mutex_trylock(&s->pass_mu) != 0)
		return false;
	pthread_mutex_lock(&s->mtx);
	// Batches the thread took but has not passed yet go first.
	go = s->qn == 0 && s->nviews == 0 && !s->taken && !s->stopping;
	pthread_mutex_unlock(&s->mtx);
	if (go) {
		rtr_server_pass(s, &b, 1); // frees b
		due = rtr_fanout_next_deadline(s->fanout);
	}
	pthread_mutex_unlock(&s->pass_mu);
	if (go) {
		pthread_mutex_lock(&s->mtx);
		if (s->sleep_until != 0 && due < s->sleep_until) {
			s->woken = true;
			pthread_cond_signal(&s->cv);
		}
		pthread_mutex_unlock(&s->mtx);
	}
	return go;
}

// rtr_server_recv runs on the link's NNG thread: queue and wake, nothing
// more.
static void rtr_server_recv(void *arg, hw_batch *b)
{
	rtr_server *s = arg;

	if (rtr_server_inline(s, b))
		return;
	pthread_mutex_lock(&s->mtx);
	if (s->qn == s->qcap) {
		size_t     cap = s->qcap != 0 ? s->qcap * 2 : 64;
		hw_batch **q = realloc(s->q, cap * sizeof(*q));

		if (q == NULL) {
			pthread_mutex_unlock(&s->mtx);
			// The publishing brokers' own timeouts cover what is lost.
			hw_log_error("RTR-RECV", "out of memory: dropped a batch from %s", b->from);
			hw_link_batch_free(b);
			return;
		}
		s->q = q;
		s->qcap = cap;
	}
	s->q[s->qn++] = b;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

// rtr_server_wake runs on librdkafka's threads when Kafka events wait: wake
// the processing thread, nothing more.
static void rtr_server_wake(void *arg)
{
	rtr_server *s = arg;

	pthread_mutex_lock(&s->mtx);
	s->woken = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
}

// rtr_server_members_changed runs on the members thread: queue the view
// for the processing thread, nothing more.
static void rtr_server_members_changed(void *arg, hw_members_view *v)
{
	rtr_server      *s = arg;
	hw_members_view *old = NULL;

	pthread_mutex_lock(&s->mtx);
	if (s->nviews == s->capviews) {
		size_t            cap = s->capviews != 0 ? s->capviews * 2 : 4;
		hw_members_view **a = realloc(s->views, cap * sizeof(*a));

		if (a != NULL) {
			s->views = a;
			s->capviews = cap;
		}
	}
	if (s->nviews < s->capviews) {
		s->views[s->nviews++] = hw_members_view_ref(v);
	} else if (s->nviews > 0) {
		// Out of memory: the newest view replaces the last queued one.
		old = s->views[s->nviews - 1];
		s->views[s->nviews - 1] = hw_members_view_ref(v);
	}
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mtx);
	hw_members_view_release(old);
}

// rtr_server_members opens the broker set of router.brokers and gives the
// fanout its first view (before the processing thread runs).
static hw_err rtr_server_members(rtr_server *s)
{
	const hw_config  *cfg = s->cfg;
	hw_members_opts   o = { 0 };
	hw_members_view  *v;
	hw_err            err;

	if (cfg->router.brokers == NULL || cfg->router.brokers[0] == NULL)
		return HW_OK; // no broker set: offers complete at once (0x10)
	o.sources = (const char *const *)cfg->router.brokers;
	o.self = NULL;
	o.down_ms = cfg->cluster.member_down_ms;
	o.dns_refresh_ms = cfg->cluster.dns_refresh_ms;
	o.tier = "router";
	o.metrics = s->metrics;
	o.changed = rtr_server_members_changed;
	o.arg = s;
	if ((err = hw_members_open(&s->members, s->link, &o)) != HW_OK) {
		hw_log_error("RTR-START", "router.brokers: cannot watch the broker set: %s",
		    hw_strerror(err));
		return err;
	}
	v = hw_members_get(s->members);
	err = rtr_fanout_view(s->fanout, v);
	hw_members_view_release(v);
	return err;
}

static bool rtr_server_ready(void *arg)
{
	rtr_server *s = arg;

	return atomic_load(&s->ready);
}

// ---------------------------------------------------------------------------
// Lifecycle

static void rtr_server_metrics(rtr_server *s, hw_metrics *m)
{
	const char *help = "Acks sent to publishing brokers, by outcome.";

	s->received = hw_metrics_counter(m, "hawser_router_messages_received_total",
	    "Publishes received from brokers.", NULL, NULL);
	s->acks_ok = hw_metrics_counter(m, "hawser_router_acks_total", help, "result", "matched");
	s->acks_no_match = hw_metrics_counter(m, "hawser_router_acks_total", help, "result",
	    "no_match");
	s->acks_failed = hw_metrics_counter(m, "hawser_router_acks_total", help, "result",
	    "failed");
	s->refused = hw_metrics_counter(m, "hawser_router_refused_total",
	    "Publishes no pipeline takes, refused (0x90) because router.direct is false.", NULL,
	    NULL);
}

// rtr_server_row opens the sink of one row and appends the row.
static hw_err rtr_server_row(rtr_server *s, const char *name, const char *filter,
    rtr_pipeline_mode mode, const rtr_sink_ops *ops, const rtr_pipeconf *pc)
{
	rtr_sink_env env = { .cfg = s->cfg, .metrics = s->metrics, .fanout = s->fanout,
		.kafka = s->kafka, .pipe = pc };
	void        *sink = NULL;
	hw_err       err;

	if (ops != NULL && (err = ops->open(&sink, &env)) != HW_OK)
		return err;
	if ((err = rtr_pipeline_add(s->pipes, name, filter, mode, ops, sink)) != HW_OK) {
		if (ops != NULL)
			ops->close(sink);
		return err;
	}
	return HW_OK;
}

// rtr_server_pipelines builds the pipeline table: in kafka mode the rows of
// router.pipelines in order, then (unless router.direct is false) the
// catch-all direct row.
static hw_err rtr_server_pipelines(rtr_server *s)
{
	hw_err err;

	if ((err = rtr_pipeline_table_alloc(&s->pipes)) != HW_OK)
		return err;
	for (size_t i = 0; i < s->pconf.n; i++) {
		const rtr_pipeconf *pc = &s->pconf.v[i];
		const rtr_sink_ops *ops = NULL;
		const char         *consumes = NULL;

		switch (pc->mode) {
		case RTR_MODE_PUBLISH_ONLY:
			ops = &rtr_sink_kafka;
			break;
		case RTR_MODE_PUBLISH_CONSUME:
			ops = &rtr_sink_kafka;
			consumes = pc->topic;
			break;
		case RTR_MODE_FILTERED:
			ops = &rtr_sink_kafka;
			consumes = pc->clean_topic;
			break;
		case RTR_MODE_CONSUME_ONLY:
			consumes = pc->topic;
			break;
		case RTR_MODE_DIRECT:
			ops = &rtr_sink_direct;
			break;
		}
		if ((err = rtr_server_row(s, pc->name, pc->filter, pc->mode, ops, pc)) != HW_OK) {
			hw_log_error("RTR-CONFIG", "router.pipelines[%zu] (%s): cannot set up: %s", i,
			    pc->name, hw_strerror(err));
			return err;
		}
		if (consumes != NULL && (err = rtr_kafka_consume(s->kafka, pc, consumes)) != HW_OK)
			return err;
		hw_log_info("RTR-PIPELINE", "pipeline=%s mode=%s filter=%s produce=%s consume=%s",
		    pc->name, rtr_pipeline_mode_name(pc->mode), pc->filter != NULL ? pc->filter : "-",
		    ops == &rtr_sink_kafka ? pc->topic : "-", consumes != NULL ? consumes : "-");
	}
	if (s->cfg->router.direct &&
	    (err = rtr_server_row(s, "direct", NULL, RTR_MODE_DIRECT, &rtr_sink_direct, NULL)) != HW_OK)
		return err;
	return HW_OK;
}

// rtr_server_config checks router.mode against router.pipelines and parses
// the pipelines into s->pconf.
static hw_err rtr_server_config(rtr_server *s)
{
	const hw_config *cfg = s->cfg;
	const char      *mode = cfg->router.mode != NULL ? cfg->router.mode : "";
	char            *why = NULL;
	hw_err           err;

	if (strcmp(mode, "direct") != 0 && strcmp(mode, "kafka") != 0) {
		hw_log_error("RTR-CONFIG", "router.mode: \"%s\" is not supported (direct or kafka)", mode);
		return HW_ECONFIG;
	}
	if ((err = rtr_pipeconf_parse(cfg->router.pipelines, &s->pconf, &why)) != HW_OK) {
		hw_log_error("RTR-CONFIG", "%s", why != NULL ? why : "router.pipelines: invalid");
		free(why);
		return err;
	}
	if (strcmp(mode, "direct") == 0 && s->pconf.n > 0) {
		hw_log_error("RTR-CONFIG",
		    "router.pipelines: %zu pipelines configured but router.mode is direct (no Kafka); set router.mode: kafka",
		    s->pconf.n);
		return HW_ECONFIG;
	}
	if (strcmp(mode, "kafka") == 0 && s->pconf.n == 0) {
		hw_log_error("RTR-CONFIG", "router.mode: kafka needs router.pipelines");
		return HW_ECONFIG;
	}
	return HW_OK;
}

hw_err rtr_server_alloc(rtr_server **out, const hw_config *cfg, hw_metrics *metrics)
{
	rtr_server        *s;
	pthread_condattr_t ca;
	const char        *node;
	hw_err             err;

	if (out == NULL || cfg == NULL)
		return HW_EINVAL;
	if (cfg->router.listen == NULL || cfg->router.listen[0] == '\0') {
		hw_log_error("RTR-CONFIG", "router.listen: an inbox URL is required");
		return HW_ECONFIG;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return HW_ENOMEM;
	s->cfg = cfg;
	s->metrics = metrics;
	atomic_init(&s->ready, false);
	if (pthread_mutex_init(&s->mtx, NULL) != 0) {
		free(s);
		return HW_ENOMEM;
	}
	(void)pthread_mutex_init(&s->pass_mu, NULL); // cannot fail: default attributes
	// The processing thread's deadlines are hw_clock_mono_ms times.
	if (pthread_condattr_init(&ca) != 0) {
		pthread_mutex_destroy(&s->mtx);
		free(s);
		return HW_ENOMEM;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&s->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&s->mtx);
		free(s);
		return HW_ENOMEM;
	}
	pthread_condattr_destroy(&ca);
	if ((err = rtr_server_config(s)) != HW_OK)
		goto fail;
	if (metrics != NULL)
		rtr_server_metrics(s, metrics);

	node = cfg->node.id != NULL && cfg->node.id[0] != '\0' ? cfg->node.id : "router";
	if ((err = hw_link_open(&s->link, node, cfg->router.listen, cfg->router.advertise,
	    metrics)) != HW_OK) {
		hw_log_error("RTR-START", "router.listen: cannot listen on %s: %s",
		    cfg->router.listen, hw_strerror(err));
		goto fail;
	}
	if ((err = rtr_outbox_alloc(&s->ob, metrics)) != HW_OK)
		goto fail;
	if ((err = rtr_fanout_alloc(&s->fanout, s->ob, RTR_FANOUT_TIMEOUT_MS, metrics)) != HW_OK)
		goto fail;
	if ((s->pconf.n > 0 || rtr_kafka_events_on(cfg)) &&
	    (err = rtr_kafka_alloc(&s->kafka, cfg, s->fanout, metrics,
	    rtr_server_wake, s)) != HW_OK)
		goto fail;
	if ((err = rtr_server_pipelines(s)) != HW_OK)
		goto fail;
	*out = s;
	return HW_OK;

fail:
	s->stopped = true;
	rtr_server_free(s);
	return err;
}

hw_err rtr_server_start(rtr_server *s, int serve_http)
{
	const char *http = s->cfg->router.http_listen;
	hw_err      err;

	if (s->thread_running || s->stopped)
		return HW_EEXIST;
	if ((err = rtr_server_members(s)) != HW_OK)
		return err;
	if (s->kafka != NULL && (err = rtr_kafka_start(s->kafka)) != HW_OK)
		return err;
	if (pthread_create(&s->thread, NULL, rtr_server_main, s) != 0) {
		hw_log_error("RTR-START", "cannot start the processing thread");
		return HW_ENOMEM;
	}
	s->thread_running = true;
	if ((err = hw_link_start(s->link, rtr_server_recv, s)) != HW_OK)
		goto fail;
	if (serve_http && http != NULL && http[0] != '\0' &&
	    (err = hw_httpd_start(&s->httpd, http, s->metrics, rtr_server_ready, s)) != HW_OK) {
		hw_log_error("RTR-START", "router.http_listen: cannot serve on %s: %s", http,
		    hw_strerror(err));
		goto fail;
	}
	if (s->httpd != NULL && (err = rtr_httppub_start(&s->httppub, s->cfg, http,
	    hw_httpd_port(s->httpd), s->metrics, s->fanout, rtr_server_wake, s)) != HW_OK)
		goto fail;
	hw_log_info("RTR-LISTEN", "inbox=%s http_port=%d", hw_link_url(s->link),
	    s->httpd != NULL ? hw_httpd_port(s->httpd) : -1);
	atomic_store(&s->ready, true);
	hw_log_info("RTR-READY", "ready");
	return HW_OK;

fail:
	rtr_server_stop(s);
	return err;
}

void rtr_server_stop(rtr_server *s)
{
	if (s == NULL || s->stopped)
		return;
	s->stopped = true;
	atomic_store(&s->ready, false);
	rtr_httppub_close(s->httppub);
	if (s->httpd != NULL) {
		hw_httpd_stop(s->httpd);
		s->httpd = NULL;
	}
	if (s->thread_running) {
		pthread_mutex_lock(&s->mtx);
		s->stopping = true;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mtx);
		pthread_join(s->thread, NULL);
		s->thread_running = false;
	}
	// The members thread resets peers of the link: it stops first.
	if (s->members != NULL)
		hw_members_close(s->members);
	s->members = NULL;
	for (size_t i = 0; i < s->nviews; i++)
		hw_members_view_release(s->views[i]);
	free(s->views);
	s->views = NULL;
	s->nviews = s->capviews = 0;
	// No processing thread: nothing sends on the link any more.
	hw_link_close(s->link);
	s->link = NULL;
	for (size_t i = 0; i < s->qn; i++)
		hw_link_batch_free(s->q[i]);
	s->qn = 0;
	hw_log_info("RTR-STOP", "stopped");
}

void rtr_server_free(rtr_server *s)
{
	if (s == NULL)
		return;
	rtr_server_stop(s);
	if (s->link != NULL)
		hw_link_close(s->link);
	for (size_t i = 0; i < s->qn; i++)
		hw_link_batch_free(s->q[i]);
	rtr_pipeline_table_free(s->pipes);
	rtr_kafka_free(s->kafka); // wakes go to s->mtx: before it is destroyed
	rtr_httppub_free(s->httppub);
	rtr_fanout_free(s->fanout);
	rtr_pipeconf_fini(&s->pconf);
	rtr_outbox_free(s->ob);
	free(s->q);
	free(s->work);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mtx);
	pthread_mutex_destroy(&s->pass_mu);
	free(s);
}
