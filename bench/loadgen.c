// loadgen: an MQTT load generator for Hawser and other brokers
// (see bench/README.md).
//
// Design notes
// - One process holds both ends of every flow (publishers and subscribers),
//   so a payload's send timestamp (CLOCK_MONOTONIC ns) is comparable with
//   the receive time: latency is publish-to-delivery through the broker.
// - Workers (-t, default 1) each own an epoll loop and a disjoint subset of
//   the connections (index % threads). The main thread only drives the
//   phases (connect, hold or publish, drain, stop), prints one progress line
//   a second on stderr and the single JSON result line on stdout.
// - Shared state between threads is limited to the phase, per-worker
//   counters and the per-publisher receipt counter (all atomics, relaxed:
//   they are statistics, nothing is ordered by them); histograms are per
//   worker and merged after the workers have joined.
// - Everything is bounded: connect deadline, hold/duration, drain timeout,
//   per-connection write buffer; the process always ends by itself.
// - It only ever connects to loopback addresses (127.0.0.0/8, ::1).

#define _GNU_SOURCE // memmem

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/err.h"
#include "mqtt/codec.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define LG_MAX_PACKET   (1u << 20)
#define LG_TX_HIGH      (256u * 1024u) // stop publishing on a conn above this
#define LG_RX_CHUNK     4096u          // grows geometrically when reads fill it
#define LG_RX_BURST     (256u * 1024u) // bytes read per readiness event
#define LG_HDR_LEN      16u            // ts_ns u64, publisher u32, seq u32
#define LG_EVENTS       512
#define LG_MAX_PIDS     16             // processes per --pid / --aux-pid list

// ---------------------------------------------------------------- options

typedef enum lg_scenario { LG_IDLE, LG_FANIN, LG_FANOUT, LG_P2P } lg_scenario;

// A set of processes measured together (a split deployment is several).
typedef struct lg_pids {
	pid_t    pid[LG_MAX_PIDS];
	unsigned n;
} lg_pids;

typedef struct lg_opts {
	lg_scenario scenario;
	const char *scenario_name;
	const char *target;      // label only
	const char *host;
	uint16_t    port;
	bool        ws;
	const char *ws_path;
	uint8_t     version;     // HW_MQTT_V311 or HW_MQTT_V5
	uint8_t     qos;
	uint32_t    conns;       // idle
	uint32_t    pubs;        // fanin
	uint32_t    subs;        // fanout
	uint32_t    pairs;       // p2p
	double      rate;        // total msgs/s, 0 = closed loop
	uint64_t    count;       // total publishes, 0 = as many as the duration allows
	uint32_t    window;      // closed loop: messages in flight per publisher
	uint32_t    max_inflight;// QoS 1 cap on unacked PUBLISH per connection
	uint32_t    size;        // payload bytes (>= 16)
	double      duration;    // publish seconds
	double      hold;        // idle: seconds to hold before measuring
	double      drain;       // seconds to wait for stragglers
	double      conn_rate;   // connects/s, total
	uint32_t    conn_window; // connects in progress per worker
	double      connect_timeout; // whole connect phase
	uint32_t    threads;
	lg_pids     pids;        // target processes to measure, n = 0: none
	lg_pids     aux;         // their dependencies (Redis, Kafka), reported apart
	const char *src_base;    // first source address
	uint32_t    src_count;   // rotate over this many source addresses
	bool        idle_sub;    // idle conns subscribe to their own topic
	bool        verbose;     // print why connections fail
	uint16_t    keepalive;
	uint32_t    session_expiry; // 0 = clean sessions; else persistent (v5: expiry, 3.1.1: clean 0)
} lg_opts;

// ---------------------------------------------------------------- histogram

// Log-linear histogram (HDR style): values below 2^LG_HIST_SUB are exact;
// above, each power of two is cut into 2^LG_HIST_SUB linear buckets, so
// the relative error is below 1/2^LG_HIST_SUB (1.6%).
#define LG_HIST_SUB     6
#define LG_HIST_BUCKETS ((64 - LG_HIST_SUB + 1) << LG_HIST_SUB)

typedef struct lg_hist {
	uint64_t bucket[LG_HIST_BUCKETS];
	uint64_t n;
	uint64_t max;
} lg_hist;

static unsigned lg_hist_index(uint64_t v)
{
	unsigned msb, b;

	if (v < (UINT64_C(1) << LG_HIST_SUB))
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	b = msb - LG_HIST_SUB;
	return (b << LG_HIST_SUB) + (unsigned)(v >> b);
}

// lg_hist_upper returns the highest value that lands in bucket i.
static uint64_t lg_hist_upper(unsigned i)
{
	unsigned b, sub;

	// Indices below 2^(SUB+1) hold exactly one value each.
	if (i < (2u << LG_HIST_SUB))
		return i;
	b = (i >> LG_HIST_SUB) - 1u;
	sub = (i & ((1u << LG_HIST_SUB) - 1u)) + (1u << LG_HIST_SUB);
	return (((uint64_t)sub + 1u) << b) - 1u;
}

static void lg_hist_add(lg_hist *h, uint64_t v)
{
	h->bucket[lg_hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static void lg_hist_merge(lg_hist *into, const lg_hist *from)
{
	for (unsigned i = 0; i < LG_HIST_BUCKETS; i++)
		into->bucket[i] += from->bucket[i];
	into->n += from->n;
	if (from->max > into->max)
		into->max = from->max;
}

// lg_hist_pct returns the value at quantile q (0..1), capped at the max seen.
static uint64_t lg_hist_pct(const lg_hist *h, double q)
{
	uint64_t want, seen = 0;

	if (h->n == 0)
		return 0;
	want = (uint64_t)(q * (double)h->n + 0.999999);
	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want) {
			uint64_t v = lg_hist_upper(i);
			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}

// ---------------------------------------------------------------- state

typedef enum lg_role { LG_ROLE_IDLE, LG_ROLE_PUB, LG_ROLE_SUB } lg_role;

typedef enum lg_state {
	LG_ST_NEW,
	LG_ST_TCP,       // TCP connect in progress
	LG_ST_WS,        // WebSocket handshake sent
	LG_ST_CONNACK,   // CONNECT sent
	LG_ST_SUBACK,    // SUBSCRIBE sent
	LG_ST_READY,
	LG_ST_CLOSED,
} lg_state;

static const char *const lg_role_names[] = { "idle", "publisher", "subscriber" };
static const char *const lg_state_names[] = {
	"new", "tcp-connect", "ws-handshake", "connack-wait", "suback-wait", "ready", "closed",
};

typedef enum lg_phase {
	LG_PH_CONNECT, LG_PH_HOLD, LG_PH_PUB, LG_PH_DRAIN, LG_PH_STOP,
} lg_phase;

static const char *const lg_phase_names[] = {
	"connect", "hold", "publish", "drain", "stop",
};

typedef struct lg_conn {
	int      fd;
	uint32_t idx;
	uint8_t  role;
	uint8_t  state;
	bool     out_armed;      // EPOLLOUT registered
	uint16_t next_pid;
	uint32_t unacked;        // QoS 1 PUBLISH without PUBACK
	uint32_t cap;            // unacked limit (server Receive Maximum)
	uint32_t topic;          // topic number
	uint64_t opened_ms;
	uint64_t last_tx_ms;
	hw_buf   rx;             // MQTT bytes
	hw_buf   wsrx;           // raw WebSocket bytes
	hw_buf   tx;
	// publisher only
	uint32_t seq;
	uint64_t sent;
	uint64_t e2e_skip;       // receipts given up on (QoS 0 closed loop)
	uint64_t rx_seen;
	uint64_t progress_ms;
	_Atomic uint64_t delivered; // deliveries of this publisher's messages
} lg_conn;

struct lg_run;

typedef struct lg_worker {
	struct lg_run *run;
	unsigned  id;
	int       ep;
	pthread_t th;
	uint32_t *mine;          // connection indices owned
	uint32_t  nmine;
	uint32_t  opened;        // of mine
	uint32_t  pending;       // opened, not yet ready or closed
	uint64_t  ramp_us;
	uint32_t *pubs;
	uint32_t  npubs;
	uint32_t  pub_rr;
	uint64_t  quota;         // publishes this worker may still send (count)
	double    pub_rate;
	double    tokens;
	uint64_t  tick_us;
	uint64_t  ping_ms;
	uint32_t  rng;
	unsigned  logged;        // failures printed (-v)
	hw_buf    scratch;
	hw_buf    frame;
	uint8_t  *payload;
	lg_hist   hist;
	_Atomic uint64_t n_ready, n_failed, n_dropped, n_sent, n_recv, n_acked;
	_Atomic uint64_t last_rx_us;
} lg_worker;

typedef struct lg_run {
	lg_opts   o;
	lg_conn  *conns;
	uint32_t  nconns, npub, nsub, fan;
	lg_worker *w;
	_Atomic int phase;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	struct in_addr src0;
	char      prefix[48];
	char      hosthdr[80];
} lg_run;

// ---------------------------------------------------------------- clocks

static uint64_t lg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t lg_now_us(void) { return lg_now_ns() / 1000u; }
static uint64_t lg_now_ms(void) { return lg_now_ns() / 1000000u; }

static void lg_sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

// ---------------------------------------------------------------- target

typedef struct lg_proc {
	bool     ok;
	uint64_t rss_kb;
	double   cpu_s;      // utime + stime, all threads
} lg_proc;

// A sample of a process set: the sum and each process.
typedef struct lg_sample {
	lg_proc sum;
	lg_proc each[LG_MAX_PIDS];
} lg_sample;

// lg_proc_read samples RSS (VmRSS) and CPU time of pid; ok=false if gone.
static lg_proc lg_proc_read(pid_t pid)
{
	lg_proc p = { false, 0, 0 };
	char path[64], line[4096];
	FILE *f;

	if (pid <= 0)
		return p;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return p;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			p.rss_kb = strtoull(line + 6, NULL, 10);
	}
	fclose(f);
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return p;
	if (fgets(line, sizeof line, f) != NULL) {
		// The command name may hold spaces and parentheses: fields are
		// counted from the last ')'. utime and stime are fields 14 and 15.
		char *s = strrchr(line, ')');
		unsigned long long ut = 0, st = 0;
		if (s != NULL && sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
		    &ut, &st) == 2) {
			p.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
			p.ok = true;
		}
	}
	fclose(f);
	return p;
}

// lg_sample_read samples every process of set; sum.ok is false if one is
// gone (or the set is empty).
static lg_sample lg_sample_read(const lg_pids *set)
{
	lg_sample s;

	memset(&s, 0, sizeof s);
	s.sum.ok = set->n > 0;
	for (unsigned i = 0; i < set->n; i++) {
		s.each[i] = lg_proc_read(set->pid[i]);
		s.sum.ok = s.sum.ok && s.each[i].ok;
		s.sum.rss_kb += s.each[i].rss_kb;
		s.sum.cpu_s += s.each[i].cpu_s;
	}
	return s;
}

// lg_host_busy returns the CPU seconds all processes of the host have used
// since boot (from /proc/stat), to tell how much of a run went to others.
static double lg_host_busy(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	int n = 0;

	if (f == NULL)
		return 0;
	// user nice system idle iowait irq softirq steal
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
	    &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 8)
		return 0;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double lg_self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

// ---------------------------------------------------------------- output

static void lg_arm(lg_worker *w, lg_conn *c, bool out)
{
	struct epoll_event ev;

	if (c->out_armed == out)
		return;
	ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
	ev.data.u64 = c->idx;
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_armed = out;
}

// lg_close closes c; why is NULL for an orderly close, else the failure
// (printed with -v, for the first few connections of each worker).
static void lg_close(lg_worker *w, lg_conn *c, const char *why)
{
	lg_state was = (lg_state)c->state;

	if (c->state == LG_ST_CLOSED || c->state == LG_ST_NEW)
		return;
	if (why != NULL && w->run->o.verbose && w->logged < 20) {
		w->logged++;
		fprintf(stderr, "loadgen: connection %u (%s) in state %s closed: %s\n", c->idx,
		    lg_role_names[c->role], lg_state_names[c->state], why);
	}
	if (c->fd >= 0) {
		epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = LG_ST_CLOSED;
	hw_buf_fini(&c->rx);
	hw_buf_fini(&c->wsrx);
	hw_buf_fini(&c->tx);
	if (was != LG_ST_READY) {
		w->pending--;
		atomic_fetch_add_explicit(&w->n_failed, 1, memory_order_relaxed);
	} else if (why != NULL) {
		atomic_fetch_add_explicit(&w->n_dropped, 1, memory_order_relaxed);
	}
}

// lg_flush writes as much of c->tx as the socket takes; false if c closed.
static bool lg_flush(lg_worker *w, lg_conn *c)
{
	while (c->tx.len > 0) {
		ssize_t n = send(c->fd, c->tx.ptr, c->tx.len, MSG_NOSIGNAL);
		if (n > 0) {
			hw_buf_consume(&c->tx, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			lg_arm(w, c, true);
			return true;
		}
		lg_close(w, c, "send failed");
		return false;
	}
	lg_arm(w, c, false);
	return true;
}

static uint32_t lg_rand(lg_worker *w)
{
	// xorshift32: WebSocket masks only need to vary, not to be secret.
	uint32_t x = w->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	w->rng = x;
	return x;
}

// lg_out queues MQTT bytes on c, in a masked binary frame over WebSocket.
static hw_err lg_out(lg_worker *w, lg_conn *c, const uint8_t *p, size_t n)
{
	uint8_t hdr[14], mask[4];
	size_t h = 0, at;
	uint32_t m;
	hw_err err;

	c->last_tx_ms = lg_now_ms();
	if (!w->run->o.ws)
		return hw_buf_append(&c->tx, p, n);
	hdr[h++] = 0x82;
	if (n < 126) {
		hdr[h++] = (uint8_t)(0x80u | n);
	} else if (n <= 0xFFFF) {
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (uint8_t)(n >> 8);
		hdr[h++] = (uint8_t)n;
	} else {
		hdr[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
	}
	m = lg_rand(w);
	memcpy(mask, &m, 4);
	memcpy(hdr + h, mask, 4);
	h += 4;
	if ((err = hw_buf_reserve(&c->tx, h + n)) != HW_OK)
		return err;
	hw_buf_append(&c->tx, hdr, h);
	at = c->tx.len;
	c->tx.len += n;
	for (size_t i = 0; i < n; i++)
		c->tx.ptr[at + i] = p[i] ^ mask[i & 3];
	return HW_OK;
}

// lg_send encodes p and queues it on c; false if it could not.
static bool lg_send(lg_worker *w, lg_conn *c, const hw_mqtt_packet *p)
{
	hw_buf_reset(&w->scratch);
	if (hw_mqtt_encode(p, w->run->o.version, &w->scratch) != HW_OK)
		return false;
	return lg_out(w, c, w->scratch.ptr, w->scratch.len) == HW_OK;
}

// ---------------------------------------------------------------- MQTT

static void lg_topic(const lg_run *r, uint32_t n, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%u", r->prefix, n);
}

static bool lg_send_connect(lg_worker *w, lg_conn *c)
{
	hw_mqtt_packet p;
	char id[64];

	memset(&p, 0, sizeof p);
	snprintf(id, sizeof id, "lg-%d-%u", (int)getpid(), c->idx);
	p.type = HW_MQTT_CONNECT;
	p.u.connect.version = w->run->o.version;
	p.u.connect.clean_start = true;
	if (w->run->o.session_expiry != 0) {
		// Persistent sessions (the broker's session store does work).
		p.u.connect.clean_start = w->run->o.version == HW_MQTT_V5;
		p.u.connect.props.session_expiry = w->run->o.session_expiry;
		if (w->run->o.version == HW_MQTT_V5)
			hw_mqtt_set(&p.u.connect.props, HW_PROP_SESSION_EXPIRY);
	}
	p.u.connect.keepalive = w->run->o.keepalive;
	p.u.connect.client_id = hw_bytes_of_cstr(id);
	c->state = LG_ST_CONNACK;
	return lg_send(w, c, &p);
}

static bool lg_send_subscribe(lg_worker *w, lg_conn *c)
{
	hw_mqtt_packet p;
	uint8_t entry[128];
	char topic[96];
	size_t tl;

	lg_topic(w->run, c->topic, topic, sizeof topic);
	tl = strlen(topic);
	entry[0] = (uint8_t)(tl >> 8);
	entry[1] = (uint8_t)tl;
	memcpy(entry + 2, topic, tl);
	entry[2 + tl] = w->run->o.qos;
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_SUBSCRIBE;
	p.flags = 0x2;
	p.u.subscribe.packet_id = 1;
	p.u.subscribe.count = 1;
	p.u.subscribe.entries = (hw_bytes){ entry, tl + 3 };
	c->state = LG_ST_SUBACK;
	return lg_send(w, c, &p);
}

static void lg_ready(lg_worker *w, lg_conn *c)
{
	c->state = LG_ST_READY;
	w->pending--;
	atomic_fetch_add_explicit(&w->n_ready, 1, memory_order_relaxed);
}

static bool lg_send_publish(lg_worker *w, lg_conn *c)
{
	lg_run *r = w->run;
	hw_mqtt_packet p;
	char topic[96];
	uint64_t ts = lg_now_ns();
	uint8_t *pl = w->payload;

	for (int i = 0; i < 8; i++)
		pl[i] = (uint8_t)(ts >> (56 - 8 * i));
	for (int i = 0; i < 4; i++) {
		pl[8 + i] = (uint8_t)(c->idx >> (24 - 8 * i));
		pl[12 + i] = (uint8_t)(c->seq >> (24 - 8 * i));
	}
	lg_topic(r, c->topic, topic, sizeof topic);
	memset(&p, 0, sizeof p);
	p.type = HW_MQTT_PUBLISH;
	p.u.publish.qos = r->o.qos;
	p.u.publish.topic = hw_bytes_of_cstr(topic);
	p.u.publish.payload = (hw_bytes){ pl, r->o.size };
	if (r->o.qos > 0) {
		if (++c->next_pid == 0)
			c->next_pid = 1;
		p.u.publish.packet_id = c->next_pid;
		p.flags = (uint8_t)(r->o.qos << 1);
	}
	if (!lg_send(w, c, &p))
		return false;
	c->seq++;
	c->sent++;
	w->quota--;
	if (r->o.qos > 0)
		c->unacked++;
	atomic_fetch_add_explicit(&w->n_sent, 1, memory_order_relaxed);
	return true;
}

static void lg_on_publish(lg_worker *w, lg_conn *c, const hw_mqtt_publish *pub)
{
	lg_run *r = w->run;
	uint64_t now = lg_now_ns(), ts = 0;
	uint32_t from = 0;

	if (pub->qos == 1) {
		hw_buf_reset(&w->scratch);
		if (hw_mqtt_encode_ack(HW_MQTT_PUBACK, pub->packet_id, 0, r->o.version,
		    &w->scratch) == HW_OK)
			lg_out(w, c, w->scratch.ptr, w->scratch.len);
	}
	if (pub->payload.len < LG_HDR_LEN)
		return;
	for (int i = 0; i < 8; i++)
		ts = (ts << 8) | pub->payload.ptr[i];
	for (int i = 0; i < 4; i++)
		from = (from << 8) | pub->payload.ptr[8 + i];
	if (from < r->nconns && r->conns[from].role == LG_ROLE_PUB)
		atomic_fetch_add_explicit(&r->conns[from].delivered, 1, memory_order_relaxed);
	lg_hist_add(&w->hist, now > ts ? (now - ts) / 1000u : 0);
	atomic_fetch_add_explicit(&w->n_recv, 1, memory_order_relaxed);
	atomic_store_explicit(&w->last_rx_us, now / 1000u, memory_order_relaxed);
}

// lg_on_packet handles one decoded packet; false closes the connection.
static bool lg_on_packet(lg_worker *w, lg_conn *c, const hw_mqtt_packet *p)
{
	lg_run *r = w->run;

	switch (p->type) {
	case HW_MQTT_CONNACK:
		if (c->state != LG_ST_CONNACK || p->u.connack.reason != 0)
			return false;
		c->cap = r->o.max_inflight;
		if (r->o.version == HW_MQTT_V5 &&
		    hw_mqtt_has(&p->u.connack.props, HW_PROP_RECEIVE_MAXIMUM) &&
		    p->u.connack.props.receive_maximum < c->cap)
			c->cap = p->u.connack.props.receive_maximum;
		if (c->role == LG_ROLE_SUB || (c->role == LG_ROLE_IDLE && r->o.idle_sub))
			return lg_send_subscribe(w, c);
		lg_ready(w, c);
		return true;
	case HW_MQTT_SUBACK:
		if (c->state != LG_ST_SUBACK || p->u.suback.count < 1 ||
		    p->u.suback.reasons[0] >= 0x80)
			return false;
		lg_ready(w, c);
		return true;
	case HW_MQTT_PUBLISH:
		lg_on_publish(w, c, &p->u.publish);
		return true;
	case HW_MQTT_PUBACK:
		if (c->unacked > 0)
			c->unacked--;
		atomic_fetch_add_explicit(&w->n_acked, 1, memory_order_relaxed);
		return true;
	case HW_MQTT_PINGRESP:
		return true;
	default:
		// DISCONNECT from the server, or anything we never asked for.
		return false;
	}
}

// lg_parse consumes whole MQTT packets from c->rx; false if c was closed.
static bool lg_parse(lg_worker *w, lg_conn *c)
{
	size_t at = 0;
	bool ok = true;
	char why[96] = "";

	while (ok && at < c->rx.len) {
		size_t flen;
		hw_mqtt_packet p;
		uint8_t reason;
		hw_err err = hw_mqtt_frame(c->rx.ptr + at, c->rx.len - at, LG_MAX_PACKET, &flen);

		if (err == HW_EAGAIN || (err == HW_OK && flen > c->rx.len - at))
			break;
		if (err != HW_OK) {
			snprintf(why, sizeof why, "bad fixed header (%s)", hw_strerror(err));
			ok = false;
			break;
		}
		err = hw_mqtt_decode(c->rx.ptr + at, flen, w->run->o.version, false, &p, &reason);
		if (err != HW_OK) {
			snprintf(why, sizeof why, "undecodable packet type %u (%s, reason 0x%02x)",
			    c->rx.ptr[at] >> 4, hw_strerror(err), reason);
			ok = false;
			break;
		}
		ok = lg_on_packet(w, c, &p);
		if (!ok)
			snprintf(why, sizeof why, "unexpected packet type %u (reason byte 0x%02x)",
			    (unsigned)p.type, p.type == HW_MQTT_DISCONNECT ? p.u.disconnect.reason :
			    p.type == HW_MQTT_CONNACK ? p.u.connack.reason : 0);
		at += flen;
	}
	if (!ok) {
		lg_close(w, c, why);
		return false;
	}
	hw_buf_consume(&c->rx, at);
	if (!lg_flush(w, c))
		return false;
	// Idle connections are the many: give their buffers back between packets.
	if (c->role == LG_ROLE_IDLE && c->rx.len == 0 && c->tx.len == 0) {
		hw_buf_fini(&c->rx);
		hw_buf_fini(&c->tx);
	}
	return true;
}

// ---------------------------------------------------------------- WebSocket

static bool lg_ws_handshake_send(lg_worker *w, lg_conn *c)
{
	char req[512];
	int n = snprintf(req, sizeof req,
	    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
	    w->run->o.ws_path, w->run->hosthdr);

	c->state = LG_ST_WS;
	return hw_buf_append(&c->tx, req, (size_t)n) == HW_OK;
}

// lg_ws_unframe moves payloads of whole frames from wsrx into rx; answers
// pings; returns NULL, or why the connection must close.
static const char *lg_ws_unframe(lg_worker *w, lg_conn *c)
{
	size_t at = 0;

	if (c->state == LG_ST_WS) {
		const char *end = memmem(c->wsrx.ptr, c->wsrx.len, "\r\n\r\n", 4);
		if (end == NULL)
			return c->wsrx.len < 8192 ? NULL : "WebSocket handshake reply too long";
		if (c->wsrx.len < 12 || memcmp(c->wsrx.ptr + 9, "101", 3) != 0)
			return "WebSocket upgrade refused";
		at = (size_t)((const uint8_t *)end - c->wsrx.ptr) + 4;
		if (!lg_send_connect(w, c))
			return "out of memory";
	}
	for (;;) {
		hw_rd rd = hw_rd_of(c->wsrx.ptr + at, c->wsrx.len - at);
		uint8_t b0, b1, mask[4] = { 0, 0, 0, 0 };
		uint64_t len;
		hw_bytes body;

		if (hw_rd_u8(&rd, &b0) != HW_OK || hw_rd_u8(&rd, &b1) != HW_OK)
			break;
		len = b1 & 0x7Fu;
		if (len == 126) {
			uint16_t l16;
			if (hw_rd_u16(&rd, &l16) != HW_OK)
				break;
			len = l16;
		} else if (len == 127) {
			uint32_t hi, lo;
			if (hw_rd_u32(&rd, &hi) != HW_OK || hw_rd_u32(&rd, &lo) != HW_OK)
				break;
			len = ((uint64_t)hi << 32) | lo;
		}
		if (len > LG_MAX_PACKET * 2u)
			return "WebSocket frame too large";
		if ((b1 & 0x80u) != 0) {
			hw_bytes m;
			if (hw_rd_bytes(&rd, 4, &m) != HW_OK)
				break;
			memcpy(mask, m.ptr, 4);
		}
		if (hw_rd_bytes(&rd, (size_t)len, &body) != HW_OK)
			break;
		at = (size_t)(rd.p - c->wsrx.ptr);
		switch (b0 & 0x0Fu) {
		case 0x0: case 0x1: case 0x2: {
			size_t base = c->rx.len;
			if (hw_buf_append(&c->rx, body.ptr, body.len) != HW_OK)
				return "out of memory";
			if ((b1 & 0x80u) != 0)
				for (size_t i = 0; i < body.len; i++)
					c->rx.ptr[base + i] ^= mask[i & 3];
			break;
		}
		case 0x9: {
			// Answer a ping with a pong carrying the same bytes.
			uint8_t pong[2 + 4 + 125];
			uint32_t m = lg_rand(w);
			if (body.len > 125)
				return "WebSocket ping too long";
			pong[0] = 0x8A;
			pong[1] = (uint8_t)(0x80u | body.len);
			memcpy(pong + 2, &m, 4);
			for (size_t i = 0; i < body.len; i++)
				pong[6 + i] = (uint8_t)((body.ptr[i] ^ mask[i & 3]) ^ pong[2 + (i & 3)]);
			if (hw_buf_append(&c->tx, pong, 6 + body.len) != HW_OK)
				return "out of memory";
			break;
		}
		case 0xA:
			break;
		case 0x8:
			return "WebSocket close frame from the server";
		default:
			return "unknown WebSocket opcode";
		}
	}
	hw_buf_consume(&c->wsrx, at);
	return NULL;
}

// ---------------------------------------------------------------- I/O

static void lg_on_readable(lg_worker *w, lg_conn *c)
{
	hw_buf *in = w->run->o.ws ? &c->wsrx : &c->rx;
	size_t got = 0;

	// Level-triggered: stop after LG_RX_BURST bytes, parse, and let epoll
	// come back for the rest, so a busy socket cannot grow rx without bound.
	while (got < LG_RX_BURST) {
		ssize_t n;
		size_t room;

		if (hw_buf_reserve(in, LG_RX_CHUNK) != HW_OK) {
			lg_close(w, c, "out of memory");
			return;
		}
		room = in->cap - in->len;
		n = recv(c->fd, in->ptr + in->len, room, 0);
		if (n > 0) {
			in->len += (size_t)n;
			got += (size_t)n;
			if ((size_t)n < room)
				break;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		lg_close(w, c, n == 0 ? "closed by peer" : "recv failed");
		return;
	}
	if (w->run->o.ws) {
		const char *why = lg_ws_unframe(w, c);
		if (why != NULL) {
			lg_close(w, c, why);
			return;
		}
	}
	lg_parse(w, c);
}

static void lg_on_connected(lg_worker *w, lg_conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	bool ok;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
		lg_close(w, c, "connect failed");
		return;
	}
	ok = w->run->o.ws ? lg_ws_handshake_send(w, c) : lg_send_connect(w, c);
	if (!ok) {
		lg_close(w, c, "out of memory");
		return;
	}
	lg_flush(w, c);
}

static void lg_on_event(lg_worker *w, const struct epoll_event *ev)
{
	lg_conn *c = &w->run->conns[ev->data.u64];

	if (c->state == LG_ST_CLOSED)
		return;
	if (c->state == LG_ST_TCP) {
		if ((ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0)
			lg_on_connected(w, c);
		return;
	}
	if ((ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
		lg_on_readable(w, c);
		if (c->state == LG_ST_CLOSED)
			return;
	}
	if ((ev->events & EPOLLOUT) != 0)
		lg_flush(w, c);
}

// lg_open starts a non-blocking connect for c, from a rotating source.
static void lg_open(lg_worker *w, lg_conn *c)
{
	lg_run *r = w->run;
	struct epoll_event ev;
	int one = 1;

	c->fd = socket(r->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->state = LG_ST_TCP;
	c->opened_ms = lg_now_ms();
	w->pending++;
	if (c->fd < 0)
		goto fail;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (r->dst.ss_family == AF_INET && r->o.src_count > 0) {
		// Bind the source address but let connect() pick the port for the
		// whole 4-tuple, so each source address gives a full port range.
		struct sockaddr_in src;
		memset(&src, 0, sizeof src);
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(ntohl(r->src0.s_addr) + c->idx % r->o.src_count);
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
			goto fail;
	}
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.u64 = c->idx;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		goto fail;
	c->out_armed = true;
	if (connect(c->fd, (struct sockaddr *)&r->dst, r->dstlen) != 0 && errno != EINPROGRESS)
		goto fail;
	return;
fail:
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = LG_ST_CLOSED;
	w->pending--;
	atomic_fetch_add_explicit(&w->n_failed, 1, memory_order_relaxed);
}

// ---------------------------------------------------------------- worker

static void lg_ramp(lg_worker *w, uint64_t now_us)
{
	lg_run *r = w->run;
	double per_worker = r->o.conn_rate / (double)r->o.threads;
	uint64_t due;

	if (w->ramp_us == 0)
		w->ramp_us = now_us;
	due = (uint64_t)((double)(now_us - w->ramp_us) / 1e6 * per_worker) + 1u;
	while (w->opened < w->nmine && w->opened < due && w->pending < r->o.conn_window)
		lg_open(w, &r->conns[w->mine[w->opened++]]);
}

static bool lg_can_send(lg_worker *w, lg_conn *c, uint64_t now_ms)
{
	lg_run *r = w->run;

	if (c->state != LG_ST_READY || c->tx.len > LG_TX_HIGH || w->quota == 0)
		return false;
	if (r->o.qos > 0 && c->unacked >= c->cap)
		return false;
	if (r->o.rate > 0)
		return true;
	if (r->o.qos > 0)
		return c->unacked < r->o.window;
	// QoS 0 closed loop: a window of messages not yet delivered to every
	// subscriber. A delivery lost by the broker would close the window for
	// good, so after a second without progress the missing ones are given up.
	{
		uint64_t rx = atomic_load_explicit(&c->delivered, memory_order_relaxed);
		uint64_t want = c->sent * r->fan, got = rx + c->e2e_skip;
		if (rx != c->rx_seen) {
			c->rx_seen = rx;
			c->progress_ms = now_ms;
		}
		if (want < got + (uint64_t)r->o.window * r->fan)
			return true;
		if (now_ms - c->progress_ms > 1000) {
			c->e2e_skip += want - got;
			c->progress_ms = now_ms;
			return true;
		}
		return false;
	}
}

static void lg_publish_tick(lg_worker *w, uint64_t now_us)
{
	lg_run *r = w->run;
	uint64_t now_ms = now_us / 1000u;

	if (w->npubs == 0)
		return;
	if (r->o.rate > 0) {
		double burst = w->pub_rate * 0.05 > 1.0 ? w->pub_rate * 0.05 : 1.0;
		if (w->tick_us == 0)
			w->tick_us = now_us;
		w->tokens += (double)(now_us - w->tick_us) / 1e6 * w->pub_rate;
		w->tick_us = now_us;
		if (w->tokens > burst)
			w->tokens = burst;
		while (w->tokens >= 1.0) {
			bool sent = false;
			for (uint32_t tried = 0; tried < w->npubs && !sent; tried++) {
				lg_conn *c = &r->conns[w->pubs[w->pub_rr]];
				w->pub_rr = (w->pub_rr + 1) % w->npubs;
				if (lg_can_send(w, c, now_ms) && lg_send_publish(w, c)) {
					lg_flush(w, c);
					sent = true;
				}
			}
			if (!sent)
				break;
			w->tokens -= 1.0;
		}
		return;
	}
	for (uint32_t i = 0; i < w->npubs; i++) {
		lg_conn *c = &r->conns[w->pubs[i]];
		unsigned burst = 0;
		while (burst < 64 && lg_can_send(w, c, now_ms) && lg_send_publish(w, c))
			burst++;
		if (burst > 0)
			lg_flush(w, c);
	}
}

// lg_keepalive sends PINGREQ on connections idle for half the keepalive.
static void lg_keepalive(lg_worker *w, uint64_t now_ms)
{
	lg_run *r = w->run;
	static const uint8_t ping[2] = { 0xC0, 0x00 };

	if (r->o.keepalive == 0 || now_ms - w->ping_ms < 1000)
		return;
	w->ping_ms = now_ms;
	for (uint32_t i = 0; i < w->opened; i++) {
		lg_conn *c = &r->conns[w->mine[i]];
		if (c->state == LG_ST_READY && now_ms - c->last_tx_ms > r->o.keepalive * 500u) {
			lg_out(w, c, ping, sizeof ping);
			lg_flush(w, c);
		}
	}
}

static void lg_worker_stop(lg_worker *w)
{
	lg_run *r = w->run;
	hw_buf dis = { 0 };

	hw_mqtt_encode_disconnect(0, HW_BYTES_NULL, r->o.version, &dis);
	for (uint32_t i = 0; i < w->opened; i++) {
		lg_conn *c = &r->conns[w->mine[i]];
		if (c->state == LG_ST_READY && dis.len > 0) {
			lg_out(w, c, dis.ptr, dis.len);
			// Best effort: a full socket buffer just loses the DISCONNECT.
			lg_flush(w, c);
		}
		if (c->state != LG_ST_CLOSED && c->state != LG_ST_NEW) {
			lg_close(w, c, NULL);
		}
	}
	hw_buf_fini(&dis);
}

static void *lg_worker_main(void *arg)
{
	lg_worker *w = arg;
	lg_run *r = w->run;
	struct epoll_event evs[LG_EVENTS];

	for (;;) {
		int ph = atomic_load_explicit(&r->phase, memory_order_relaxed);
		uint64_t now = lg_now_us();
		int timeout = 50, n;

		if (ph == LG_PH_STOP)
			break;
		if (ph == LG_PH_CONNECT && w->opened < w->nmine) {
			lg_ramp(w, now);
			timeout = 1;
		}
		if (ph == LG_PH_PUB) {
			lg_publish_tick(w, now);
			timeout = 1;
		}
		lg_keepalive(w, now / 1000u);
		n = epoll_wait(w->ep, evs, LG_EVENTS, timeout);
		for (int i = 0; i < n; i++)
			lg_on_event(w, &evs[i]);
	}
	lg_worker_stop(w);
	return NULL;
}

// ---------------------------------------------------------------- setup

static void lg_usage(FILE *f)
{
	fprintf(f,
	    "usage: loadgen --scenario idle|fanin|fanout|p2p [options]\n"
	    "  --host ADDR          loopback target (127.0.0.0/8 or ::1) [127.0.0.1]\n"
	    "  --port N             target port [1883]\n"
	    "  --transport tcp|ws   [tcp]; --ws-path PATH [/mqtt]\n"
	    "  --mqtt 3|5           protocol 3.1.1 or 5.0 [5]\n"
	    "  --qos 0|1            [0]\n"
	    "  --conns N            idle: connections [1000]\n"
	    "  --pubs N             fanin: publishers [100]\n"
	    "  --subs N             fanout: subscribers [1000]\n"
	    "  --pairs N            p2p: publisher/subscriber pairs [1000]\n"
	    "  --rate R             total publish rate msgs/s; 0 = closed loop [10000]\n"
	    "  --count N            stop publishing after N messages in total [0: no limit]\n"
	    "  --window W           closed loop: messages in flight per publisher [16]\n"
	    "  --max-inflight N     QoS 1 unacked cap per connection [1000]\n"
	    "  --size B             payload bytes, >= 16 [64]\n"
	    "  --duration S         publish seconds [10]\n"
	    "  --hold S             idle: seconds held before measuring [3]\n"
	    "  --drain S            max seconds to wait for in-flight messages [3]\n"
	    "  --conn-rate R        connects per second [5000]\n"
	    "  --conn-window N      connects in progress per thread [64]\n"
	    "  --connect-timeout S  bound on the connect phase [120]\n"
	    "  --keepalive S        MQTT keepalive, PINGREQ at half [60]\n"
	    "  --session-expiry S   persistent sessions: v5 Session Expiry S,\n"
	    "                       3.1.1 clean session 0 [0: clean sessions]\n"
	    "  --idle-sub 0|1       idle conns subscribe to their own topic [1]\n"
	    "  --src-base ADDR      first source address [127.0.0.1]\n"
	    "  --src-count N        rotate over N source addresses; 0 = no bind\n"
	    "                       [auto: one per 2000 connections]\n"
	    "  -t, --threads N      worker threads [1]\n"
	    "  --pid PID[,PID...]   target processes: sample CPU and RSS (summed)\n"
	    "  --aux-pid PID[,...]  their dependencies (Redis, Kafka): reported\n"
	    "                       apart as aux_*\n"
	    "  --target NAME        label in the result line\n"
	    "  -v, --verbose        print why connections fail (first 20 per thread)\n"
	    "Progress on stderr every second; one JSON result line on stdout.\n");
}

static bool lg_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

// lg_pid_list parses "PID[,PID...]" (at most LG_MAX_PIDS) into out.
static bool lg_pid_list(const char *s, lg_pids *out)
{
	out->n = 0;
	for (;;) {
		char *end;
		long v;

		errno = 0;
		v = strtol(s, &end, 10);
		if (errno != 0 || end == s || v < 1 || v > 1000000000L || out->n == LG_MAX_PIDS)
			return false;
		out->pid[out->n++] = (pid_t)v;
		if (*end == '\0')
			return true;
		if (*end != ',')
			return false;
		s = end + 1;
	}
}

// lg_parse_opts fills o from argv; false (after a message) on bad usage.
static bool lg_parse_opts(lg_opts *o, int argc, char **argv)
{
	enum {
		O_SCEN = 256, O_HOST, O_PORT, O_TRANS, O_WSPATH, O_MQTT, O_QOS, O_CONNS,
		O_PUBS, O_SUBS, O_PAIRS, O_RATE, O_WINDOW, O_MAXINF, O_SIZE, O_DUR,
		O_HOLD, O_DRAIN, O_CRATE, O_CWIN, O_CTMO, O_KA, O_IDLESUB, O_SRCB,
		O_SRCN, O_PID, O_TARGET, O_COUNT, O_HELP, O_SEXP, O_AUX,
	};
	static const struct option opts[] = {
		{ "scenario", 1, NULL, O_SCEN }, { "host", 1, NULL, O_HOST },
		{ "port", 1, NULL, O_PORT }, { "transport", 1, NULL, O_TRANS },
		{ "ws-path", 1, NULL, O_WSPATH }, { "mqtt", 1, NULL, O_MQTT },
		{ "qos", 1, NULL, O_QOS }, { "conns", 1, NULL, O_CONNS },
		{ "pubs", 1, NULL, O_PUBS }, { "subs", 1, NULL, O_SUBS },
		{ "pairs", 1, NULL, O_PAIRS }, { "rate", 1, NULL, O_RATE },
		{ "window", 1, NULL, O_WINDOW }, { "max-inflight", 1, NULL, O_MAXINF },
		{ "size", 1, NULL, O_SIZE }, { "duration", 1, NULL, O_DUR },
		{ "hold", 1, NULL, O_HOLD }, { "drain", 1, NULL, O_DRAIN },
		{ "conn-rate", 1, NULL, O_CRATE }, { "conn-window", 1, NULL, O_CWIN },
		{ "connect-timeout", 1, NULL, O_CTMO }, { "keepalive", 1, NULL, O_KA },
		{ "idle-sub", 1, NULL, O_IDLESUB }, { "src-base", 1, NULL, O_SRCB },
		{ "src-count", 1, NULL, O_SRCN }, { "threads", 1, NULL, 't' },
		{ "pid", 1, NULL, O_PID }, { "target", 1, NULL, O_TARGET },
		{ "count", 1, NULL, O_COUNT }, { "verbose", 0, NULL, 'v' },
		{ "help", 0, NULL, O_HELP }, { "session-expiry", 1, NULL, O_SEXP },
		{ "aux-pid", 1, NULL, O_AUX },
		{ NULL, 0, NULL, 0 },
	};
	bool src_auto = true;
	int ch;

	*o = (lg_opts){
		.scenario = LG_IDLE, .scenario_name = NULL, .target = "target",
		.host = "127.0.0.1", .port = 1883, .ws = false, .ws_path = "/mqtt",
		.version = HW_MQTT_V5, .qos = 0, .conns = 1000, .pubs = 100,
		.subs = 1000, .pairs = 1000, .rate = 10000, .window = 16,
		.max_inflight = 1000, .size = 64, .duration = 10, .hold = 3,
		.drain = 3, .conn_rate = 5000, .conn_window = 64,
		.connect_timeout = 120, .threads = 1,
		.src_base = "127.0.0.1", .src_count = 0, .idle_sub = true,
		.keepalive = 60,
	};
	while ((ch = getopt_long(argc, argv, "t:hv", opts, NULL)) != -1) {
		double v = 0;
		const char *a = optarg;
		bool ok = true;

		switch (ch) {
		case O_SCEN:
			o->scenario_name = a;
			if (strcmp(a, "idle") == 0) o->scenario = LG_IDLE;
			else if (strcmp(a, "fanin") == 0) o->scenario = LG_FANIN;
			else if (strcmp(a, "fanout") == 0) o->scenario = LG_FANOUT;
			else if (strcmp(a, "p2p") == 0) o->scenario = LG_P2P;
			else ok = false;
			break;
		case O_HOST: o->host = strcmp(a, "localhost") == 0 ? "127.0.0.1" : a; break;
		case O_PORT: ok = lg_num(a, 1, 65535, &v); o->port = (uint16_t)v; break;
		case O_TRANS:
			ok = strcmp(a, "tcp") == 0 || strcmp(a, "ws") == 0;
			o->ws = strcmp(a, "ws") == 0;
			break;
		case O_WSPATH: o->ws_path = a; ok = a[0] == '/' && strlen(a) < 200; break;
		case O_MQTT:
			ok = strcmp(a, "3") == 0 || strcmp(a, "4") == 0 || strcmp(a, "5") == 0;
			o->version = strcmp(a, "5") == 0 ? HW_MQTT_V5 : HW_MQTT_V311;
			break;
		case O_QOS: ok = lg_num(a, 0, 1, &v); o->qos = (uint8_t)v; break;
		case O_CONNS: ok = lg_num(a, 1, 1e7, &v); o->conns = (uint32_t)v; break;
		case O_PUBS: ok = lg_num(a, 1, 1e7, &v); o->pubs = (uint32_t)v; break;
		case O_SUBS: ok = lg_num(a, 1, 1e7, &v); o->subs = (uint32_t)v; break;
		case O_PAIRS: ok = lg_num(a, 1, 5e6, &v); o->pairs = (uint32_t)v; break;
		case O_RATE: ok = lg_num(a, 0, 1e8, &o->rate); break;
		case O_WINDOW: ok = lg_num(a, 1, 65535, &v); o->window = (uint32_t)v; break;
		case O_MAXINF: ok = lg_num(a, 1, 65535, &v); o->max_inflight = (uint32_t)v; break;
		case O_SIZE: ok = lg_num(a, LG_HDR_LEN, 1 << 19, &v); o->size = (uint32_t)v; break;
		case O_DUR: ok = lg_num(a, 0.1, 3600, &o->duration); break;
		case O_HOLD: ok = lg_num(a, 0, 3600, &o->hold); break;
		case O_DRAIN: ok = lg_num(a, 0, 600, &o->drain); break;
		case O_CRATE: ok = lg_num(a, 1, 1e7, &o->conn_rate); break;
		case O_CWIN: ok = lg_num(a, 1, 1e6, &v); o->conn_window = (uint32_t)v; break;
		case O_CTMO: ok = lg_num(a, 1, 3600, &o->connect_timeout); break;
		case O_KA: ok = lg_num(a, 0, 65535, &v); o->keepalive = (uint16_t)v; break;
		case O_SEXP: ok = lg_num(a, 0, 4294967295.0, &v); o->session_expiry = (uint32_t)v; break;
		case O_IDLESUB: ok = lg_num(a, 0, 1, &v); o->idle_sub = v != 0; break;
		case O_SRCB: o->src_base = a; break;
		case O_SRCN: ok = lg_num(a, 0, 254, &v); o->src_count = (uint32_t)v; src_auto = false; break;
		case 't': ok = lg_num(a, 1, 64, &v); o->threads = (uint32_t)v; break;
		case O_PID: ok = lg_pid_list(a, &o->pids); break;
		case O_AUX: ok = lg_pid_list(a, &o->aux); break;
		case O_TARGET: o->target = a; break;
		case 'v': o->verbose = true; break;
		case O_COUNT: ok = lg_num(a, 0, 1e15, &v); o->count = (uint64_t)v; break;
		case O_HELP: case 'h': lg_usage(stdout); exit(0);
		default: ok = false; break;
		}
		if (!ok) {
			fprintf(stderr, "loadgen: bad value for option %s\n", argv[optind - 1]);
			return false;
		}
	}
	if (o->scenario_name == NULL || optind != argc) {
		lg_usage(stderr);
		return false;
	}
	if (src_auto) {
		uint32_t total = o->scenario == LG_IDLE ? o->conns :
		    o->scenario == LG_FANIN ? o->pubs + 1 :
		    o->scenario == LG_FANOUT ? o->subs + 1 : o->pairs * 2;
		// One address per 2,000 connections, not per port range: the
		// kernel's port search for a connect slows down as one address
		// piles up TIME_WAIT sockets (10,000 per idle run, for 60 s), and
		// the run after an idle run then measured the load generator.
		o->src_count = total / 2000u + 1u;
	}
	return true;
}

// lg_resolve accepts only loopback literals: this tool must never load a
// machine other than the one it runs on.
static bool lg_resolve(lg_run *r)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&r->dst;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&r->dst;

	memset(&r->dst, 0, sizeof r->dst);
	if (inet_pton(AF_INET, r->o.host, &v4->sin_addr) == 1) {
		if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
			return false;
		v4->sin_family = AF_INET;
		v4->sin_port = htons(r->o.port);
		r->dstlen = sizeof *v4;
		snprintf(r->hosthdr, sizeof r->hosthdr, "%s:%u", r->o.host, r->o.port);
	} else if (inet_pton(AF_INET6, r->o.host, &v6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
			return false;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(r->o.port);
		r->dstlen = sizeof *v6;
		snprintf(r->hosthdr, sizeof r->hosthdr, "[%s]:%u", r->o.host, r->o.port);
	} else {
		return false;
	}
	if (r->o.src_count > 0) {
		if (inet_pton(AF_INET, r->o.src_base, &r->src0) != 1 ||
		    (ntohl(r->src0.s_addr) >> 24) != 127 ||
		    (ntohl(r->src0.s_addr) & 0xFFu) + r->o.src_count > 255u)
			return false;
	}
	return true;
}

// lg_setup lays out the connections: publishers first, then subscribers.
static hw_err lg_setup(lg_run *r)
{
	lg_opts *o = &r->o;
	uint32_t nt = o->threads;

	switch (o->scenario) {
	case LG_IDLE:   r->npub = 0; r->nsub = 0; r->fan = 0; r->nconns = o->conns; break;
	case LG_FANIN:  r->npub = o->pubs; r->nsub = 1; r->fan = 1; break;
	case LG_FANOUT: r->npub = 1; r->nsub = o->subs; r->fan = o->subs; break;
	case LG_P2P:    r->npub = o->pairs; r->nsub = o->pairs; r->fan = 1; break;
	}
	if (o->scenario != LG_IDLE)
		r->nconns = r->npub + r->nsub;
	snprintf(r->prefix, sizeof r->prefix, "lg/%d/%s", (int)getpid(), o->scenario_name);
	r->conns = calloc(r->nconns, sizeof *r->conns);
	r->w = calloc(nt, sizeof *r->w);
	if (r->conns == NULL || r->w == NULL)
		return HW_ENOMEM;
	for (uint32_t i = 0; i < r->nconns; i++) {
		lg_conn *c = &r->conns[i];
		c->fd = -1;
		c->idx = i;
		c->state = LG_ST_NEW;
		atomic_init(&c->delivered, 0);
		if (o->scenario == LG_IDLE) {
			c->role = LG_ROLE_IDLE;
			c->topic = i;
		} else if (i < r->npub) {
			c->role = LG_ROLE_PUB;
			c->topic = o->scenario == LG_P2P ? i : 0;
		} else {
			c->role = LG_ROLE_SUB;
			c->topic = o->scenario == LG_P2P ? i - r->npub : 0;
		}
	}
	for (uint32_t t = 0; t < nt; t++) {
		lg_worker *w = &r->w[t];
		w->run = r;
		w->id = t;
		w->rng = 0x9E3779B9u ^ (t * 7919u + 1u);
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->mine = calloc(r->nconns / nt + 1, sizeof *w->mine);
		w->pubs = calloc(r->npub / nt + 1, sizeof *w->pubs);
		w->payload = calloc(1, o->size);
		if (w->ep < 0 || w->mine == NULL || w->pubs == NULL || w->payload == NULL)
			return HW_ENOMEM;
	}
	// Subscribers are opened first so that they are ready before anyone
	// publishes (publishing waits for the whole connect phase anyway).
	for (uint32_t k = 0; k < r->nconns; k++) {
		uint32_t i = (k + r->npub) % r->nconns;
		lg_worker *w = &r->w[i % nt];
		w->mine[w->nmine++] = i;
		if (r->conns[i].role == LG_ROLE_PUB)
			w->pubs[w->npubs++] = i;
	}
	for (uint32_t t = 0; t < nt; t++) {
		lg_worker *w = &r->w[t];
		w->pub_rate = r->npub == 0 ? 0 : o->rate * (double)w->npubs / (double)r->npub;
		w->quota = UINT64_MAX;
	}
	if (o->count > 0 && r->npub > 0) {
		// --count is shared in proportion to each worker's publishers; the
		// last worker with publishers takes the rounding remainder.
		uint64_t given = 0;
		uint32_t last = 0;
		for (uint32_t t = 0; t < nt; t++) {
			lg_worker *w = &r->w[t];
			w->quota = (uint64_t)((double)o->count * (double)w->npubs / (double)r->npub);
			given += w->quota;
			if (w->npubs > 0)
				last = t;
		}
		r->w[last].quota += o->count - given;
	}
	return HW_OK;
}

typedef struct lg_totals {
	uint64_t ready, failed, dropped, sent, recv, acked, last_rx_us;
} lg_totals;

static lg_totals lg_sum(lg_run *r)
{
	lg_totals t = { 0 };

	for (uint32_t i = 0; i < r->o.threads; i++) {
		lg_worker *w = &r->w[i];
		uint64_t l = atomic_load_explicit(&w->last_rx_us, memory_order_relaxed);
		t.ready += atomic_load_explicit(&w->n_ready, memory_order_relaxed);
		t.failed += atomic_load_explicit(&w->n_failed, memory_order_relaxed);
		t.dropped += atomic_load_explicit(&w->n_dropped, memory_order_relaxed);
		t.sent += atomic_load_explicit(&w->n_sent, memory_order_relaxed);
		t.recv += atomic_load_explicit(&w->n_recv, memory_order_relaxed);
		t.acked += atomic_load_explicit(&w->n_acked, memory_order_relaxed);
		if (l > t.last_rx_us)
			t.last_rx_us = l;
	}
	return t;
}

// lg_progress prints one status line on stderr, at most once a second.
static void lg_progress(lg_run *r, uint64_t t0, uint64_t *last_ms, lg_totals *prev)
{
	uint64_t now = lg_now_ms();
	lg_totals t;
	double dt;

	if (now - *last_ms < 1000)
		return;
	t = lg_sum(r);
	dt = (double)(now - *last_ms) / 1000.0;
	fprintf(stderr,
	    "loadgen %s t=%.0fs %s: ready=%" PRIu64 "/%u failed=%" PRIu64 " dropped=%" PRIu64
	    " sent=%" PRIu64 " (%.0f/s) recv=%" PRIu64 " (%.0f/s) acked=%" PRIu64 "\n",
	    r->o.target, (double)(now - t0) / 1000.0,
	    lg_phase_names[atomic_load(&r->phase)], t.ready, r->nconns, t.failed, t.dropped,
	    t.sent, (double)(t.sent - prev->sent) / dt, t.recv,
	    (double)(t.recv - prev->recv) / dt, t.acked);
	*prev = t;
	*last_ms = now;
}

// lg_wait runs the progress line until done() or the deadline (ms).
static void lg_wait(lg_run *r, uint64_t t0, uint64_t deadline_ms, uint64_t *last,
    lg_totals *prev, bool (*done)(lg_run *))
{
	while (lg_now_ms() < deadline_ms && (done == NULL || !done(r))) {
		lg_sleep_ms(10);
		lg_progress(r, t0, last, prev);
	}
}

static bool lg_connected(lg_run *r)
{
	lg_totals t = lg_sum(r);
	return t.ready + t.failed >= r->nconns;
}

static bool lg_sent_all(lg_run *r)
{
	return lg_sum(r).sent >= r->o.count;
}

static bool lg_drained(lg_run *r)
{
	lg_totals t = lg_sum(r);
	return t.recv >= t.sent * r->fan && (r->o.qos == 0 || t.acked >= t.sent);
}

static void lg_raise_nofile(uint32_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)need + 64u)
		fprintf(stderr, "loadgen: warning: open file limit %llu < %u connections\n",
		    (unsigned long long)rl.rlim_cur, need);
}

// lg_print_each prints the per-process parts of a set of several: CPU
// seconds over the measured phase (m0 → m1) and RSS at the end, in the order
// of the --pid / --aux-pid list.
static void lg_print_each(const char *prefix, const lg_pids *set, const lg_sample *m0,
    const lg_sample *m1, const lg_sample *end)
{
	printf(",\"%sprocs\":%u,\"%scpu_s_each\":[", prefix, set->n, prefix);
	for (unsigned i = 0; i < set->n; i++)
		printf("%s%.3f", i ? "," : "", m1->each[i].cpu_s - m0->each[i].cpu_s);
	printf("],\"%srss_kb_each\":[", prefix);
	for (unsigned i = 0; i < set->n; i++)
		printf("%s%" PRIu64, i ? "," : "", end->each[i].rss_kb);
	printf("]");
}

// lg_print_aux prints what the dependencies (--aux-pid) did, as the main
// fields do for the target: CPU over the measured phase (m0 → m1) per
// delivery or per connection, RSS growth from before connecting to the end
// per connection.
static void lg_print_aux(const lg_pids *set, const lg_sample *before, const lg_sample *m0,
    const lg_sample *m1, const lg_sample *end, bool idle, const lg_totals *t, double wall_m)
{
	double cpu = m1->sum.cpu_s - m0->sum.cpu_s;
	long long rss_delta = (long long)end->sum.rss_kb - (long long)before->sum.rss_kb;

	printf(",\"aux_cpu_s\":%.3f,\"aux_cpu_us_per_msg\":%.3f,\"aux_cpu_us_per_conn\":%.3f,"
	    "\"aux_rss_kb\":%" PRIu64 ",\"aux_rss_per_conn_bytes\":%.0f,\"aux_cpu_pct\":%.1f",
	    cpu, !idle && t->recv > 0 ? cpu * 1e6 / (double)t->recv : 0.0,
	    idle && t->ready > 0 ? cpu * 1e6 / (double)t->ready : 0.0,
	    end->sum.rss_kb, t->ready > 0 ? (double)rss_delta * 1024.0 / (double)t->ready : 0.0,
	    wall_m > 0 ? cpu * 100.0 / wall_m : 0.0);
	lg_print_each("aux_", set, m0, m1, end);
}

int main(int argc, char **argv)
{
	lg_run *r = calloc(1, sizeof *r);
	lg_sample p0, p1, p2, a0, a1, a2, *m0 = &p1, *m1 = &p2, *x0 = &a1, *x1 = &a2;
	lg_totals prev = { 0 }, t;
	lg_hist *hist = calloc(1, sizeof *hist);
	uint64_t t0, last, t_conn0, t_conn1, t_pub0 = 0, t_pub1 = 0;
	double self0, self_m0, self_m1, host0, host_m0, host_m1, cpu_s = 0, aux_s = 0, dur, wall_m;
	uint64_t t_m0, t_m1;
	bool measure;
	int rc = 2;

	if (r == NULL || hist == NULL)
		goto out;
	if (!lg_parse_opts(&r->o, argc, argv))
		goto out;
	if (!lg_resolve(r)) {
		fprintf(stderr, "loadgen: --host and --src-base must be loopback addresses\n");
		goto out;
	}
	if (lg_setup(r) != HW_OK) {
		fprintf(stderr, "loadgen: out of memory\n");
		goto out;
	}
	lg_raise_nofile(r->nconns);
	atomic_store(&r->phase, LG_PH_CONNECT);
	measure = r->o.pids.n > 0;
	p0 = lg_sample_read(&r->o.pids);
	a0 = lg_sample_read(&r->o.aux);
	if ((measure && !p0.sum.ok) || (r->o.aux.n > 0 && !a0.sum.ok)) {
		fprintf(stderr, "loadgen: cannot read /proc of every --pid / --aux-pid\n");
		goto out;
	}
	self0 = lg_self_cpu();
	host0 = lg_host_busy();
	t0 = t_conn0 = last = lg_now_ms();
	for (uint32_t i = 0; i < r->o.threads; i++) {
		if (pthread_create(&r->w[i].th, NULL, lg_worker_main, &r->w[i]) != 0) {
			fprintf(stderr, "loadgen: cannot start threads\n");
			exit(2);
		}
	}
	lg_wait(r, t0, t0 + (uint64_t)(r->o.connect_timeout * 1000), &last, &prev, lg_connected);
	t_conn1 = lg_now_ms();
	p1 = lg_sample_read(&r->o.pids);
	a1 = lg_sample_read(&r->o.aux);
	// The measured phase: connecting for idle, publishing plus drain else.
	self_m0 = self0;
	host_m0 = host0;
	t_m0 = t_conn0;
	self_m1 = lg_self_cpu();
	host_m1 = lg_host_busy();
	t_m1 = t_conn1;
	if (r->o.scenario == LG_IDLE) {
		atomic_store(&r->phase, LG_PH_HOLD);
		lg_wait(r, t0, lg_now_ms() + (uint64_t)(r->o.hold * 1000), &last, &prev, NULL);
		p2 = lg_sample_read(&r->o.pids);
		a2 = lg_sample_read(&r->o.aux);
		m0 = &p0, m1 = &p1, x0 = &a0, x1 = &a1;
	} else if (lg_sum(r).ready < r->nconns) {
		// Numbers from a partial set of flows would not compare with
		// anything: report the connect failure and stop.
		fprintf(stderr, "loadgen: not every connection is ready; not publishing\n");
		p2 = lg_sample_read(&r->o.pids);
		a2 = lg_sample_read(&r->o.aux);
	} else {
		atomic_store(&r->phase, LG_PH_PUB);
		t_pub0 = lg_now_us();
		self_m0 = lg_self_cpu();
		host_m0 = lg_host_busy();
		t_m0 = t_pub0 / 1000u;
		lg_wait(r, t0, lg_now_ms() + (uint64_t)(r->o.duration * 1000), &last, &prev,
		    r->o.count > 0 ? lg_sent_all : NULL);
		atomic_store(&r->phase, LG_PH_DRAIN);
		t_pub1 = lg_now_us();
		lg_wait(r, t0, lg_now_ms() + (uint64_t)(r->o.drain * 1000), &last, &prev, lg_drained);
		p2 = lg_sample_read(&r->o.pids);
		a2 = lg_sample_read(&r->o.aux);
		self_m1 = lg_self_cpu();
		host_m1 = lg_host_busy();
		t_m1 = lg_now_ms();
	}
	cpu_s = measure ? m1->sum.cpu_s - m0->sum.cpu_s : 0.0;
	aux_s = r->o.aux.n > 0 ? x1->sum.cpu_s - x0->sum.cpu_s : 0.0;
	atomic_store(&r->phase, LG_PH_STOP);
	for (uint32_t i = 0; i < r->o.threads; i++) {
		pthread_join(r->w[i].th, NULL);
		lg_hist_merge(hist, &r->w[i].hist);
	}
	t = lg_sum(r);
	{
		uint64_t expected = t.sent * r->fan;
		uint64_t lost = expected > t.recv ? expected - t.recv : 0;
		uint64_t dup = t.recv > expected ? t.recv - expected : 0;
		double conn_s = (double)(t_conn1 - t_conn0) / 1000.0, others;
		uint64_t end_us = t.last_rx_us > t_pub1 ? t.last_rx_us : t_pub1;
		long long rss_delta = (long long)p2.sum.rss_kb - (long long)p0.sum.rss_kb;
		const char *scen = r->o.scenario_name;
		bool idle = r->o.scenario == LG_IDLE;

		dur = t_pub0 == 0 ? 0 : (double)(end_us - t_pub0) / 1e6;
		wall_m = t_m1 > t_m0 ? (double)(t_m1 - t_m0) / 1000.0 : 0.0;
		// CPU the rest of the host used meanwhile: a run that shared its
		// cores with other work measured that work too.
		others = (host_m1 - host_m0) - (self_m1 - self_m0) - cpu_s - aux_s;
		printf("{\"scenario\":\"%s\",\"target\":\"%s\",\"transport\":\"%s\",\"mqtt\":\"%s\","
		    "\"qos\":%u,\"conns\":%u,\"ready\":%" PRIu64 ",\"failed\":%" PRIu64
		    ",\"dropped\":%" PRIu64 ",\"pubs\":%u,\"subs\":%u,\"size\":%u,\"rate\":%.0f,"
		    "\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"expected\":%" PRIu64
		    ",\"lost\":%" PRIu64 ",\"dup\":%" PRIu64 ",\"duration_s\":%.3f,"
		    "\"msgs_per_s\":%.1f,\"sent_per_s\":%.1f,"
		    "\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
		    ",\"max_us\":%" PRIu64 ",\"connect_s\":%.3f,\"connects_per_s\":%.1f,"
		    "\"cpu_s\":%.3f,\"cpu_us_per_msg\":%.3f,\"cpu_us_per_conn\":%.3f,"
		    "\"rss_kb\":%" PRIu64 ",\"rss_before_kb\":%" PRIu64 ",\"rss_per_conn_bytes\":%.0f,"
		    "\"target_cpu_pct\":%.1f,\"loadgen_cpu_pct\":%.1f,\"others_cpu_pct\":%.1f,\"loadgen_cpu_s\":%.3f",
		    scen, r->o.target, r->o.ws ? "ws" : "tcp",
		    r->o.version == HW_MQTT_V5 ? "5.0" : "3.1.1", r->o.qos, r->nconns, t.ready,
		    t.failed, t.dropped, r->npub, r->nsub, r->o.size, r->o.rate, t.sent, t.recv,
		    expected, lost, dup, dur,
		    dur > 0 ? (double)t.recv / dur : 0.0,
		    t_pub1 > t_pub0 ? (double)t.sent / ((double)(t_pub1 - t_pub0) / 1e6) : 0.0,
		    lg_hist_pct(hist, 0.50), lg_hist_pct(hist, 0.90), lg_hist_pct(hist, 0.99),
		    hist->max, conn_s, conn_s > 0 ? (double)t.ready / conn_s : 0.0,
		    cpu_s,
		    measure && t.recv > 0 && !idle ? cpu_s * 1e6 / (double)t.recv : 0.0,
		    measure && t.ready > 0 && idle ? cpu_s * 1e6 / (double)t.ready : 0.0,
		    p2.sum.rss_kb, p0.sum.rss_kb,
		    measure && t.ready > 0 ? (double)rss_delta * 1024.0 / (double)t.ready : 0.0,
		    measure && wall_m > 0 ? cpu_s * 100.0 / wall_m : 0.0,
		    wall_m > 0 ? (self_m1 - self_m0) * 100.0 / wall_m : 0.0,
		    wall_m > 0 && others > 0 ? others * 100.0 / wall_m : 0.0,
		    lg_self_cpu() - self0);
		// A set of several processes (split tiers) also gets its parts.
		if (r->o.pids.n > 1)
			lg_print_each("", &r->o.pids, m0, m1, &p2);
		if (r->o.aux.n > 0)
			lg_print_aux(&r->o.aux, &a0, x0, x1, &a2, idle, &t, wall_m);
		printf("}\n");
		fflush(stdout);
		rc = t.ready == r->nconns ? 0 : 1;
	}
out:
	// The process ends here; the OS reclaims connections and buffers.
	free(hist);
	return rc;
}
