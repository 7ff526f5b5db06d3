// The pipeline table (pipeline.h).

#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "mqtt/topic.h"

struct rtr_pipeline_table {
	rtr_pipeline *rows;
	size_t        n;
	size_t        cap;
};

static const char *const rtr_pipeline_mode_names[] = {
	[RTR_MODE_PUBLISH_ONLY] = "publish_only",
	[RTR_MODE_PUBLISH_CONSUME] = "publish_consume",
	[RTR_MODE_CONSUME_ONLY] = "consume_only",
	[RTR_MODE_FILTERED] = "filtered",
	[RTR_MODE_DIRECT] = "direct",
};

#define RTR_PIPELINE_NMODES (sizeof(rtr_pipeline_mode_names) / sizeof(rtr_pipeline_mode_names[0]))

hw_err rtr_pipeline_table_alloc(rtr_pipeline_table **out)
{
	rtr_pipeline_table *t;

	if (out == NULL)
		return HW_EINVAL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return HW_ENOMEM;
	*out = t;
	return HW_OK;
}

hw_err rtr_pipeline_add(rtr_pipeline_table *t, const char *name, const char *filter,
    rtr_pipeline_mode mode, const rtr_sink_ops *ops, void *sink)
{
	rtr_pipeline row;

	if (t == NULL || name == NULL || (size_t)mode >= RTR_PIPELINE_NMODES)
		return HW_EINVAL;
	if (filter != NULL && !hw_topic_filter_valid(hw_bytes_of_cstr(filter)))
		return HW_EINVAL;
	if (rtr_pipeline_mode_upstream(mode) && (ops == NULL || ops->publish == NULL))
		return HW_EINVAL;
	if (t->n == t->cap) {
		size_t        cap = t->cap != 0 ? t->cap * 2 : 4;
		rtr_pipeline *rows = realloc(t->rows, cap * sizeof(*rows));

		if (rows == NULL)
			return HW_ENOMEM;
		t->rows = rows;
		t->cap = cap;
	}
	memset(&row, 0, sizeof(row));
	row.mode = mode;
	row.ops = ops;
	if ((row.name = strdup(name)) == NULL)
		goto fail;
	if (filter != NULL && (row.filter = strdup(filter)) == NULL)
		goto fail;
	row.sink = sink;
	t->rows[t->n++] = row;
	return HW_OK;

fail:
	free(row.name);
	return HW_ENOMEM;
}

const rtr_pipeline *rtr_pipeline_match(const rtr_pipeline_table *t, hw_bytes topic)
{
	for (size_t i = 0; i < t->n; i++) {
		const rtr_pipeline *row = &t->rows[i];

		if (!rtr_pipeline_mode_upstream(row->mode))
			continue;
		if (row->filter == NULL || hw_topic_match(hw_bytes_of_cstr(row->filter), topic))
			return row;
	}
	return NULL;
}

size_t rtr_pipeline_count(const rtr_pipeline_table *t)
{
	return t->n;
}

const rtr_pipeline *rtr_pipeline_at(const rtr_pipeline_table *t, size_t i)
{
	return i < t->n ? &t->rows[i] : NULL;
}

void rtr_pipeline_flush(rtr_pipeline_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		if (t->rows[i].ops != NULL && t->rows[i].ops->flush != NULL)
			t->rows[i].ops->flush(t->rows[i].sink);
	}
}

void rtr_pipeline_table_free(rtr_pipeline_table *t)
{
	if (t == NULL)
		return;
	// Close in reverse order of opening.
	for (size_t i = t->n; i-- > 0;) {
		if (t->rows[i].ops != NULL && t->rows[i].ops->close != NULL)
			t->rows[i].ops->close(t->rows[i].sink);
		free(t->rows[i].name);
		free(t->rows[i].filter);
	}
	free(t->rows);
	free(t);
}

hw_err rtr_pipeline_mode_parse(const char *s, rtr_pipeline_mode *out)
{
	if (s == NULL || out == NULL)
		return HW_EINVAL;
	for (size_t i = 0; i < RTR_PIPELINE_NMODES; i++) {
		if (strcmp(s, rtr_pipeline_mode_names[i]) == 0) {
			*out = (rtr_pipeline_mode)i;
			return HW_OK;
		}
	}
	return HW_EINVAL;
}

const char *rtr_pipeline_mode_name(rtr_pipeline_mode mode)
{
	return (size_t)mode < RTR_PIPELINE_NMODES ? rtr_pipeline_mode_names[mode] : "unknown";
}

bool rtr_pipeline_mode_upstream(rtr_pipeline_mode mode)
{
	return mode != RTR_MODE_CONSUME_ONLY && (size_t)mode < RTR_PIPELINE_NMODES;
}
