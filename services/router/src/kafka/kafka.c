// The router's Kafka client (kafka.h).
//
// Design notes:
// - One producer handle for all producing pipelines; enable.idempotence
//   (which implies acks=all and in-order retries) and message.timeout.ms =
//   router.kafka.message_timeout_ms. Each produced record carries a small
//   heap `rtr_kafka_dr` as its opaque; the delivery report callback (run by
//   rd_kafka_poll on the processing thread) completes and frees it.
// - One consumer handle; its main queue is redirected to the consumer queue
//   (rd_kafka_poll_set_consumer) so rebalances, errors and records all come
//   out of rd_kafka_consumer_poll. Both handles' queues call `wake` when
//   they become non-empty, so the processing thread never sleeps on work.
// - A consumed record becomes an rtr_kafka_rec: the decoded protobuf, the
//   link Publish built over it, and its place in its partition's in-flight
//   list (offset order). The fanout's done marks it; the partition's done
//   prefix is popped and its next offset marked for commit. Popped records
//   are freed at pass end, after the outbox flush that may still point into
//   them. A record whose offer failed is queued for a new offer.
// - Partitions are tracked from assign to revoke. Records of a partition
//   that is not (or no longer) assigned are orphans: their completion only
//   frees them.
// - The raw topic of a builtin-filtered pipeline is a subscription of its
//   own (sub->filter set). Its records keep a copy of value, key and
//   headers; instead of an offer they are judged once (filter.h) and, when
//   accepted, produced to the clean topic with the record as the delivery
//   report's origin: the report completes the record as a broker's ack
//   would (done, or queued again when Kafka did not take it), so the same
//   in-order commit rule holds. A rejected record is done at once.
// - Client events (router.kafka.events_topic) are produced fire and forget;
//   their delivery reports carry &k->evmark as opaque and only count.
// - Consumer lag: a thread of its own (lag.h) asks Kafka for high
//   watermarks; pass end refreshes the gauges every lag_interval_ms.

#include "kafka/kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "fanout.h"
#include "filter/filter.h"
#include "hawser/v1/messages.pb-c.h"
#include "kafka/lag.h"
#include "mqtt/topic.h"

#define RTR_KAFKA_POLL_MAX     4096u  // events / records per rtr_kafka_poll
#define RTR_KAFKA_INFLIGHT_MAX 65536u // consumed records waiting for acks
#define RTR_KAFKA_SCHEMA_VERSION "1"
#define RTR_REASON_FAILED 0x80u

typedef struct rtr_kafka_stat {
	const rtr_pipeconf *pc;
	hw_counter         *produced;
	hw_counter         *produce_errors;
	hw_counter         *consumed;
	struct rtr_kafka_stat *next;
} rtr_kafka_stat;

// A produced record's opaque.
typedef struct rtr_kafka_dr {
	rtr_kafka      *k;
	rtr_kafka_stat *st;
	rtr_sink_done   done;
} rtr_kafka_dr;

typedef struct rtr_kafka_part rtr_kafka_part;
typedef struct rtr_kafka_sub rtr_kafka_sub;

typedef struct rtr_kafka_rec {
	rtr_kafka_part        *part;   // NULL: orphan (partition revoked)
	int64_t                offset;
	bool                   done;
	ProtobufCMessage      *decoded;
	rtr_msg                pub;
	Hawser__Internal__V1__UserProperty  *props;
	Hawser__Internal__V1__UserProperty **propv;
	// A raw record of a builtin-filtered pipeline: what is produced to the
	// clean topic once accepted (value, key and headers as consumed).
	const rtr_kafka_sub   *sub;
	bool                   judged;
	void                  *value;
	size_t                 vlen;
	void                  *key;
	size_t                 klen;
	rd_kafka_headers_t    *hdrs;
	struct rtr_kafka_rec  *next;   // in the partition list, then the free queue
	struct rtr_kafka_rec  *rnext;  // in the retry list
	struct rtr_kafka_rec  *lprev;  // live list (every record not yet freed)
	struct rtr_kafka_rec  *lnext;
} rtr_kafka_rec;

struct rtr_kafka_part {
	char           *topic;
	int32_t         partition;
	rtr_kafka_rec  *head;     // in flight, offset order
	rtr_kafka_rec  *tail;
	int64_t         commit;   // next offset to commit; -1 none pending
	int64_t         done;     // offset after the last record done; -1 none yet
	hw_gauge       *lag;      // hawser_router_consumer_lag of this partition
	rtr_kafka_part *next;
};

struct rtr_kafka_sub {
	const rtr_pipeconf *pc;
	char               *topic;
	rtr_kafka_stat     *st;
	bool                upstream; // records are UpstreamMessage
	// The raw topic of a builtin-filtered pipeline: records are judged and
	// the accepted ones produced to pc->clean_topic.
	rtr_filter         *filter;
	hw_counter         *accepted;
	hw_counter         *rejected[RTR_FILTER_REASONS];
	hw_counter         *rejected_reason[RTR_FILTER_REASONS];
};

struct rtr_kafka {
	const hw_config   *cfg;
	rtr_fanout        *fanout;
	hw_metrics        *metrics;
	rtr_kafka_wake_fn  wake;
	void              *wake_arg;
	char             **props;     // router.kafka.properties, name/value pairs

	rd_kafka_t        *producer;
	rd_kafka_t        *consumer;
	rd_kafka_queue_t  *pq;        // producer main queue
	rd_kafka_queue_t  *cq;        // consumer queue
	bool               closing;

	rtr_kafka_stat    *stats;     // one per pipeline, never moved
	rtr_kafka_sub    **subs;      // heap each: records point at theirs
	size_t             nsubs;

	rtr_kafka_part    *parts;
	rtr_kafka_rec     *live;
	rtr_kafka_rec     *retry;     // offers to make again (LIFO is fine: rare)
	rtr_kafka_rec     *freeq;     // free at pass end
	size_t             inflight;
	bool               waiting_brokers; // no broker connected: paused

	int                evmark;    // the opaque of event records
	uint64_t           lag_at_ms; // next consumer lag refresh
	rtr_lag           *lagq;      // asks Kafka for high watermarks
	hw_counter        *ev_produced;
	hw_counter        *ev_failed;

	hw_gauge          *inflight_gauge;
	hw_counter        *commits;
	hw_histogram      *e2e;       // broker receive -> offered again, seconds
};

// ---------------------------------------------------------------------------
// Setup

static void rtr_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 3)
		hw_log_error("RTR-KAFKA", "%s: %s: %s", rd_kafka_name(rk), fac, buf);
	else if (level <= 4)
		hw_log_warn("RTR-KAFKA", "%s: %s: %s", rd_kafka_name(rk), fac, buf);
	else
		hw_log_debug("RTR-KAFKA", "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static void rtr_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)opaque;
	hw_log_warn("RTR-KAFKA", "%s: %s: %s", rd_kafka_name(rk),
	    rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void rtr_kafka_event_cb(rd_kafka_t *rk, void *qev_opaque)
{
	rtr_kafka *k = qev_opaque;

	(void)rk;
	k->wake(k->wake_arg);
}

static hw_err rtr_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char errstr[256];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
		hw_log_error("RTR-CONFIG", "router.kafka: %s=%s: %s", name, value, errstr);
		return HW_ECONFIG;
	}
	return HW_OK;
}

// rtr_kafka_conf builds a configuration: common settings, then `pairs`
// (NULL-terminated name/value), then router.kafka.properties (which win).
static hw_err rtr_kafka_conf(rtr_kafka *k, const char *const *pairs, rd_kafka_conf_t **out)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	hw_err           err = HW_OK;

	if (conf == NULL)
		return HW_ENOMEM;
	rd_kafka_conf_set_log_cb(conf, rtr_kafka_log_cb);
	rd_kafka_conf_set_error_cb(conf, rtr_kafka_error_cb);
	rd_kafka_conf_set_opaque(conf, k);
	if ((err = rtr_kafka_set(conf, "bootstrap.servers", k->cfg->router.kafka.brokers)) != HW_OK)
		goto fail;
	if (k->cfg->node.id != NULL && k->cfg->node.id[0] != '\0' &&
	    (err = rtr_kafka_set(conf, "client.id", k->cfg->node.id)) != HW_OK)
		goto fail;
	for (size_t i = 0; pairs[i] != NULL; i += 2)
		if ((err = rtr_kafka_set(conf, pairs[i], pairs[i + 1])) != HW_OK)
			goto fail;
	for (size_t i = 0; k->props[i] != NULL; i += 2)
		if ((err = rtr_kafka_set(conf, k->props[i], k->props[i + 1])) != HW_OK)
			goto fail;
	*out = conf;
	return HW_OK;
fail:
	rd_kafka_conf_destroy(conf);
	return err;
}

static void rtr_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

hw_err rtr_kafka_alloc(rtr_kafka **out, const hw_config *cfg, rtr_fanout *fanout,
    hw_metrics *metrics, rtr_kafka_wake_fn wake, void *wake_arg)
{
	rtr_kafka       *k;
	rd_kafka_conf_t *conf = NULL;
	char             timeout[16], errstr[256], *why = NULL;
	hw_err           err;

	if (out == NULL || cfg == NULL || fanout == NULL || wake == NULL)
		return HW_EINVAL;
	if (cfg->router.kafka.brokers == NULL || cfg->router.kafka.brokers[0] == '\0') {
		hw_log_error("RTR-CONFIG",
		    "router.kafka.brokers: required when router.mode is kafka or router.kafka.events_topic is set");
		return HW_ECONFIG;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return HW_ENOMEM;
	k->cfg = cfg;
	k->fanout = fanout;
	k->metrics = metrics;
	k->wake = wake;
	k->wake_arg = wake_arg;
	if ((err = rtr_pipeconf_props(cfg->router.kafka.properties, &k->props, &why)) != HW_OK) {
		hw_log_error("RTR-CONFIG", "%s", why != NULL ? why : "router.kafka.properties: invalid");
		free(why);
		goto fail;
	}
	snprintf(timeout, sizeof(timeout), "%u", cfg->router.kafka.message_timeout_ms);
	{
		const char *const pairs[] = {
			"enable.idempotence", "true",
			"acks", "all",
			"message.timeout.ms", timeout,
			"linger.ms", "2",
			NULL,
		};

		if ((err = rtr_kafka_conf(k, pairs, &conf)) != HW_OK)
			goto fail;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, rtr_kafka_dr_cb);
	if ((k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
		hw_log_error("RTR-KAFKA", "cannot create the producer: %s", errstr);
		rd_kafka_conf_destroy(conf);
		err = HW_ECONFIG;
		goto fail;
	}
	k->pq = rd_kafka_queue_get_main(k->producer);
	rd_kafka_queue_cb_event_enable(k->pq, rtr_kafka_event_cb, k);
	if (metrics != NULL) {
		k->inflight_gauge = hw_metrics_gauge(metrics, "hawser_router_kafka_inflight",
		    "Consumed Kafka records offered to brokers and not yet acked by all.", NULL, NULL);
		k->commits = hw_metrics_counter(metrics, "hawser_router_kafka_commits_total",
		    "Offset commits sent to Kafka.", NULL, NULL);
		if (rtr_kafka_events_on(cfg)) {
			const char *help = "Client lifecycle events produced to router.kafka.events_topic, by outcome.";

			k->ev_produced = hw_metrics_counter(metrics, "hawser_router_events_total", help,
			    "result", "produced");
			k->ev_failed = hw_metrics_counter(metrics, "hawser_router_events_total", help,
			    "result", "failed");
		}
		static const double b[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
			0.5, 1, 2.5, 5, 10, 30 };

		k->e2e = hw_metrics_histogram(metrics, "hawser_router_kafka_e2e_seconds",
		    "Client publish taken by its broker -> consumed back from Kafka and offered to the brokers (publish_consume, filtered).",
		    b, (int)(sizeof(b) / sizeof(b[0])));
	}
	*out = k;
	return HW_OK;
fail:
	rtr_kafka_free(k);
	return err;
}

static rtr_kafka_stat *rtr_kafka_stat_of(rtr_kafka *k, const rtr_pipeconf *pc)
{
	rtr_kafka_stat *st;

	for (st = k->stats; st != NULL; st = st->next)
		if (st->pc == pc)
			return st;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->pc = pc;
	st->next = k->stats;
	k->stats = st;
	if (k->metrics != NULL) {
		st->produced = hw_metrics_counter(k->metrics, "hawser_router_kafka_produced_total",
		    "Records Kafka acknowledged (acks=all), by pipeline.", "pipeline", pc->name);
		st->produce_errors = hw_metrics_counter(k->metrics,
		    "hawser_router_kafka_produce_errors_total",
		    "Records Kafka did not take (the client publish failed), by pipeline.", "pipeline",
		    pc->name);
		st->consumed = hw_metrics_counter(k->metrics, "hawser_router_kafka_consumed_total",
		    "Records consumed from Kafka, by pipeline.", "pipeline", pc->name);
	}
	return st;
}

// rtr_kafka_sub_add appends a subscription of pc to topic.
static hw_err rtr_kafka_sub_add(rtr_kafka *k, const rtr_pipeconf *pc, const char *topic,
    rtr_kafka_sub **out)
{
	rtr_kafka_sub **v, *sub;

	for (size_t i = 0; i < k->nsubs; i++)
		if (strcmp(k->subs[i]->topic, topic) == 0) {
			hw_log_error("RTR-CONFIG",
			    "router.pipelines (%s): Kafka topic %s is already consumed by pipeline %s",
			    pc->name, topic, k->subs[i]->pc->name);
			return HW_ECONFIG;
		}
	if ((v = realloc(k->subs, (k->nsubs + 1) * sizeof(*v))) == NULL)
		return HW_ENOMEM;
	k->subs = v;
	if ((sub = calloc(1, sizeof(*sub))) == NULL)
		return HW_ENOMEM;
	sub->pc = pc;
	sub->upstream = pc->mode != RTR_MODE_CONSUME_ONLY;
	if ((sub->topic = strdup(topic)) == NULL) {
		free(sub);
		return HW_ENOMEM;
	}
	v[k->nsubs++] = sub;
	*out = sub;
	return HW_OK;
}

// rtr_kafka_filter_sub makes the raw topic of a builtin-filtered pipeline
// a subscription of its own, with the filter and its metrics.
static hw_err rtr_kafka_filter_sub(rtr_kafka *k, const rtr_pipeconf *pc)
{
	rtr_kafka_sub *sub;
	char          *why = NULL;
	hw_err         err;

	if ((err = rtr_kafka_sub_add(k, pc, pc->topic, &sub)) != HW_OK)
		return err;
	if ((err = rtr_filter_alloc(&sub->filter, &pc->builtin, &why)) != HW_OK) {
		hw_log_error("RTR-CONFIG", "router.pipelines (%s): builtin: %s", pc->name,
		    why != NULL ? why : hw_strerror(err));
		free(why);
		return err;
	}
	hw_log_info("RTR-FILTER", "pipeline=%s raw=%s clean=%s max_bytes=%u words=%zu rate_per_s=%u burst=%u",
	    pc->name, pc->topic, pc->clean_topic, pc->builtin.max_bytes,
	    rtr_filter_words(sub->filter), pc->builtin.rate_per_s, pc->builtin.burst);
	if (k->metrics == NULL)
		return HW_OK;
	sub->accepted = hw_metrics_counter(k->metrics, "hawser_router_filter_accepted_total",
	    "Raw records the built-in filters accepted (produced to the clean topic), by pipeline.",
	    "pipeline", pc->name);
	for (int r = RTR_FILTER_SIZE; r < RTR_FILTER_REASONS; r++) {
		sub->rejected[r] = hw_metrics_counter(k->metrics, "hawser_router_filter_rejected_total",
		    "Raw records the built-in filters rejected, by pipeline.", "pipeline", pc->name);
		sub->rejected_reason[r] = hw_metrics_counter(k->metrics,
		    "hawser_router_filter_rejected_reason_total",
		    "Raw records the built-in filters rejected, by reason (size, words, rate; all pipelines).",
		    "reason", rtr_filter_reason_name((rtr_filter_verdict)r));
	}
	return HW_OK;
}

hw_err rtr_kafka_consume(rtr_kafka *k, const rtr_pipeconf *pc, const char *topic)
{
	rtr_kafka_sub *sub;
	hw_err         err;

	if (rtr_kafka_stat_of(k, pc) == NULL)
		return HW_ENOMEM;
	if ((err = rtr_kafka_sub_add(k, pc, topic, &sub)) != HW_OK)
		return err;
	if (pc->mode == RTR_MODE_FILTERED && pc->has_builtin)
		return rtr_kafka_filter_sub(k, pc);
	return HW_OK;
}

static void rtr_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque);
static void rtr_kafka_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *offsets, void *opaque);

hw_err rtr_kafka_start(rtr_kafka *k)
{
	rd_kafka_conf_t                 *conf = NULL;
	rd_kafka_topic_partition_list_t *topics;
	char                             errstr[256];
	rd_kafka_resp_err_t              rerr;
	hw_err                           err;
	const char *const                pairs[] = {
		"group.id", k->cfg->router.kafka.group,
		"enable.auto.commit", "false",
		"enable.auto.offset.store", "false",
		"auto.offset.reset", "earliest",
		"partition.assignment.strategy", "cooperative-sticky",
		"allow.auto.create.topics", "true",
		NULL,
	};

	for (size_t i = 0; i < k->nsubs; i++)
		k->subs[i]->st = rtr_kafka_stat_of(k, k->subs[i]->pc);
	if (k->nsubs == 0)
		return HW_OK;
	if ((err = rtr_kafka_conf(k, pairs, &conf)) != HW_OK)
		return err;
	rd_kafka_conf_set_rebalance_cb(conf, rtr_kafka_rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, rtr_kafka_commit_cb);
	if ((k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL) {
		hw_log_error("RTR-KAFKA", "cannot create the consumer: %s", errstr);
		rd_kafka_conf_destroy(conf);
		return HW_ECONFIG;
	}
	rd_kafka_poll_set_consumer(k->consumer);
	k->cq = rd_kafka_queue_get_consumer(k->consumer);
	rd_kafka_queue_cb_event_enable(k->cq, rtr_kafka_event_cb, k);
	if ((topics = rd_kafka_topic_partition_list_new((int)k->nsubs)) == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < k->nsubs; i++)
		rd_kafka_topic_partition_list_add(topics, k->subs[i]->topic, RD_KAFKA_PARTITION_UA);
	if (rtr_lag_start(&k->lagq, k->consumer, k->cfg->router.kafka.lag_interval_ms) != HW_OK)
		hw_log_warn("RTR-LAG", "cannot start the lag thread: no hawser_router_consumer_lag");
	rerr = rd_kafka_subscribe(k->consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		hw_log_error("RTR-KAFKA", "cannot subscribe: %s", rd_kafka_err2str(rerr));
		return HW_EIO;
	}
	return HW_OK;
}

// ---------------------------------------------------------------------------
// Producing

static void rtr_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	rtr_kafka_dr *dr = m->_private;
	rtr_kafka    *k = opaque;

	(void)rk;
	if (dr == NULL)
		return;
	if ((void *)dr == (void *)&k->evmark) {
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			hw_counter_inc(k->ev_produced);
		} else {
			hw_counter_inc(k->ev_failed);
			if (!k->closing)
				hw_log_warn("RTR-EVENT", "Kafka did not take a client event: %s",
				    rd_kafka_err2str(m->err));
		}
		return;
	}
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		hw_counter_inc(dr->st->produced);
	} else {
		hw_counter_inc(dr->st->produce_errors);
		if (!dr->k->closing)
			hw_log_warn("RTR-PRODUCE", "pipeline %s: Kafka did not take a record: %s",
			    dr->st->pc->name, rd_kafka_err2str(m->err));
	}
	if (dr->done.fn != NULL && !dr->k->closing)
		dr->done.fn(dr->done.arg, dr->done.origin, dr->done.tag,
		    m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0x00u : RTR_REASON_FAILED);
	free(dr);
}

// rtr_kafka_upstream packs msg as a hawser.v1.UpstreamMessage into a heap
// buffer.
static hw_err rtr_kafka_upstream(const rtr_msg *msg, uint8_t **out, size_t *len)
{
	Hawser__V1__UpstreamMessage   up = HAWSER__V1__UPSTREAM_MESSAGE__INIT;
	Hawser__V1__UserProperty     *props = NULL;
	Hawser__V1__UserProperty    **propv = NULL;
	uint8_t                      *buf;

	up.topic = msg->topic;
	up.payload = msg->payload;
	up.qos = msg->qos;
	up.retain = msg->retain;
	up.content_type = msg->content_type;
	up.client_id = msg->client_id;
	up.user_id = msg->user_id;
	up.edge_id = msg->edge;
	up.broker_id = msg->broker;
	// The broker stamps it; when it did not, the router's time is the best
	// estimate.
	up.received_at_us = msg->received_at_us != 0 ? msg->received_at_us : hw_clock_unix_us();
	up.response_topic = msg->response_topic;
	up.correlation_data = msg->correlation_data;
	if (msg->n_user_properties > 0) {
		props = calloc(msg->n_user_properties, sizeof(*props));
		propv = calloc(msg->n_user_properties, sizeof(*propv));
		if (props == NULL || propv == NULL) {
			free(props);
			free(propv);
			return HW_ENOMEM;
		}
		for (size_t i = 0; i < msg->n_user_properties; i++) {
			hawser__v1__user_property__init(&props[i]);
			props[i].key = msg->user_properties[i]->key;
			props[i].value = msg->user_properties[i]->value;
			propv[i] = &props[i];
		}
		up.n_user_properties = msg->n_user_properties;
		up.user_properties = propv;
	}
	*len = hawser__v1__upstream_message__get_packed_size(&up);
	buf = malloc(*len > 0 ? *len : 1);
	if (buf != NULL)
		hawser__v1__upstream_message__pack(&up, buf);
	free(props);
	free(propv);
	if (buf == NULL)
		return HW_ENOMEM;
	*out = buf;
	return HW_OK;
}

// rtr_kafka_producev produces buf (len bytes, freed by librdkafka on
// success, still the caller's on failure) to topic with the protobuf headers
// naming schema; opaque comes back in the delivery report.
static rd_kafka_resp_err_t rtr_kafka_producev(rtr_kafka *k, const char *topic, uint8_t *buf,
    size_t len, const char *key, size_t keylen, const char *schema, void *opaque)
{
	return rd_kafka_producev(k->producer,
	    RD_KAFKA_V_TOPIC(topic),
	    RD_KAFKA_V_VALUE(buf, len),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
	    RD_KAFKA_V_KEY(key, keylen),
	    RD_KAFKA_V_HEADER("content-type", "application/x-protobuf", -1),
	    RD_KAFKA_V_HEADER("hawser-schema", schema, -1),
	    RD_KAFKA_V_HEADER("hawser-schema-version", RTR_KAFKA_SCHEMA_VERSION, -1),
	    RD_KAFKA_V_OPAQUE(opaque),
	    RD_KAFKA_V_END);
}

hw_err rtr_kafka_produce(rtr_kafka *k, const rtr_pipeconf *pc, const rtr_msg *msg,
    rtr_sink_done done)
{
	rtr_kafka_dr       *dr;
	uint8_t            *buf = NULL;
	size_t              len = 0;
	const char         *key = NULL;
	size_t              keylen;
	rd_kafka_resp_err_t rerr;
	hw_err              err;

	if ((dr = calloc(1, sizeof(*dr))) == NULL)
		return HW_ENOMEM;
	dr->k = k;
	dr->done = done;
	if ((dr->st = rtr_kafka_stat_of(k, pc)) == NULL) {
		free(dr);
		return HW_ENOMEM;
	}
	if ((err = rtr_kafka_upstream(msg, &buf, &len)) != HW_OK) {
		free(dr);
		return err;
	}
	if (pc->key == RTR_KEY_TOPIC)
		key = msg->topic;
	else if (pc->key == RTR_KEY_CLIENT_ID)
		key = msg->client_id;
	keylen = key != NULL ? strlen(key) : 0;
	rerr = rtr_kafka_producev(k, pc->topic, buf, len, key, keylen,
	    "hawser.v1.UpstreamMessage", dr);
	if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		// On failure the buffer is still ours.
		hw_counter_inc(dr->st->produce_errors);
		free(buf);
		free(dr);
		return rerr == RD_KAFKA_RESP_ERR__QUEUE_FULL ? HW_EFULL : HW_EIO;
	}
	return HW_OK;
}

bool rtr_kafka_events_on(const hw_config *cfg)
{
	const char *t = cfg->router.kafka.events_topic;

	return t != NULL && t[0] != '\0';
}

void rtr_kafka_event(rtr_kafka *k, const Hawser__V1__ClientEvent *ev)
{
	const char         *topic;
	uint8_t            *buf;
	size_t              len, keylen;
	rd_kafka_resp_err_t rerr;

	if (k == NULL || ev == NULL || !rtr_kafka_events_on(k->cfg))
		return;
	keylen = ev->client_id != NULL ? strlen(ev->client_id) : 0;
	topic = k->cfg->router.kafka.events_topic;
	len = hawser__v1__client_event__get_packed_size(ev);
	if ((buf = malloc(len > 0 ? len : 1)) == NULL) {
		hw_counter_inc(k->ev_failed);
		return;
	}
	hawser__v1__client_event__pack(ev, buf);
	rerr = rtr_kafka_producev(k, topic, buf, len, ev->client_id, keylen,
	    "hawser.v1.ClientEvent", &k->evmark);
	if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		free(buf);
		hw_counter_inc(k->ev_failed);
		hw_log_warn("RTR-EVENT", "cannot produce a client event to %s: %s", topic,
		    rd_kafka_err2str(rerr));
	}
}

// ---------------------------------------------------------------------------
// Consuming

static void rtr_kafka_rec_free(rtr_kafka *k, rtr_kafka_rec *r)
{
	if (r->lprev != NULL)
		r->lprev->lnext = r->lnext;
	else
		k->live = r->lnext;
	if (r->lnext != NULL)
		r->lnext->lprev = r->lprev;
	if (r->decoded != NULL)
		protobuf_c_message_free_unpacked(r->decoded, NULL);
	free(r->props);
	free(r->propv);
	free(r->value);
	free(r->key);
	if (r->hdrs != NULL)
		rd_kafka_headers_destroy(r->hdrs);
	free(r);
}

static rtr_kafka_part *rtr_kafka_part_find(rtr_kafka *k, const char *topic, int32_t partition)
{
	for (rtr_kafka_part *p = k->parts; p != NULL; p = p->next)
		if (p->partition == partition && strcmp(p->topic, topic) == 0)
			return p;
	return NULL;
}

// rtr_kafka_advance pops the done prefix of p's in-flight list onto the free
// queue and marks the offset after it for commit.
static void rtr_kafka_advance(rtr_kafka *k, rtr_kafka_part *p)
{
	while (p->head != NULL && p->head->done) {
		rtr_kafka_rec *r = p->head;

		p->head = r->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->commit = r->offset + 1;
		p->done = p->commit;
		r->part = NULL;
		r->next = k->freeq;
		k->freeq = r;
	}
}

// rtr_kafka_release ends a record's offers: it leaves the in-flight count
// and, once its partition's prefix reaches it (or at once for an orphan),
// goes to the free queue.
static void rtr_kafka_release(rtr_kafka *k, rtr_kafka_rec *r)
{
	r->done = true;
	if (k->inflight > 0)
		k->inflight--;
	hw_gauge_set(k->inflight_gauge, (int64_t)k->inflight);
	if (r->part != NULL) {
		rtr_kafka_advance(k, r->part);
	} else {
		r->next = k->freeq;
		k->freeq = r;
	}
}

// rtr_kafka_rec_done is the fanout's completion of a record's offer, and the
// delivery report of an accepted raw record's copy on the clean topic (only
// then may the raw offset be committed).
static void rtr_kafka_rec_done(void *arg, void *origin, uint64_t tag, uint32_t reason)
{
	rtr_kafka     *k = arg;
	rtr_kafka_rec *r = origin;

	(void)tag;
	if (reason >= RTR_REASON_FAILED && r->part != NULL) {
		// Not taken by every broker, or not produced: offer it again on
		// the next poll (not from here: the fanout is in the middle of
		// its own work).
		r->rnext = k->retry;
		k->retry = r;
		return;
	}
	rtr_kafka_release(k, r);
}

static void rtr_kafka_offer(rtr_kafka *k, rtr_kafka_rec *r)
{
	rtr_sink_done d = { .fn = rtr_kafka_rec_done, .arg = k, .origin = r, .tag = 0 };
	hw_err        err;

	// With no broker connected an offer would "succeed" at once (nobody to
	// ask) and the offset would be committed: keep it until one is back.
	if (k->waiting_brokers || (err = rtr_fanout_offer(k->fanout, &r->pub, d)) != HW_OK) {
		r->rnext = k->retry;
		k->retry = r;
	}
}

// rtr_kafka_props points the link Publish's user properties at the decoded
// ones (n of them, key/value strings).
static hw_err rtr_kafka_props(rtr_kafka_rec *r, size_t n, Hawser__V1__UserProperty **src)
{
	if (n == 0)
		return HW_OK;
	r->props = calloc(n, sizeof(*r->props));
	r->propv = calloc(n, sizeof(*r->propv));
	if (r->props == NULL || r->propv == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		hawser__internal__v1__user_property__init(&r->props[i]);
		r->props[i].key = src[i]->key;
		r->props[i].value = src[i]->value;
		r->propv[i] = &r->props[i];
	}
	r->pub.n_user_properties = n;
	r->pub.user_properties = r->propv;
	return HW_OK;
}

// rtr_kafka_decode turns a record's value into r->pub. HW_EMALFORMED when it
// is not a message of the expected type with a valid MQTT topic name.
static hw_err rtr_kafka_decode(rtr_kafka_rec *r, const rtr_kafka_sub *sub,
    const rd_kafka_message_t *m)
{
	rtr_msg *p = &r->pub;

	hawser__internal__v1__publish__init(p);
	if (sub->upstream) {
		Hawser__V1__UpstreamMessage *u =
		    hawser__v1__upstream_message__unpack(NULL, m->len, m->payload);

		if (u == NULL)
			return HW_EMALFORMED;
		r->decoded = &u->base;
		p->topic = u->topic;
		p->payload = u->payload;
		p->qos = u->qos > 2 ? 2 : u->qos;
		p->retain = u->retain;
		p->content_type = u->content_type;
		p->response_topic = u->response_topic;
		p->correlation_data = u->correlation_data;
		p->client_id = u->client_id;
		p->user_id = u->user_id;
		p->broker = u->broker_id;
		p->received_at_us = u->received_at_us;
		if (rtr_kafka_props(r, u->n_user_properties, u->user_properties) != HW_OK)
			return HW_ENOMEM;
	} else {
		Hawser__V1__DownstreamMessage *d =
		    hawser__v1__downstream_message__unpack(NULL, m->len, m->payload);

		if (d == NULL)
			return HW_EMALFORMED;
		r->decoded = &d->base;
		p->topic = d->topic;
		p->payload = d->payload;
		p->qos = d->qos > 1 ? 1 : d->qos;
		p->retain = d->retain;
		p->has_expiry = d->expiry_interval > 0;
		p->expiry_interval = d->expiry_interval;
		p->content_type = d->content_type;
		if (rtr_kafka_props(r, d->n_user_properties, d->user_properties) != HW_OK)
			return HW_ENOMEM;
	}
	if (p->topic == NULL || !hw_topic_name_valid(hw_bytes_of_cstr(p->topic)))
		return HW_EMALFORMED;
	return HW_OK;
}

static const rtr_kafka_sub *rtr_kafka_sub_find(const rtr_kafka *k, const char *topic)
{
	for (size_t i = 0; i < k->nsubs; i++)
		if (strcmp(k->subs[i]->topic, topic) == 0)
			return k->subs[i];
	return NULL;
}

// rtr_kafka_forward judges a raw record (once) and produces it to the clean
// topic when accepted; a rejected record is done at once (its offset is
// committed: the filter's decision is final).
static void rtr_kafka_forward(rtr_kafka *k, rtr_kafka_rec *r)
{
	const rtr_kafka_sub *sub = r->sub;
	const rtr_pipeconf  *pc = sub->pc;
	rtr_kafka_dr        *dr;
	rd_kafka_headers_t  *h = NULL;
	rd_kafka_resp_err_t  rerr;

	if (!r->judged) {
		rtr_filter_verdict v = rtr_filter_check(sub->filter,
		    r->pub.client_id != NULL ? r->pub.client_id : "",
		    (hw_bytes){ r->pub.payload.data, r->pub.payload.len }, hw_clock_mono_us());

		r->judged = true;
		if (v != RTR_FILTER_PASS) {
			hw_counter_inc(sub->rejected[v]);
			hw_counter_inc(sub->rejected_reason[v]);
			hw_log_debug("RTR-FILTER", "pipeline %s: %s[%d]@%lld rejected (%s)", pc->name,
			    sub->topic, r->part != NULL ? (int)r->part->partition : -1,
			    (long long)r->offset, rtr_filter_reason_name(v));
			rtr_kafka_release(k, r);
			return;
		}
		hw_counter_inc(sub->accepted);
	}
	if ((dr = calloc(1, sizeof(*dr))) == NULL)
		goto again;
	dr->k = k;
	dr->st = sub->st;
	dr->done = (rtr_sink_done){ .fn = rtr_kafka_rec_done, .arg = k, .origin = r };
	if (r->hdrs != NULL && (h = rd_kafka_headers_copy(r->hdrs)) == NULL) {
		free(dr);
		goto again;
	}
	rerr = rd_kafka_producev(k->producer,
	    RD_KAFKA_V_TOPIC(pc->clean_topic),
	    RD_KAFKA_V_VALUE(r->value, r->vlen),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_KEY(r->key, r->klen),
	    RD_KAFKA_V_HEADERS(h),
	    RD_KAFKA_V_OPAQUE(dr),
	    RD_KAFKA_V_END);
	if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	// On failure the headers are still ours.
	if (h != NULL)
		rd_kafka_headers_destroy(h);
	free(dr);
	hw_counter_inc(sub->st->produce_errors);
again:
	r->rnext = k->retry;
	k->retry = r;
}

// rtr_kafka_keep copies what a raw record needs to be produced again.
static hw_err rtr_kafka_keep(rtr_kafka_rec *r, const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *h = NULL;

	if (m->len > 0 && (r->value = malloc(m->len)) == NULL)
		return HW_ENOMEM;
	if (m->len > 0)
		memcpy(r->value, m->payload, m->len);
	r->vlen = m->len;
	if (m->key_len > 0 && (r->key = malloc(m->key_len)) == NULL)
		return HW_ENOMEM;
	if (m->key_len > 0)
		memcpy(r->key, m->key, m->key_len);
	r->klen = m->key_len;
	if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h != NULL &&
	    (r->hdrs = rd_kafka_headers_copy(h)) == NULL)
		return HW_ENOMEM;
	return HW_OK;
}

// rtr_kafka_record takes one consumed message.
static void rtr_kafka_record(rtr_kafka *k, const rd_kafka_message_t *m)
{
	const char          *topic;
	const rtr_kafka_sub *sub;
	rtr_kafka_part      *part;
	rtr_kafka_rec       *r;
	hw_err               err;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			hw_log_warn("RTR-CONSUME", "%s", rd_kafka_message_errstr(m));
		return;
	}
	topic = rd_kafka_topic_name(m->rkt);
	sub = rtr_kafka_sub_find(k, topic);
	part = rtr_kafka_part_find(k, topic, m->partition);
	if (sub == NULL || part == NULL)
		return; // not ours (any more): its owner will deliver it
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		// Not committed either: the partition stalls at this offset
		// until a restart or rebalance redelivers it. Log loudly.
		hw_log_error("RTR-CONSUME", "out of memory: %s[%d]@%lld not delivered", topic,
		    (int)m->partition, (long long)m->offset);
		return;
	}
	r->offset = m->offset;
	r->part = part;
	r->lnext = k->live;
	if (k->live != NULL)
		k->live->lprev = r;
	k->live = r;
	if (part->tail != NULL)
		part->tail->next = r;
	else
		part->head = r;
	part->tail = r;
	k->inflight++;
	hw_gauge_set(k->inflight_gauge, (int64_t)k->inflight);
	hw_counter_inc(sub->st->consumed);
	r->sub = sub;
	if (sub->filter != NULL && rtr_kafka_keep(r, m) != HW_OK) {
		hw_log_error("RTR-CONSUME", "out of memory: %s[%d]@%lld not filtered", topic,
		    (int)m->partition, (long long)m->offset);
		return; // stays in flight, uncommitted: the partition stalls here
	}
	if ((err = rtr_kafka_decode(r, sub, m)) != HW_OK) {
		hw_log_warn("RTR-CONSUME", "pipeline %s: %s[%d]@%lld is not a valid %s: skipped",
		    sub->pc->name, topic, (int)m->partition, (long long)m->offset,
		    sub->upstream ? "hawser.v1.UpstreamMessage" : "hawser.v1.DownstreamMessage");
		rtr_kafka_release(k, r);
		return;
	}
	if (sub->filter != NULL) {
		rtr_kafka_forward(k, r);
		return;
	}
	if (sub->upstream && r->pub.received_at_us != 0) {
		uint64_t now = hw_clock_unix_us();

		if (now >= r->pub.received_at_us)
			hw_histogram_observe(k->e2e, (double)(now - r->pub.received_at_us) / 1e6);
	}
	rtr_kafka_offer(k, r);
}

// rtr_kafka_lag_gauge registers the lag gauge of one partition. The
// registry takes one label per metric, so the partition is named
// "<topic>[<partition>]" as in the RTR-ASSIGN log line.
static hw_gauge *rtr_kafka_lag_gauge(rtr_kafka *k, const char *topic, int32_t partition)
{
	char name[300];

	if (k->metrics == NULL)
		return NULL;
	snprintf(name, sizeof(name), "%s[%d]", topic, (int)partition);
	return hw_metrics_gauge(k->metrics, "hawser_router_consumer_lag",
	    "Records of a consumed partition not yet done (Kafka's high watermark - the first offset not yet acked by every broker); -1 once another router owns the partition.",
	    "partition", name);
}

// rtr_kafka_lag hands the assignment to the lag thread and sets the gauges
// from its newest answers: lag = high watermark - the first offset not yet
// done here (the head of the in-flight list, else the offset after the
// last record done, else the group's committed offset).
static void rtr_kafka_lag(rtr_kafka *k)
{
	rd_kafka_topic_partition_list_t *want;
	rtr_lag_result                   res;

	if (k->lagq == NULL)
		return;
	if ((want = rd_kafka_topic_partition_list_new(8)) != NULL) {
		for (rtr_kafka_part *p = k->parts; p != NULL; p = p->next)
			rd_kafka_topic_partition_list_add(want, p->topic, p->partition);
		rtr_lag_want(k->lagq, want);
		rd_kafka_topic_partition_list_destroy(want);
	}
	if (!rtr_lag_take(k->lagq, &res))
		return;
	for (size_t i = 0; i < res.n; i++) {
		const rtr_lag_entry *e = &res.v[i];
		rtr_kafka_part      *p = rtr_kafka_part_find(k, e->topic, e->partition);
		int64_t              at;

		if (p == NULL)
			continue; // revoked meanwhile
		at = p->head != NULL ? p->head->offset : p->done >= 0 ? p->done : e->base;
		if (at < 0 || e->hi < 0)
			continue;
		hw_gauge_set(p->lag, e->hi > at ? e->hi - at : 0);
	}
	rtr_lag_result_fini(&res);
}

static void rtr_kafka_assign(rtr_kafka *k, const rd_kafka_topic_partition_list_t *parts)
{
	for (int i = 0; i < parts->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &parts->elems[i];
		rtr_kafka_part                   *p;

		if (rtr_kafka_part_find(k, tp->topic, tp->partition) != NULL)
			continue;
		if ((p = calloc(1, sizeof(*p))) == NULL || (p->topic = strdup(tp->topic)) == NULL) {
			free(p);
			hw_log_error("RTR-CONSUME", "out of memory tracking %s[%d]", tp->topic,
			    (int)tp->partition);
			continue;
		}
		p->partition = tp->partition;
		p->commit = -1;
		p->done = -1;
		p->lag = rtr_kafka_lag_gauge(k, tp->topic, tp->partition);
		p->next = k->parts;
		k->parts = p;
		hw_log_info("RTR-ASSIGN", "consuming %s[%d]", tp->topic, (int)tp->partition);
	}
}

// rtr_kafka_commit commits every partition whose done prefix advanced (only
// those in `only` when not NULL); sync for a revoke, async otherwise.
static void rtr_kafka_commit(rtr_kafka *k, const rd_kafka_topic_partition_list_t *only, bool sync)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t              rerr;

	if (k->consumer == NULL || (l = rd_kafka_topic_partition_list_new(4)) == NULL)
		return;
	for (rtr_kafka_part *p = k->parts; p != NULL; p = p->next) {
		if (p->commit < 0)
			continue;
		if (only != NULL && rd_kafka_topic_partition_list_find(only, p->topic, p->partition) == NULL)
			continue;
		rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->commit;
		p->commit = -1;
	}
	if (l->cnt > 0) {
		hw_counter_inc(k->commits);
		if ((rerr = rd_kafka_commit(k->consumer, l, sync ? 0 : 1)) != RD_KAFKA_RESP_ERR_NO_ERROR)
			hw_log_warn("RTR-COMMIT", "offset commit failed: %s", rd_kafka_err2str(rerr));
	}
	rd_kafka_topic_partition_list_destroy(l);
}

// rtr_kafka_revoke commits what is done in parts, then forgets them: records
// still in flight become orphans (their next owner redelivers them).
static void rtr_kafka_revoke(rtr_kafka *k, const rd_kafka_topic_partition_list_t *parts)
{
	rtr_kafka_commit(k, parts, true);
	for (rtr_kafka_part **pp = &k->parts; *pp != NULL;) {
		rtr_kafka_part *p = *pp;

		if (parts != NULL && rd_kafka_topic_partition_list_find(parts, p->topic,
		    p->partition) == NULL) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		for (rtr_kafka_rec *r = p->head; r != NULL;) {
			rtr_kafka_rec *next = r->next;

			r->part = NULL;
			r->next = NULL;
			r = next;
		}
		hw_log_info("RTR-REVOKE", "no longer consuming %s[%d]", p->topic, (int)p->partition);
		hw_gauge_set(p->lag, -1); // another router's now
		free(p->topic);
		free(p);
	}
}

static void rtr_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	rtr_kafka *k = opaque;
	bool       coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		rtr_kafka_assign(k, parts);
		if (coop) {
			rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);

			if (e != NULL) {
				hw_log_warn("RTR-ASSIGN", "%s", rd_kafka_error_string(e));
				rd_kafka_error_destroy(e);
			}
		} else {
			(void)rd_kafka_assign(rk, parts);
		}
		return;
	}
	rtr_kafka_revoke(k, coop ? parts : NULL);
	if (coop) {
		rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);

		if (e != NULL) {
			hw_log_warn("RTR-REVOKE", "%s", rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
		}
	} else {
		(void)rd_kafka_assign(rk, NULL);
	}
}

static void rtr_kafka_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	(void)rk;
	(void)offsets;
	(void)opaque;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		hw_log_warn("RTR-COMMIT", "offset commit failed: %s (the records will be redelivered)",
		    rd_kafka_err2str(err));
}

// ---------------------------------------------------------------------------
// The processing thread's calls

// rtr_kafka_pause pauses (or resumes) fetching for the whole assignment.
static void rtr_kafka_pause(rtr_kafka *k, bool pause)
{
	rd_kafka_topic_partition_list_t *a = NULL;

	if (rd_kafka_assignment(k->consumer, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || a == NULL)
		return;
	if (a->cnt > 0) {
		if (pause)
			(void)rd_kafka_pause_partitions(k->consumer, a);
		else
			(void)rd_kafka_resume_partitions(k->consumer, a);
	}
	rd_kafka_topic_partition_list_destroy(a);
}

bool rtr_kafka_poll(rtr_kafka *k)
{
	rtr_kafka_rec *r;
	bool           more = false;
	bool           brokers = rtr_fanout_connected(k->fanout) > 0;
	unsigned       n;

	if (k->consumer != NULL && brokers == k->waiting_brokers) {
		// Nobody to deliver to: fetching stops (records stay in Kafka),
		// but the consumer is still polled so rebalances are served.
		if (!brokers)
			hw_log_warn("RTR-CONSUME", "no broker connected: consuming paused");
		else
			hw_log_info("RTR-CONSUME", "a broker is connected: consuming");
		k->waiting_brokers = !brokers;
		rtr_kafka_pause(k, !brokers);
	}
	r = k->retry;
	k->retry = NULL;
	while (r != NULL) {
		rtr_kafka_rec *next = r->rnext;

		r->rnext = NULL;
		if (r->part == NULL)
			rtr_kafka_release(k, r); // revoked meanwhile: its new owner has it
		else if (r->sub != NULL && r->sub->filter != NULL)
			rtr_kafka_forward(k, r);
		else
			rtr_kafka_offer(k, r);   // back on the retry list while paused
		r = next;
	}
	for (n = 0; n < RTR_KAFKA_POLL_MAX && rd_kafka_poll(k->producer, 0) > 0; n++)
		;
	if (n == RTR_KAFKA_POLL_MAX)
		more = true;
	if (k->consumer == NULL)
		return more;
	if (k->waiting_brokers)
		rtr_kafka_pause(k, true); // partitions assigned meanwhile too
	for (n = 0; n < RTR_KAFKA_POLL_MAX && k->inflight < RTR_KAFKA_INFLIGHT_MAX; n++) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, 0);

		if (m == NULL)
			break;
		rtr_kafka_record(k, m);
		rd_kafka_message_destroy(m);
	}
	if (n == RTR_KAFKA_POLL_MAX)
		more = true;
	return more;
}

void rtr_kafka_pass_end(rtr_kafka *k)
{
	uint64_t now = hw_clock_mono_ms();

	rtr_kafka_commit(k, NULL, false);
	if (now >= k->lag_at_ms) {
		k->lag_at_ms = now + k->cfg->router.kafka.lag_interval_ms;
		rtr_kafka_lag(k);
	}
	while (k->freeq != NULL) {
		rtr_kafka_rec *r = k->freeq;

		k->freeq = r->next;
		rtr_kafka_rec_free(k, r);
	}
}

void rtr_kafka_free(rtr_kafka *k)
{
	if (k == NULL)
		return;
	k->closing = true;
	rtr_lag_stop(k->lagq); // it uses the consumer
	if (k->consumer != NULL) {
		// Leaves the group; the revoke callback commits what is done.
		(void)rd_kafka_consumer_close(k->consumer);
		if (k->cq != NULL)
			rd_kafka_queue_destroy(k->cq);
		rd_kafka_destroy(k->consumer);
	}
	if (k->producer != NULL) {
		// Outstanding records are dropped; their delivery reports only
		// free their opaques (closing).
		(void)rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		(void)rd_kafka_flush(k->producer, 2000);
		while (rd_kafka_poll(k->producer, 0) > 0)
			;
		if (k->pq != NULL)
			rd_kafka_queue_destroy(k->pq);
		rd_kafka_destroy(k->producer);
	}
	while (k->live != NULL)
		rtr_kafka_rec_free(k, k->live);
	while (k->parts != NULL) {
		rtr_kafka_part *p = k->parts;

		k->parts = p->next;
		free(p->topic);
		free(p);
	}
	for (size_t i = 0; i < k->nsubs; i++) {
		rtr_filter_free(k->subs[i]->filter);
		free(k->subs[i]->topic);
		free(k->subs[i]);
	}
	free(k->subs);
	while (k->stats != NULL) {
		rtr_kafka_stat *st = k->stats;

		k->stats = st->next;
		free(st);
	}
	rtr_pipeconf_props_free(k->props);
	free(k);
}
