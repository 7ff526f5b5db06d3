#ifndef RTR_SINK_SINK_H
#define RTR_SINK_SINK_H

#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "link/link.h"

// A sink is where a pipeline sends the client publishes it matched: the
// `direct` sink offers them straight to the brokers (fanout.h); a Kafka sink
// produces them to a Kafka topic. Variation lives behind the const
// ops table rtr_sink_ops (STYLE.md), so the pipeline table and the server
// never test which sink they hold.
//
// Threading: every op is called on the router's one processing thread, so a
// sink needs no locking of its own for state touched only there. Ops never
// block.
//
// A processing pass: the server hands the sink every publish it took from
// its inbox in one go, then calls flush. A `msg` given to publish is valid
// until that flush returns; a sink that needs it longer copies it.

typedef Hawser__Internal__V1__Publish rtr_msg;

typedef struct rtr_fanout rtr_fanout;
typedef struct rtr_kafka rtr_kafka;
typedef struct rtr_pipeconf rtr_pipeconf;

// rtr_sink_done_fn is the completion of one publish: reason is an MQTT 5
// reason code (0x00 taken and at least one subscriber matched, 0x10 taken,
// no subscriber matched, 0x80 and up failed). `origin` and `tag` are the
// values the caller put in its rtr_sink_done (for the direct path: the
// publishing broker's peer and its seq). Called exactly once per accepted
// publish that asked for it, on the processing thread: later (from inside a
// later publish, ack, flush or expiry), or from inside the accepting publish
// call itself when there is nothing to wait for.
typedef void (*rtr_sink_done_fn)(void *arg, void *origin, uint64_t tag, uint32_t reason);

// rtr_sink_done names who to tell when a publish is durable. fn NULL means
// nobody waits (a QoS 0 publish).
typedef struct rtr_sink_done {
	rtr_sink_done_fn fn;
	void            *arg;
	void            *origin;
	uint64_t         tag;
} rtr_sink_done;

// rtr_sink_env is what a sink may use when it opens. Everything is borrowed
// and outlives the sink.
typedef struct rtr_sink_env {
	const hw_config *cfg;
	hw_metrics      *metrics;
	rtr_fanout      *fanout;  // offers to brokers (the direct sink's target)
	rtr_kafka       *kafka;   // the Kafka client (Kafka sinks); NULL in direct mode
	const rtr_pipeconf *pipe; // the pipeline the sink serves (Kafka sinks)
} rtr_sink_env;

typedef struct rtr_sink_ops {
	// name is the sink's name in logs ("direct", "kafka").
	const char *name;

	// open creates one sink instance in *out from env. On error nothing is
	// left allocated.
	hw_err (*open)(void **out, const rtr_sink_env *env);

	// publish takes msg (borrowed until the pass's flush returns). On HW_OK
	// done.fn (when not NULL) is called exactly once later; on an error
	// done is never called and the caller answers the origin itself.
	hw_err (*publish)(void *sink, const rtr_msg *msg, rtr_sink_done done);

	// flush ends a processing pass: whatever the sink batched goes out.
	// May be NULL for sinks that batch on their own.
	void (*flush)(void *sink);

	// close frees the sink. Completions still outstanding are never
	// called. Called after the processing thread has stopped.
	void (*close)(void *sink);
} rtr_sink_ops;

// rtr_sink_direct offers every publish to every broker through the router's
// fanout (env->fanout must be set) and completes when they have all acked.
extern const rtr_sink_ops rtr_sink_direct;

// rtr_sink_kafka produces every publish to the pipeline's Kafka topic
// (env->kafka and env->pipe must be set; kafka.h) and completes when Kafka
// has acknowledged the record (0x00) or given up on it (0x80, after
// router.kafka.message_timeout_ms).
extern const rtr_sink_ops rtr_sink_kafka;

#endif
