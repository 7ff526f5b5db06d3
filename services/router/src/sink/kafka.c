// The Kafka sink: client publishes become hawser.v1.UpstreamMessage records
// on the pipeline's Kafka topic, completed by Kafka's acknowledgement
// (sink.h, kafka/kafka.h).

#include <stdlib.h>

#include "kafka/kafka.h"
#include "kafka/pipeconf.h"
#include "sink/sink.h"

typedef struct rtr_sink_kafka_state {
	rtr_kafka          *kafka;
	const rtr_pipeconf *pipe;
} rtr_sink_kafka_state;

static hw_err rtr_sink_kafka_open(void **out, const rtr_sink_env *env)
{
	rtr_sink_kafka_state *st;

	if (out == NULL || env == NULL || env->kafka == NULL || env->pipe == NULL ||
	    env->pipe->topic == NULL)
		return HW_EINVAL;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return HW_ENOMEM;
	st->kafka = env->kafka;
	st->pipe = env->pipe;
	*out = st;
	return HW_OK;
}

static hw_err rtr_sink_kafka_publish(void *sink, const rtr_msg *msg, rtr_sink_done done)
{
	rtr_sink_kafka_state *st = sink;

	// The record is encoded and copied now: msg may go after the pass.
	return rtr_kafka_produce(st->kafka, st->pipe, msg, done);
}

static void rtr_sink_kafka_close(void *sink)
{
	free(sink);
}

// librdkafka batches on its own (linger.ms): nothing to flush per pass.
const rtr_sink_ops rtr_sink_kafka = {
	.name = "kafka",
	.open = rtr_sink_kafka_open,
	.publish = rtr_sink_kafka_publish,
	.flush = NULL,
	.close = rtr_sink_kafka_close,
};
