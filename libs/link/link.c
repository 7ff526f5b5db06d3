// NNG wiring between tiers (link/link.h).
//
// Design notes:
// - The inbox is a pull0 socket with one listener. One nng_aio runs the
//   receive loop: its callback unpacks the message into a Batch, hands it to
//   the user's callback, and re-arms the receive, so batches are delivered
//   one at a time, in arrival order, on an NNG thread.
// - Each peer is a push0 socket with one dialer started with
//   NNG_FLAG_NONBLOCK: NNG keeps dialing in the background with backoff
//   (RECONNMINT..RECONNMAXT). The socket's send buffer (HW_LINK_SENDBUF
//   messages) holds messages while no connection is up; sends are
//   non-blocking and fail with HW_EFULL past it.
// - A push socket with one dialer has at most one pipe at a time, so a peer
//   remembers the id of its live pipe (0: none) for hw_link_peer_connected:
//   ADD_POST sets it, REM_POST clears it only if it is still that pipe (NNG
//   can run REM_POST for a pipe that never got ADD_POST, when it closes
//   during its handshake; a counter would go negative there). nng_close
//   waits for running pipe callbacks, so no callback touches a peer after
//   its socket is closed.
// - Reset (hw_link_peer_reset) swaps the peer's socket: a fresh socket is
//   opened and configured, published in p->sock_id under p->mtx (which also
//   clears the pipe id), dialed, and only then is the old one closed, which
//   drops what it buffered. Pipe callbacks ignore pipes whose socket is not
//   p->sock_id, so a late callback of the old socket cannot mark the peer
//   connected. Resets of one peer are serialised by p->reset_mtx, which is
//   held across nng_close and never taken by a callback.
// - Park (hw_link_peer_park) is a reset to no socket at all: sock_id 0,
//   which NNG answers with NNG_ECLOSED, so nothing is buffered or dialed
//   until hw_link_peer_get (or a reset) gives the peer a fresh socket.
// - hw_link_send holds p->mtx around reading p->sock_id and nng_sendmsg
//   (non-blocking, and push0 serialises sends on its socket lock anyway), so
//   a send goes entirely to the old socket or entirely to the new one, and
//   the old socket is closed with no send in flight: NNG 1.5's push0 leaks
//   a message handed to a pipe whose close is racing with the send.
// - Locks: link->mtx guards the peer list only; p->mtx guards p->sock_id
//   and p->pipe_id (senders, pipe callbacks, the swap). Neither is held
//   while calling the user's callback; p->mtx is never held across
//   nng_close (which waits for pipe callbacks that take it). Order:
//   p->reset_mtx, then p->mtx; link->mtx is never held with either.
// - Close: hw_link_close closes the inbox socket (the pending receive then
//   fails with NNG_ECLOSED and the loop stops re-arming), then nng_aio_stop
//   waits for a callback that is still running. Only then are peers closed
//   and memory freed, so no callback runs after hw_link_close returns.
// - Every batch a receiver gets lives in one arena (link/arena.h), so
//   hw_link_batch_free is one walk: received batches are unpacked into it,
//   inproc batches are copied into it.
// - inproc:// does not use NNG at all (link/local.h): the inbox binds a
//   process-wide endpoint and an inproc peer delivers on the sender's thread
//   under the endpoint's mutex, with the same order, buffering (before the
//   receiver starts), HW_EFULL and close guarantees. Reset drops what waits
//   for an unbound receiver; park makes sends fail with HW_ECLOSED until
//   hw_link_peer_get. Nothing is packed on this path: the receiver gets a
//   deep copy of the sender's batch, which is what unpacking the packed
//   batch gave it, at a fraction of the cost.

#include "link/link.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "link/arena.h"
#include "link/local.h"

#define LINK_RECVMAXSZ (64u * 1024u * 1024u)
// The redial backoff stays well under cluster.member_down_ms (default 1 s):
// a member that comes back must be reconnected before the members view
// takes it for gone again, or views flap (a 2 s cap made a broker started
// 0.9 s after the router leave and rejoin the router's view). A failed dial
// on loopback or in a cluster network costs microseconds.
#define LINK_RECONNMINT_MS 50
#define LINK_RECONNMAXT_MS 250
#define LINK_URL_MAX 512

struct hw_link_peer {
	struct hw_link_peer *next;
	hw_link             *link;
	char                *url;
	pthread_mutex_t      reset_mtx; // serialises hw_link_peer_reset
	pthread_mutex_t      mtx;       // guards sock_id/pipe_id changes and sends
	atomic_uint          sock_id;   // current push socket (nng_socket.id)
	atomic_uint          pipe_id;   // its live pipe, 0 when none
	link_local          *local;     // inproc://: the endpoint, no socket
	atomic_bool          parked;    // inproc:// only
};

struct hw_link {
	char           *node;
	char           *url; // advertised inbox URL
	nng_socket      inbox;
	nng_listener    listener;
	nng_aio        *aio;
	hw_link_recv_fn fn;
	void           *arg;
	bool            started;
	link_local     *local; // inproc://: the endpoint, no NNG inbox

	pthread_mutex_t mtx; // guards peers
	hw_link_peer   *peers;

	hw_counter *batches_sent;
	hw_counter *items_sent;
	hw_counter *batches_received;
	hw_counter *items_received;
	hw_counter *send_full;
	hw_counter *bad_batches;
};

// link_err maps an NNG error code to hw_err.
static hw_err link_err(int rv)
{
	switch (rv) {
	case 0: return HW_OK;
	case NNG_ENOMEM: return HW_ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP: return HW_EINVAL;
	case NNG_EAGAIN: return HW_EFULL;
	case NNG_ECLOSED: return HW_ECLOSED;
	case NNG_ETIMEDOUT: return HW_ETIMEDOUT;
	case NNG_EADDRINUSE: return HW_EEXIST;
	default: return HW_EIO;
	}
}

// ---------------------------------------------------------------------------
// Receive loop

// link_deliver hands one batch to the user's callback (NNG's receive loop
// and inproc deliveries both end here).
static void link_deliver(void *arg, hw_batch *b)
{
	hw_link *l = arg;

	hw_counter_inc(l->batches_received);
	hw_counter_add(l->items_received, b->n_items);
	l->fn(l->arg, b);
}

static void link_recv_cb(void *arg)
{
	hw_link *l = arg;
	nng_msg  *msg;
	hw_batch *b;
	int       rv = nng_aio_result(l->aio);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return; // closing: do not re-arm
	if (rv == 0) {
		msg = nng_aio_get_msg(l->aio);
		nng_aio_set_msg(l->aio, NULL);
		b = link_batch_unpack(nng_msg_body(msg), nng_msg_len(msg));
		nng_msg_free(msg);
		if (b != NULL) {
			link_deliver(l, b);
		} else {
			// Bad peer input never takes the process down: count it.
			hw_counter_inc(l->bad_batches);
			hw_log_warn("LINK-BAD-BATCH", "dropped a batch that does not unpack");
		}
	} else {
		hw_log_warn("LINK-RECV", "receive failed: %s", nng_strerror(rv));
	}
	nng_recv_aio(l->inbox, l->aio);
}

// ---------------------------------------------------------------------------
// Opening

// link_is_any_host reports whether host stands for every interface, which
// peers cannot dial.
static bool link_is_any_host(const char *host)
{
	return host[0] == '\0' || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0 ||
	    strcmp(host, "::") == 0;
}

// link_derive_url builds the advertised URL from the listen URL: the real
// port for tcp port 0, and the host name in place of a wildcard host.
static hw_err link_derive_url(hw_link *l, const char *listen_url, char **out)
{
	const char *sep = strstr(listen_url, "://");
	char        scheme[16];
	char        host[256];
	char        name[256];
	char        url[LINK_URL_MAX];
	int         port;
	size_t      sl;

	if (sep == NULL || (sl = (size_t)(sep - listen_url)) >= sizeof(scheme))
		return HW_EINVAL;
	memcpy(scheme, listen_url, sl);
	scheme[sl] = '\0';
	if (strncmp(scheme, "tcp", 3) != 0) {
		// ipc:// and inproc:// are dialed exactly as they are listened.
		*out = strdup(listen_url);
		return *out != NULL ? HW_OK : HW_ENOMEM;
	}
	// hw_config_split_host_port refuses an empty host; NNG takes
	// "tcp://:port", so give it a wildcard to parse.
	if (sep[3] == ':')
		snprintf(host, sizeof(host), "*");
	else if (hw_config_split_host_port(sep + 3, host, sizeof(host), &port) != HW_OK)
		return HW_EINVAL;
	if (nng_listener_get_int(l->listener, NNG_OPT_TCP_BOUND_PORT, &port) != 0)
		return HW_EINTERNAL;
	if (link_is_any_host(host)) {
		if (gethostname(name, sizeof(name)) != 0)
			return HW_EIO;
		name[sizeof(name) - 1] = '\0';
		snprintf(host, sizeof(host), "%s", name);
	}
	if (strchr(host, ':') != NULL)
		snprintf(url, sizeof(url), "%s://[%s]:%d", scheme, host, port);
	else
		snprintf(url, sizeof(url), "%s://%s:%d", scheme, host, port);
	*out = strdup(url);
	return *out != NULL ? HW_OK : HW_ENOMEM;
}

static void link_metrics(hw_link *l, hw_metrics *m)
{
	if (m == NULL)
		return;
	l->batches_sent = hw_metrics_counter(m, "hawser_link_batches_sent_total",
	    "Batches queued to peers.", NULL, NULL);
	l->items_sent = hw_metrics_counter(m, "hawser_link_items_sent_total",
	    "Items in the batches queued to peers.", NULL, NULL);
	l->batches_received = hw_metrics_counter(m, "hawser_link_batches_received_total",
	    "Batches received on the inbox.", NULL, NULL);
	l->items_received = hw_metrics_counter(m, "hawser_link_items_received_total",
	    "Items in the batches received on the inbox.", NULL, NULL);
	l->send_full = hw_metrics_counter(m, "hawser_link_send_full_total",
	    "Sends refused because the peer's buffer was full.", NULL, NULL);
	l->bad_batches = hw_metrics_counter(m, "hawser_link_bad_batches_total",
	    "Received messages dropped because they are not a valid Batch.", NULL, NULL);
}

static bool link_is_local(const char *url)
{
	return strncmp(url, "inproc://", 9) == 0;
}

// link_open_local finishes hw_link_open for an inproc:// inbox (l has its
// node, mutex and metrics): bind the endpoint; the URL is as listened.
static hw_err link_open_local(hw_link *l, const char *listen_url,
    const char *advertise_url, hw_link **out)
{
	const char *url = advertise_url != NULL && advertise_url[0] != '\0' ? advertise_url
	                                                                     : listen_url;
	hw_err err;

	if ((err = link_local_get(listen_url, &l->local)) == HW_OK) {
		if ((err = link_local_bind(l->local)) != HW_OK) {
			hw_log_error("LINK-LISTEN", "cannot listen on %s: %s", listen_url,
			    "another link listens there");
		} else if ((l->url = strdup(url)) == NULL) {
			link_local_unbind(l->local);
			err = HW_ENOMEM;
		}
		if (err != HW_OK)
			link_local_put(l->local);
	}
	if (err != HW_OK) {
		free(l->node);
		pthread_mutex_destroy(&l->mtx);
		free(l);
		return err;
	}
	*out = l;
	return HW_OK;
}

hw_err hw_link_open(hw_link **out, const char *node_id, const char *listen_url,
    const char *advertise_url, hw_metrics *metrics)
{
	hw_link *l;
	hw_err   err;
	int      rv;

	if (out == NULL || node_id == NULL || listen_url == NULL)
		return HW_EINVAL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return HW_ENOMEM;
	if (pthread_mutex_init(&l->mtx, NULL) != 0) {
		err = HW_ENOMEM;
		goto fail_free;
	}
	if ((l->node = strdup(node_id)) == NULL) {
		err = HW_ENOMEM;
		goto fail_mtx;
	}
	link_metrics(l, metrics);
	if (link_is_local(listen_url))
		return link_open_local(l, listen_url, advertise_url, out);
	if ((rv = nng_pull0_open(&l->inbox)) != 0) {
		err = link_err(rv);
		goto fail_node;
	}
	if ((rv = nng_socket_set_size(l->inbox, NNG_OPT_RECVMAXSZ, LINK_RECVMAXSZ)) != 0 ||
	    (rv = nng_listener_create(&l->listener, l->inbox, listen_url)) != 0 ||
	    (rv = nng_listener_start(l->listener, 0)) != 0) {
		hw_log_error("LINK-LISTEN", "cannot listen on %s: %s", listen_url,
		    nng_strerror(rv));
		err = link_err(rv);
		goto fail_sock;
	}
	if (advertise_url != NULL && advertise_url[0] != '\0') {
		if ((l->url = strdup(advertise_url)) == NULL) {
			err = HW_ENOMEM;
			goto fail_sock;
		}
	} else if ((err = link_derive_url(l, listen_url, &l->url)) != HW_OK) {
		goto fail_sock;
	}
	if ((rv = nng_aio_alloc(&l->aio, link_recv_cb, l)) != 0) {
		err = link_err(rv);
		goto fail_url;
	}
	*out = l;
	return HW_OK;

fail_url:
	free(l->url);
fail_sock:
	nng_close(l->inbox);
fail_node:
	free(l->node);
fail_mtx:
	pthread_mutex_destroy(&l->mtx);
fail_free:
	free(l);
	return err;
}

hw_err hw_link_start(hw_link *l, hw_link_recv_fn fn, void *arg)
{
	if (l == NULL || fn == NULL)
		return HW_EINVAL;
	if (l->started)
		return HW_EEXIST;
	l->fn = fn;
	l->arg = arg;
	l->started = true;
	if (l->local != NULL)
		link_local_start(l->local, link_deliver, l);
	else
		nng_recv_aio(l->inbox, l->aio);
	return HW_OK;
}

const char *hw_link_url(const hw_link *l)
{
	return l->url;
}

const char *hw_link_node(const hw_link *l)
{
	return l->node;
}

// ---------------------------------------------------------------------------
// Peers

// link_peer_sock returns the peer's current socket.
static nng_socket link_peer_sock(hw_link_peer *p)
{
	nng_socket s;

	s.id = atomic_load(&p->sock_id);
	return s;
}

static void link_pipe_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
	hw_link_peer *p = arg;
	unsigned      id = (unsigned)nng_pipe_id(pipe);
	unsigned      cur;

	pthread_mutex_lock(&p->mtx);
	// A callback of a socket that a reset replaced says nothing about the
	// current one.
	if ((unsigned)nng_pipe_socket(pipe).id == atomic_load(&p->sock_id)) {
		if (ev == NNG_PIPE_EV_ADD_POST) {
			atomic_store(&p->pipe_id, id);
		} else if (ev == NNG_PIPE_EV_REM_POST) {
			cur = id;
			atomic_compare_exchange_strong(&p->pipe_id, &cur, 0u);
		}
	}
	pthread_mutex_unlock(&p->mtx);
}

// link_sock_open creates a configured push socket whose pipe events go to
// p; it does not dial.
static hw_err link_sock_open(hw_link_peer *p, nng_socket *out)
{
	nng_socket s;
	int        rv;

	if ((rv = nng_push0_open(&s)) != 0)
		return link_err(rv);
	if ((rv = nng_socket_set_int(s, NNG_OPT_SENDBUF, HW_LINK_SENDBUF)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT, LINK_RECONNMINT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, LINK_RECONNMAXT_MS)) != 0 ||
	    (rv = nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, link_pipe_cb, p)) != 0 ||
	    (rv = nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, link_pipe_cb, p)) != 0) {
		nng_close(s);
		return link_err(rv);
	}
	*out = s;
	return HW_OK;
}

// link_sock_dial starts the background dial of s to p's URL.
static hw_err link_sock_dial(hw_link_peer *p, nng_socket s)
{
	int rv;

	// Non-blocking: a peer that is not up yet is retried in the background
	// while sends queue in the socket's buffer.
	if ((rv = nng_dial(s, p->url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		hw_log_error("LINK-DIAL", "cannot dial %s: %s", p->url, nng_strerror(rv));
		return link_err(rv);
	}
	return HW_OK;
}

// link_peer_open creates the push socket of a new peer and starts dialing.
static hw_err link_peer_open(hw_link *l, const char *url, hw_link_peer **out)
{
	hw_link_peer *p;
	nng_socket    s;
	hw_err        err;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return HW_ENOMEM;
	p->link = l;
	atomic_init(&p->sock_id, 0u);
	atomic_init(&p->pipe_id, 0u);
	atomic_init(&p->parked, false);
	if ((p->url = strdup(url)) == NULL) {
		err = HW_ENOMEM;
		goto fail_free;
	}
	if (link_is_local(url)) {
		if ((err = link_local_get(url, &p->local)) != HW_OK)
			goto fail_url;
		*out = p;
		return HW_OK;
	}
	if (pthread_mutex_init(&p->mtx, NULL) != 0) {
		err = HW_ENOMEM;
		goto fail_url;
	}
	if (pthread_mutex_init(&p->reset_mtx, NULL) != 0) {
		err = HW_ENOMEM;
		goto fail_mtx;
	}
	if ((err = link_sock_open(p, &s)) != HW_OK)
		goto fail_reset_mtx;
	// Published before dialing, so the first ADD_POST matches it.
	atomic_store(&p->sock_id, (unsigned)s.id);
	if ((err = link_sock_dial(p, s)) != HW_OK)
		goto fail_sock;
	*out = p;
	return HW_OK;

fail_sock:
	nng_close(s);
fail_reset_mtx:
	pthread_mutex_destroy(&p->reset_mtx);
fail_mtx:
	pthread_mutex_destroy(&p->mtx);
fail_url:
	free(p->url);
fail_free:
	free(p);
	return err;
}

// link_peer_free closes p's socket and frees it.
static void link_peer_free(hw_link_peer *p)
{
	if (p->local != NULL) {
		link_local_put(p->local);
		free(p->url);
		free(p);
		return;
	}
	nng_close(link_peer_sock(p));
	pthread_mutex_destroy(&p->reset_mtx);
	pthread_mutex_destroy(&p->mtx);
	free(p->url);
	free(p);
}

// link_peer_swap replaces p's socket with a fresh one, dialed, or with none
// when parking (sock_id 0: NNG refuses sends to it with NNG_ECLOSED), then
// closes the old one, which drops what it buffered. Caller holds
// p->reset_mtx.
static hw_err link_peer_swap(hw_link_peer *p, bool dial)
{
	nng_socket old;
	nng_socket s = NNG_SOCKET_INITIALIZER;
	hw_err     err = HW_OK;

	if (dial && (err = link_sock_open(p, &s)) != HW_OK)
		return err;
	pthread_mutex_lock(&p->mtx);
	old = link_peer_sock(p);
	atomic_store(&p->sock_id, (unsigned)s.id);
	atomic_store(&p->pipe_id, 0u);
	pthread_mutex_unlock(&p->mtx);
	// A dial that fails to start (it only fails on a bad URL, which the
	// first dial already accepted) leaves a socket that buffers without
	// sending; the old one is closed all the same so nothing stale
	// survives, and the error is reported.
	if (dial)
		err = link_sock_dial(p, s);
	if (old.id != 0)
		nng_close(old);
	return err;
}

hw_err hw_link_peer_reset(hw_link_peer *p)
{
	hw_err err;

	if (p == NULL)
		return HW_EINVAL;
	if (p->local != NULL) {
		link_local_drop(p->local);
		atomic_store(&p->parked, false);
		return HW_OK;
	}
	pthread_mutex_lock(&p->reset_mtx);
	err = link_peer_swap(p, true);
	pthread_mutex_unlock(&p->reset_mtx);
	hw_log_debug("LINK-PEER-RESET", "reset %s", p->url);
	return err;
}

void hw_link_peer_park(hw_link_peer *p)
{
	if (p == NULL)
		return;
	if (p->local != NULL) {
		atomic_store(&p->parked, true);
		link_local_drop(p->local);
		return;
	}
	pthread_mutex_lock(&p->reset_mtx);
	(void)link_peer_swap(p, false); // cannot fail without a dial
	pthread_mutex_unlock(&p->reset_mtx);
	hw_log_debug("LINK-PEER-PARK", "parked %s", p->url);
}

// link_peer_unpark gives a parked peer a fresh, dialed socket.
static hw_err link_peer_unpark(hw_link_peer *p)
{
	hw_err err = HW_OK;

	pthread_mutex_lock(&p->reset_mtx);
	// Checked under reset_mtx: two callers racing here dial once.
	if (atomic_load(&p->sock_id) == 0u) {
		err = link_peer_swap(p, true);
		hw_log_debug("LINK-PEER", "dialing %s again", p->url);
	}
	pthread_mutex_unlock(&p->reset_mtx);
	return err;
}

hw_err hw_link_peer_get(hw_link *l, const char *url, hw_link_peer **out)
{
	hw_link_peer *p;
	hw_err        err = HW_OK;

	if (l == NULL || url == NULL || url[0] == '\0' || out == NULL)
		return HW_EINVAL;
	pthread_mutex_lock(&l->mtx);
	for (p = l->peers; p != NULL; p = p->next) {
		if (strcmp(p->url, url) == 0)
			break;
	}
	if (p == NULL && (err = link_peer_open(l, url, &p)) == HW_OK) {
		p->next = l->peers;
		l->peers = p;
		hw_log_debug("LINK-PEER", "dialing %s", url);
	}
	pthread_mutex_unlock(&l->mtx);
	// Outside l->mtx: unparking opens a socket and dials.
	if (err == HW_OK && p->local != NULL)
		atomic_store(&p->parked, false);
	else if (err == HW_OK && atomic_load(&p->sock_id) == 0u)
		err = link_peer_unpark(p);
	if (err == HW_OK)
		*out = p;
	return err;
}

const char *hw_link_peer_url(const hw_link_peer *p)
{
	return p->url;
}

bool hw_link_peer_connected(const hw_link_peer *p)
{
	hw_link_peer *q = (hw_link_peer *)p;

	if (q->local != NULL)
		return !atomic_load(&q->parked) && link_local_bound(q->local);
	return atomic_load(&q->pipe_id) != 0u;
}

// link_send_local hands a copy of b to p's inproc endpoint (link/arena.h).
static hw_err link_send_local(hw_link_peer *p, const hw_batch *b)
{
	hw_batch *c;
	hw_err    err;

	if (atomic_load(&p->parked))
		return HW_ECLOSED;
	if ((c = link_batch_copy(b)) == NULL)
		return HW_ENOMEM;
	if ((err = link_local_send(p->local, c, HW_LINK_SENDBUF)) != HW_OK)
		link_batch_release(c);
	return err;
}

hw_err hw_link_send(hw_link_peer *p, hw_item *const *items, size_t n)
{
	hw_batch b;
	hw_link *l;
	nng_msg *msg;
	size_t   size;
	int      rv;

	if (p == NULL || (n > 0 && items == NULL))
		return HW_EINVAL;
	l = p->link;
	hawser__internal__v1__batch__init(&b);
	// The batch only borrows these for packing; protobuf-c's struct has no
	// const members, hence the casts.
	b.from = l->node;
	b.reply_to = l->url;
	b.n_items = n;
	b.items = (hw_item **)items;
	if (p->local != NULL) {
		hw_err err = link_send_local(p, &b);

		if (err == HW_EFULL)
			hw_counter_inc(l->send_full);
		if (err != HW_OK)
			return err;
		hw_counter_inc(l->batches_sent);
		hw_counter_add(l->items_sent, n);
		return HW_OK;
	}
	size = hawser__internal__v1__batch__get_packed_size(&b);
	if ((rv = nng_msg_alloc(&msg, size)) != 0)
		return link_err(rv);
	// Pack straight into the message body: no intermediate copy.
	hawser__internal__v1__batch__pack(&b, nng_msg_body(msg));
	pthread_mutex_lock(&p->mtx);
	rv = nng_sendmsg(link_peer_sock(p), msg, NNG_FLAG_NONBLOCK);
	pthread_mutex_unlock(&p->mtx);
	if (rv != 0) {
		nng_msg_free(msg);
		if (rv == NNG_EAGAIN)
			hw_counter_inc(l->send_full);
		return link_err(rv);
	}
	hw_counter_inc(l->batches_sent);
	hw_counter_add(l->items_sent, n);
	return HW_OK;
}

void hw_link_batch_free(hw_batch *b)
{
	link_batch_release(b);
}

void hw_link_close(hw_link *l)
{
	hw_link_peer *p;

	if (l == NULL)
		return;
	// Stop the receive loop BEFORE closing the socket: waits for a callback
	// still running, and the stopped aio refuses the callback's re-arm (no
	// callback then). Closing first let NNG 1.5.2 hang in nng_close now and
	// then (a pending receive on a pull socket that had just taken a burst;
	// seen as brokers that ignored SIGTERM in the Redis tests).
	if (l->local != NULL) {
		link_local_unbind(l->local);
		link_local_put(l->local);
	} else {
		nng_aio_stop(l->aio);
		nng_close(l->inbox);
		nng_aio_free(l->aio);
	}
	p = l->peers;
	while (p != NULL) {
		hw_link_peer *next = p->next;
		link_peer_free(p);
		p = next;
	}
	pthread_mutex_destroy(&l->mtx);
	free(l->url);
	free(l->node);
	free(l);
}
