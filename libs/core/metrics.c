// Prometheus metrics registry (core/metrics.h).
//
// Design notes:
// - A registry is a list of families in registration order; a family is one
//   metric name with its help, type, label name and a list of children (one
//   per label value, or one unlabelled child).
// - The registry mutex guards the lists: registration and rendering take it.
//   Updates never do: counters and gauges are single atomics, a histogram is
//   an array of atomic per-bucket counts plus its sum as the bits of a double
//   updated with compare-and-swap. Relaxed ordering is enough, since each
//   value is independent and rendering is a snapshot.
// - A histogram's total count is not stored separately: rendering sums the
//   per-bucket counts, so _count and the +Inf bucket always agree.
// - Children are never freed before the registry, so the pointers handed out
//   stay valid until hw_metrics_free.

#include "core/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define METRICS_MAX_BUCKETS 16

typedef enum metrics_type {
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
} metrics_type;

static const char *const metrics_type_names[] = {
	[METRICS_COUNTER] = "counter",
	[METRICS_GAUGE] = "gauge",
	[METRICS_HISTOGRAM] = "histogram",
};

struct hw_counter {
	_Atomic uint64_t v;
};

struct hw_gauge {
	_Atomic int64_t v;
};

struct hw_histogram {
	const double    *bounds; // the family's; n entries, ascending
	int              n;
	_Atomic uint64_t counts[METRICS_MAX_BUCKETS + 1]; // last is +Inf
	_Atomic uint64_t sum_bits; // a double, as bits
};

typedef struct metrics_child {
	struct metrics_child *next;
	char                 *label_value; // NULL when unlabelled
	union {
		struct hw_counter   c;
		struct hw_gauge     g;
		struct hw_histogram h;
	} u;
} metrics_child;

typedef struct metrics_family {
	struct metrics_family *next;
	char                  *name;
	char                  *help;
	char                  *label_name; // NULL when unlabelled
	metrics_type           type;
	double                 bounds[METRICS_MAX_BUCKETS];
	int                    nbounds;
	metrics_child         *children;
	metrics_child        **children_tail;
} metrics_family;

struct hw_metrics {
	pthread_mutex_t  mtx;
	metrics_family  *families;
	metrics_family **families_tail;
};

hw_err hw_metrics_alloc(hw_metrics **out)
{
	hw_metrics *reg = calloc(1, sizeof(*reg));

	if (reg == NULL)
		return HW_ENOMEM;
	if (pthread_mutex_init(&reg->mtx, NULL) != 0) {
		free(reg);
		return HW_ENOMEM;
	}
	reg->families_tail = &reg->families;
	*out = reg;
	return HW_OK;
}

static void metrics_family_free(metrics_family *f)
{
	metrics_child *c = f->children;

	while (c != NULL) {
		metrics_child *next = c->next;
		free(c->label_value);
		free(c);
		c = next;
	}
	free(f->name);
	free(f->help);
	free(f->label_name);
	free(f);
}

void hw_metrics_free(hw_metrics *reg)
{
	metrics_family *f;

	if (reg == NULL)
		return;
	f = reg->families;
	while (f != NULL) {
		metrics_family *next = f->next;
		metrics_family_free(f);
		f = next;
	}
	pthread_mutex_destroy(&reg->mtx);
	free(reg);
}

static bool metrics_str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static char *metrics_strdup_opt(const char *s, bool *oom)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*oom = true;
	return d;
}

// metrics_family_get finds the family `name` or creates it. Called with the
// registry lock held. Returns NULL on ENOMEM or when `name` exists with
// another type or label name (a programming error, logged).
static metrics_family *metrics_family_get(hw_metrics *reg, const char *name,
    const char *help, metrics_type type, const char *label_name,
    const double *buckets, int n)
{
	metrics_family *f;
	bool            oom = false;

	for (f = reg->families; f != NULL; f = f->next) {
		if (strcmp(f->name, name) != 0)
			continue;
		if (f->type != type || !metrics_str_eq(f->label_name, label_name)) {
			hw_log_error("HW-METRICS-CONFLICT",
			    "metric %s registered again with another type or label",
			    name);
			return NULL;
		}
		return f;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->name = metrics_strdup_opt(name, &oom);
	f->help = metrics_strdup_opt(help != NULL ? help : "", &oom);
	f->label_name = metrics_strdup_opt(label_name, &oom);
	if (oom) {
		metrics_family_free(f);
		return NULL;
	}
	f->type = type;
	f->children_tail = &f->children;
	for (int i = 0; i < n && i < METRICS_MAX_BUCKETS; i++)
		f->bounds[f->nbounds++] = buckets[i];
	*reg->families_tail = f;
	reg->families_tail = &f->next;
	return f;
}

// metrics_child_get finds or creates the child with label_value in f.
static metrics_child *metrics_child_get(metrics_family *f, const char *label_value)
{
	metrics_child *c;
	bool           oom = false;

	for (c = f->children; c != NULL; c = c->next) {
		if (metrics_str_eq(c->label_value, label_value))
			return c;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->label_value = metrics_strdup_opt(label_value, &oom);
	if (oom) {
		free(c);
		return NULL;
	}
	if (f->type == METRICS_HISTOGRAM) {
		c->u.h.bounds = f->bounds;
		c->u.h.n = f->nbounds;
		double zero = 0.0;
		uint64_t bits;
		memcpy(&bits, &zero, sizeof(bits));
		atomic_init(&c->u.h.sum_bits, bits);
	}
	*f->children_tail = c;
	f->children_tail = &c->next;
	return c;
}

static metrics_child *metrics_register(hw_metrics *reg, const char *name,
    const char *help, metrics_type type, const char *label_name,
    const char *label_value, const double *buckets, int n)
{
	metrics_family *f;
	metrics_child  *c = NULL;

	if (reg == NULL || name == NULL)
		return NULL;
	// A label needs both its name and its value.
	if (label_name == NULL || label_value == NULL)
		label_name = label_value = NULL;
	pthread_mutex_lock(&reg->mtx);
	f = metrics_family_get(reg, name, help, type, label_name, buckets, n);
	if (f != NULL)
		c = metrics_child_get(f, label_value);
	pthread_mutex_unlock(&reg->mtx);
	return c;
}

hw_counter *hw_metrics_counter(hw_metrics *reg, const char *name,
    const char *help, const char *label_name, const char *label_value)
{
	metrics_child *c = metrics_register(reg, name, help, METRICS_COUNTER,
	    label_name, label_value, NULL, 0);
	return c != NULL ? &c->u.c : NULL;
}

hw_gauge *hw_metrics_gauge(hw_metrics *reg, const char *name,
    const char *help, const char *label_name, const char *label_value)
{
	metrics_child *c = metrics_register(reg, name, help, METRICS_GAUGE,
	    label_name, label_value, NULL, 0);
	return c != NULL ? &c->u.g : NULL;
}

hw_histogram *hw_metrics_histogram(hw_metrics *reg, const char *name,
    const char *help, const double *buckets, int n)
{
	metrics_child *c;

	if (n < 0 || n > METRICS_MAX_BUCKETS || (n > 0 && buckets == NULL))
		return NULL;
	for (int i = 1; i < n; i++) {
		if (!(buckets[i - 1] < buckets[i]))
			return NULL; // not ascending: a programming error
	}
	c = metrics_register(reg, name, help, METRICS_HISTOGRAM, NULL, NULL,
	    buckets, n);
	return c != NULL ? &c->u.h : NULL;
}

void hw_counter_inc(hw_counter *c)
{
	if (c != NULL)
		atomic_fetch_add_explicit(&c->v, 1, memory_order_relaxed);
}

void hw_counter_add(hw_counter *c, uint64_t n)
{
	if (c != NULL)
		atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

uint64_t hw_counter_get(const hw_counter *c)
{
	if (c == NULL)
		return 0;
	return atomic_load_explicit(&((hw_counter *)c)->v, memory_order_relaxed);
}

void hw_gauge_set(hw_gauge *g, int64_t v)
{
	if (g != NULL)
		atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void hw_gauge_add(hw_gauge *g, int64_t delta)
{
	if (g != NULL)
		atomic_fetch_add_explicit(&g->v, delta, memory_order_relaxed);
}

int64_t hw_gauge_get(const hw_gauge *g)
{
	if (g == NULL)
		return 0;
	return atomic_load_explicit(&((hw_gauge *)g)->v, memory_order_relaxed);
}

void hw_histogram_observe(hw_histogram *h, double v)
{
	int      i;
	uint64_t old_bits, new_bits;
	double   sum;

	if (h == NULL || isnan(v))
		return;
	for (i = 0; i < h->n; i++) {
		if (v <= h->bounds[i])
			break;
	}
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	old_bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
	do {
		memcpy(&sum, &old_bits, sizeof(sum));
		sum += v;
		memcpy(&new_bits, &sum, sizeof(sum));
	} while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old_bits,
	    new_bits, memory_order_relaxed, memory_order_relaxed));
}

// Rendering. Every append goes through one sticky error so the functions
// below stay straight-line.
typedef struct metrics_out {
	hw_buf *buf;
	hw_err  err;
} metrics_out;

static void metrics_put(metrics_out *o, const char *s, size_t n)
{
	if (o->err == HW_OK)
		o->err = hw_buf_append(o->buf, s, n);
}

static void metrics_puts(metrics_out *o, const char *s)
{
	metrics_put(o, s, strlen(s));
}

// metrics_put_escaped escapes backslash and newline (HELP text), plus the
// double quote when `quote` (label values), as the text format requires.
static void metrics_put_escaped(metrics_out *o, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			metrics_puts(o, "\\\\");
		else if (*s == '\n')
			metrics_puts(o, "\\n");
		else if (quote && *s == '"')
			metrics_puts(o, "\\\"");
		else
			metrics_put(o, s, 1);
	}
}

// metrics_fmt_double writes v as the shortest decimal that reads back as v,
// with Prometheus' spellings of the special values.
static void metrics_fmt_double(char *dst, size_t cap, double v)
{
	if (isnan(v)) {
		snprintf(dst, cap, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(dst, cap, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	// Integral values print plainly ("200000", not "2e+05").
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(dst, cap, "%.0f", v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(dst, cap, "%.*g", prec, v);
		if (strtod(dst, NULL) == v)
			return;
	}
}

static void metrics_put_u64(metrics_out *o, uint64_t v)
{
	char tmp[32];

	snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	metrics_puts(o, tmp);
}

// metrics_put_series writes "name{label="value"}" (or just the name),
// `suffix` appended to the name, then a space.
static void metrics_put_series(metrics_out *o, const metrics_family *f,
    const metrics_child *c, const char *suffix, const char *le)
{
	metrics_puts(o, f->name);
	metrics_puts(o, suffix);
	if (c->label_value != NULL || le != NULL) {
		metrics_puts(o, "{");
		if (c->label_value != NULL) {
			metrics_puts(o, f->label_name);
			metrics_puts(o, "=\"");
			metrics_put_escaped(o, c->label_value, true);
			metrics_puts(o, "\"");
		}
		if (le != NULL) {
			if (c->label_value != NULL)
				metrics_puts(o, ",");
			metrics_puts(o, "le=\"");
			metrics_puts(o, le);
			metrics_puts(o, "\"");
		}
		metrics_puts(o, "}");
	}
	metrics_puts(o, " ");
}

static void metrics_render_histogram(metrics_out *o, const metrics_family *f,
    const metrics_child *c)
{
	const hw_histogram *h = &c->u.h;
	uint64_t            cum = 0;
	uint64_t            bits;
	double              sum;
	char                tmp[40];

	for (int i = 0; i <= h->n; i++) {
		cum += atomic_load_explicit(&((hw_histogram *)h)->counts[i],
		    memory_order_relaxed);
		if (i < h->n)
			metrics_fmt_double(tmp, sizeof(tmp), h->bounds[i]);
		else
			snprintf(tmp, sizeof(tmp), "+Inf");
		metrics_put_series(o, f, c, "_bucket", tmp);
		metrics_put_u64(o, cum);
		metrics_puts(o, "\n");
	}
	bits = atomic_load_explicit(&((hw_histogram *)h)->sum_bits, memory_order_relaxed);
	memcpy(&sum, &bits, sizeof(sum));
	metrics_fmt_double(tmp, sizeof(tmp), sum);
	metrics_put_series(o, f, c, "_sum", NULL);
	metrics_puts(o, tmp);
	metrics_puts(o, "\n");
	metrics_put_series(o, f, c, "_count", NULL);
	metrics_put_u64(o, cum);
	metrics_puts(o, "\n");
}

static void metrics_render_family(metrics_out *o, const metrics_family *f)
{
	char tmp[32];

	metrics_puts(o, "# HELP ");
	metrics_puts(o, f->name);
	metrics_puts(o, " ");
	metrics_put_escaped(o, f->help, false);
	metrics_puts(o, "\n# TYPE ");
	metrics_puts(o, f->name);
	metrics_puts(o, " ");
	metrics_puts(o, metrics_type_names[f->type]);
	metrics_puts(o, "\n");
	for (const metrics_child *c = f->children; c != NULL; c = c->next) {
		switch (f->type) {
		case METRICS_COUNTER:
			metrics_put_series(o, f, c, "", NULL);
			metrics_put_u64(o, hw_counter_get(&c->u.c));
			metrics_puts(o, "\n");
			break;
		case METRICS_GAUGE:
			metrics_put_series(o, f, c, "", NULL);
			snprintf(tmp, sizeof(tmp), "%lld", (long long)hw_gauge_get(&c->u.g));
			metrics_puts(o, tmp);
			metrics_puts(o, "\n");
			break;
		case METRICS_HISTOGRAM:
			metrics_render_histogram(o, f, c);
			break;
		}
	}
}

hw_err hw_metrics_render(hw_metrics *reg, hw_buf *out)
{
	metrics_out o = { out, HW_OK };

	if (reg == NULL || out == NULL)
		return HW_EINVAL;
	pthread_mutex_lock(&reg->mtx);
	for (const metrics_family *f = reg->families; f != NULL; f = f->next)
		metrics_render_family(&o, f);
	pthread_mutex_unlock(&reg->mtx);
	return o.err;
}
