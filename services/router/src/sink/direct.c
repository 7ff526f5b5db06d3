// The direct sink: client publishes go straight back to the brokers
// through the router's fanout, no Kafka in between (sink.h). The fanout
// offers each one to the live brokers of the members view and completes it
// once every session slot is covered, offering it again when a broker
// leaves or answers retry_slots (fanout.h), so the publishing broker's
// PUBACK waits for exactly that.

#include <stdlib.h>

#include "fanout.h"
#include "sink/sink.h"

typedef struct rtr_sink_direct_state {
	rtr_fanout *fanout;
} rtr_sink_direct_state;

static hw_err rtr_sink_direct_open(void **out, const rtr_sink_env *env)
{
	rtr_sink_direct_state *d;

	if (out == NULL || env == NULL || env->fanout == NULL)
		return HW_EINVAL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return HW_ENOMEM;
	d->fanout = env->fanout;
	*out = d;
	return HW_OK;
}

static hw_err rtr_sink_direct_publish(void *sink, const rtr_msg *msg, rtr_sink_done done)
{
	rtr_sink_direct_state *d = sink;

	return rtr_fanout_offer(d->fanout, msg, done);
}

static void rtr_sink_direct_close(void *sink)
{
	free(sink);
}

// The fanout's offers go out with the server's outbox flush at the end of
// each pass, so this sink has nothing of its own to flush.
const rtr_sink_ops rtr_sink_direct = {
	.name = "direct",
	.open = rtr_sink_direct_open,
	.publish = rtr_sink_direct_publish,
	.flush = NULL,
	.close = rtr_sink_direct_close,
};
