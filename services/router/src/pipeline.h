#ifndef RTR_PIPELINE_H
#define RTR_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"
#include "sink/sink.h"

// The pipeline table: ordered rows {name, MQTT topic filter, mode, sink}.
// A client publish (upstream, from a broker) goes to the first row whose
// filter matches its topic and whose mode takes client publishes. Today the
// router builds one row, the catch-all `direct` row (filter NULL: every
// topic, $-topics included); Kafka pipelines (rows with filters and Kafka
// sinks, from config keys still to come) are added before it so that
// topics they do not claim still fall through to it.
//
// Threading: the table is built before the processing thread starts and is
// read-only afterwards except for the sinks' own state, which only the
// processing thread touches.

typedef enum rtr_pipeline_mode {
	RTR_MODE_PUBLISH_ONLY = 0, // client -> Kafka
	RTR_MODE_PUBLISH_CONSUME,  // client -> Kafka -> router -> subscribers
	RTR_MODE_CONSUME_ONLY,     // backend -> Kafka -> router -> subscribers
	RTR_MODE_FILTERED,         // client -> Kafka raw -> filter -> Kafka clean -> subscribers
	RTR_MODE_DIRECT,           // client -> router -> subscribers, no Kafka
} rtr_pipeline_mode;

typedef struct rtr_pipeline {
	char               *name;
	char               *filter; // MQTT topic filter; NULL matches every topic
	rtr_pipeline_mode   mode;
	const rtr_sink_ops *ops;
	void               *sink;   // owned by the row; closed with the table
} rtr_pipeline;

typedef struct rtr_pipeline_table rtr_pipeline_table;

// rtr_pipeline_table_alloc creates an empty table.
hw_err rtr_pipeline_table_alloc(rtr_pipeline_table **out);

// rtr_pipeline_add appends a row. filter NULL matches every topic; otherwise
// it must be a valid MQTT topic filter (HW_EINVAL). ops and sink may be NULL
// only for consume_only rows (they take no client publishes). On HW_OK the
// row owns sink (closed by rtr_pipeline_table_free); on error the caller
// still does. Not thread-safe: build the table before using it.
hw_err rtr_pipeline_add(rtr_pipeline_table *t, const char *name, const char *filter,
    rtr_pipeline_mode mode, const rtr_sink_ops *ops, void *sink);

// rtr_pipeline_match returns the first row that takes client publishes
// (every mode but consume_only) and whose filter matches topic, or NULL.
// Any thread, once the table is built.
const rtr_pipeline *rtr_pipeline_match(const rtr_pipeline_table *t, hw_bytes topic);

// rtr_pipeline_count returns the number of rows.
size_t rtr_pipeline_count(const rtr_pipeline_table *t);

// rtr_pipeline_at returns row i (< count), in table order.
const rtr_pipeline *rtr_pipeline_at(const rtr_pipeline_table *t, size_t i);

// rtr_pipeline_flush ends a processing pass: calls flush on every row's sink
// that has one. Processing thread only.
void rtr_pipeline_flush(rtr_pipeline_table *t);

// rtr_pipeline_table_free closes every row's sink and frees the table. NULL
// is ignored.
void rtr_pipeline_table_free(rtr_pipeline_table *t);

// rtr_pipeline_mode_parse maps "publish_only", "publish_consume",
// "consume_only", "filtered", "direct" to a mode; HW_EINVAL otherwise.
hw_err rtr_pipeline_mode_parse(const char *s, rtr_pipeline_mode *out);

// rtr_pipeline_mode_name is the inverse of rtr_pipeline_mode_parse.
const char *rtr_pipeline_mode_name(rtr_pipeline_mode mode);

// rtr_pipeline_mode_upstream reports whether rows of this mode take client
// publishes (all but consume_only).
bool rtr_pipeline_mode_upstream(rtr_pipeline_mode mode);

#endif
