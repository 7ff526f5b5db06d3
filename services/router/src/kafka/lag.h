#ifndef RTR_KAFKA_LAG_H
#define RTR_KAFKA_LAG_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

// Consumer lag figures from Kafka itself, asked by a thread of their own:
// the high watermark of every assigned partition
// (rd_kafka_query_watermark_offsets, a request to the partition leader)
// and the group's committed offset (rd_kafka_committed), every interval.
// Asking Kafka, not librdkafka's cache, keeps the figure true while the
// router does not fetch (paused: no broker connected), which is when lag
// matters. The requests block, hence the thread: the processing thread
// only hands over the assignment and takes the latest answers.
//
// Threading: rtr_lag_want / rtr_lag_take from the processing thread; the
// thread only touches the consumer handle (librdkafka handles are
// thread-safe) and the exchange under the module's lock.

typedef struct rtr_lag rtr_lag;

typedef struct rtr_lag_entry {
	char   *topic;
	int32_t partition;
	int64_t hi;     // high watermark (next offset to be written)
	int64_t base;   // committed offset, else the low watermark; -1 unknown
} rtr_lag_entry;

typedef struct rtr_lag_result {
	rtr_lag_entry *v;
	size_t         n;
} rtr_lag_result;

// rtr_lag_start starts the thread asking consumer (borrowed; it must
// outlive rtr_lag_stop) every interval_ms.
hw_err rtr_lag_start(rtr_lag **out, rd_kafka_t *consumer, uint32_t interval_ms);

// rtr_lag_want replaces the partitions to ask about (copied).
void rtr_lag_want(rtr_lag *l, const rd_kafka_topic_partition_list_t *parts);

// rtr_lag_take moves the newest answers into *out (true) or returns false
// when none came since the last take. Free with rtr_lag_result_fini.
bool rtr_lag_take(rtr_lag *l, rtr_lag_result *out);

void rtr_lag_result_fini(rtr_lag_result *r);

// rtr_lag_stop stops and joins the thread (at most one request timeout)
// and frees the module. NULL ok.
void rtr_lag_stop(rtr_lag *l);

#endif
