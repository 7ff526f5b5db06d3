#ifndef HW_CORE_METRICS_H
#define HW_CORE_METRICS_H

#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

// Prometheus metrics. A registry holds named families; each family has a
// fixed, small set of label values chosen at registration (never a client id
// or a topic). Updates are lock-free atomic adds on the hot path; rendering
// takes the registry lock.
//
// Names follow hawser_<tier>_<what>_<unit>, counters end in _total.
//
// Usage:
//   hw_counter *c = hw_metrics_counter(reg, "hawser_edge_connections_accepted_total",
//                                      "Connections accepted.", "listener", "mqtt");
//   hw_counter_inc(c);
// Registering the same name and label value twice returns the same metric.

typedef struct hw_metrics hw_metrics;
typedef struct hw_counter hw_counter;
typedef struct hw_gauge hw_gauge;
typedef struct hw_histogram hw_histogram;

// hw_metrics_alloc creates an empty registry.
hw_err hw_metrics_alloc(hw_metrics **out);
// hw_metrics_free frees the registry and every metric in it.
void hw_metrics_free(hw_metrics *reg);

// Registration: label_name/label_value may both be NULL for an unlabelled
// metric. Returns NULL only on ENOMEM; callers may pass NULL metrics to the
// update functions below, which then do nothing.
hw_counter *hw_metrics_counter(hw_metrics *reg, const char *name,
    const char *help, const char *label_name, const char *label_value);
hw_gauge *hw_metrics_gauge(hw_metrics *reg, const char *name,
    const char *help, const char *label_name, const char *label_value);
// Histogram buckets are upper bounds in the metric's base unit (seconds),
// ascending, n <= 16; +Inf is implicit.
hw_histogram *hw_metrics_histogram(hw_metrics *reg, const char *name,
    const char *help, const double *buckets, int n);

void hw_counter_inc(hw_counter *c);
void hw_counter_add(hw_counter *c, uint64_t n);
uint64_t hw_counter_get(const hw_counter *c);
void hw_gauge_set(hw_gauge *g, int64_t v);
void hw_gauge_add(hw_gauge *g, int64_t delta);
int64_t hw_gauge_get(const hw_gauge *g);
void hw_histogram_observe(hw_histogram *h, double v);

// hw_metrics_render appends the Prometheus text exposition of every family
// in reg to out. Safe to call from any thread.
hw_err hw_metrics_render(hw_metrics *reg, hw_buf *out);

#endif
