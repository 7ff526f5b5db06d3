#ifndef RTR_KAFKA_KAFKA_H
#define RTR_KAFKA_KAFKA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "kafka/pipeconf.h"
#include "sink/sink.h"

// The router's Kafka client (librdkafka): one idempotent producer shared by
// every pipeline that produces, and one consumer (group router.kafka.group,
// cooperative-sticky) for every pipeline that consumes.
//
// Producing: rtr_kafka_produce encodes a client publish as a
// hawser.v1.UpstreamMessage record (key per pipeline, headers content-type
// and hawser-schema/hawser-schema-version) and completes its `done` from
// the delivery report: 0x00 when Kafka took the record (acks=all), 0x80
// when it did not within router.kafka.message_timeout_ms.
//
// Consuming: each record is decoded (DownstreamMessage for consume_only,
// UpstreamMessage for publish_consume and filtered) and offered to every
// connected broker through the fanout. Offsets are committed only for
// records every offered broker has acked: per partition the records in
// flight are kept in offset order and the longest fully acked prefix is
// committed (manual commits, enable.auto.commit=false) at the end of a
// pass. A record whose offer failed (0x80: a broker failed or timed out) is
// offered again. While no broker is connected the assigned partitions are
// paused (records wait in Kafka; any already fetched wait in memory, not
// committed) and the consumer is still polled for rebalances. On a revoke, what is done is committed and the
// rest is left to the partition's next owner (at-least-once).
//
// Built-in filters: a filtered pipeline with `builtin` also consumes its
// raw topic; each raw record is judged (filter/filter.h) and, when
// accepted, produced unchanged to the clean topic; its raw offset is
// committed once that produce is acknowledged (or at once when rejected),
// under the same in-order rule as offered records.
//
// Threading: librdkafka's callbacks (delivery reports, rebalances) run on
// rd_kafka_poll / rd_kafka_consumer_poll, which only the router's
// processing thread calls (rtr_kafka_poll). librdkafka's own threads only
// call `wake` (from rd_kafka_queue_cb_event_enable) when an event is ready,
// so the processing thread wakes up and polls. Every other function is for
// the processing thread too, except alloc/consume/start (before it runs) and
// free (after it stopped).

typedef struct rtr_kafka rtr_kafka;

// rtr_kafka_wake_fn is called from librdkafka threads when events wait; it
// must only signal the processing thread.
typedef void (*rtr_kafka_wake_fn)(void *arg);

// rtr_kafka_alloc creates the producer from cfg->router.kafka.* (brokers
// required). fanout (borrowed) receives consumed records. Metrics (NULL ok)
// are registered per pipeline as they are added.
hw_err rtr_kafka_alloc(rtr_kafka **out, const hw_config *cfg, rtr_fanout *fanout,
    hw_metrics *metrics, rtr_kafka_wake_fn wake, void *wake_arg);

// rtr_kafka_consume declares that pipeline pc (borrowed for the client's
// life) consumes Kafka topic `topic`. Before rtr_kafka_start.
hw_err rtr_kafka_consume(rtr_kafka *k, const rtr_pipeconf *pc, const char *topic);

// rtr_kafka_start creates the consumer and subscribes when any pipeline
// consumes. Errors name what failed in the log.
hw_err rtr_kafka_start(rtr_kafka *k);

// rtr_kafka_produce produces msg for pipeline pc to pc->topic. On HW_OK
// done (fn may be NULL) is completed exactly once from a later
// rtr_kafka_poll; on an error (HW_EFULL: librdkafka's queue is full) done
// is never called.
hw_err rtr_kafka_produce(rtr_kafka *k, const rtr_pipeconf *pc, const rtr_msg *msg,
    rtr_sink_done done);

// rtr_kafka_events_on tells whether cfg asks for client lifecycle events
// (router.kafka.events_topic set), which need the Kafka client even in
// direct mode.
bool rtr_kafka_events_on(const hw_config *cfg);

// rtr_kafka_event produces a broker's client lifecycle event to
// router.kafka.events_topic as a hawser.v1.ClientEvent keyed by its client
// id (headers content-type, hawser-schema). Fire and forget: counted in
// hawser_router_events_total{result}. Does nothing when the topic is not
// set. Processing thread.
void rtr_kafka_event(rtr_kafka *k, const Hawser__V1__ClientEvent *ev);

// rtr_kafka_poll serves delivery reports, rebalances and consumed records
// (offering them), bounded per call. Returns true when more work is waiting
// (call again without sleeping).
bool rtr_kafka_poll(rtr_kafka *k);

// rtr_kafka_pass_end runs after the outbox flush of a pass: commits the
// offsets that advanced and frees records whose offers are over.
void rtr_kafka_pass_end(rtr_kafka *k);

// rtr_kafka_free leaves the group, drops whatever is in flight (no `done`
// is called) and frees the client. NULL ok.
void rtr_kafka_free(rtr_kafka *k);

#endif
