// hawser: the edge, broker and router tiers in one process over inproc://
// links, with one metrics registry served by the edge's /metrics.
//
// Startup order: the router and the broker bind their inboxes first, then
// start (so their dials to each other find a listener at once), then the
// edge binds its listeners and runs on this thread. A small thread turns
// SIGINT/SIGTERM into edge_server_stop; when the edge's loop returns, the
// broker and the router stop, and everything is freed in reverse order.
// Exit status: 0 clean stop, 1 runtime failure, 2 configuration error.
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
// Each tier has its own server.h; name them by path.
#include "../broker/src/server.h"
#include "../edge/src/server.h"
#include "../router/src/server.h"

extern char **environ;

// What the all-in-one prefers over the built-in defaults; a file, the
// environment or --set still override any of it.
static const char *const hawser_defaults[] = {
	"edge.listen=inproc://hawser-edge",
	"broker.listen=inproc://hawser-broker",
	"router.listen=inproc://hawser-router",
	"edge.brokers=inproc://hawser-broker",
	"broker.routers=inproc://hawser-router",
	"router.brokers=inproc://hawser-broker",
	"edge.demo_page=true",
	NULL,
};

static const char hawser_summary[] =
    "Hawser all-in-one: edge, broker and router in one process (direct routing).";

typedef struct hawser_sig {
	edge_server *edge;
	brk_server  *broker;
	int          argc;     // the command line, loaded again on SIGHUP
	char       **argv;
	sigset_t     set;
	atomic_bool  quit;
} hawser_sig;

// hawser_reload loads the configuration as at startup and applies what can
// change at run time (the broker's auth section); a bad one is logged and
// the running settings stay.
static void hawser_reload(hawser_sig *hs)
{
	hw_config cfg;
	char *why = NULL;

	if (hw_cli_load(&cfg, hs->argc, hs->argv, environ, "hawser", hawser_summary,
	        hawser_defaults) != 0) {
		hw_log_warn("BRK-AUTH-RELOAD", "SIGHUP: the configuration does not load (see the "
		    "message above); the running settings stay");
		return;
	}
	(void)brk_server_reload(hs->broker, &cfg, &why); // logs BRK-AUTH-RELOAD either way
	free(why);
	hw_config_fini(&cfg);
}

// hawser_load is hw_cli_load plus, for --check-config, the broker's own
// checks (the auth section), which the shared command line cannot know.
static int hawser_load(hw_config *cfg, int argc, char **argv)
{
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	bool check = false;
	char *why = NULL;
	int n = 0, rc;

	if (args == NULL)
		return 2;
	for (int i = 0; i < argc; i++) {
		if (i > 0 && strcmp(argv[i], "--check-config") == 0)
			check = true;
		else
			args[n++] = argv[i];
	}
	rc = hw_cli_load(cfg, n, args, environ, "hawser", hawser_summary, hawser_defaults);
	free(args);
	if (rc != 0 || !check)
		return rc;
	if (brk_server_check_config(cfg, &why) != HW_OK) {
		fprintf(stderr, "hawser: config: %s\n", why != NULL ? why : "out of memory");
		rc = 2;
	} else {
		printf("config ok\n");
		rc = 1;
	}
	free(why);
	hw_config_fini(cfg);
	return rc;
}

static void *hawser_sigwait(void *arg)
{
	hawser_sig *hs = arg;

	for (;;) {
		int sig = 0;

		if (sigwait(&hs->set, &sig) != 0)
			continue;
		if (atomic_load(&hs->quit))
			break;
		if (sig == SIGHUP) {
			hawser_reload(hs);
			continue;
		}
		hw_log_info("HAWSER-SIGNAL", "signal %d: stopping", sig);
		edge_server_stop(hs->edge);
	}
	return NULL;
}

// hawser_status maps a startup error to the exit status.
static int hawser_status(const char *what, hw_err err)
{
	hw_log_error("HAWSER-START", "cannot start the %s: %s", what, hw_strerror(err));
	return err == HW_ECONFIG ? 2 : 1;
}

int main(int argc, char **argv)
{
	hw_config    cfg;
	hw_metrics  *metrics = NULL;
	rtr_server  *router = NULL;
	brk_server  *broker = NULL;
	edge_server *edge = NULL;
	hawser_sig   hs;
	pthread_t    sig_thread;
	hw_err       err;
	int          rc, status = 1;

	rc = hawser_load(&cfg, argc, argv);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	hw_cli_log_setup(&cfg);
	hw_log_crash_setup();

	// Block the stop signals before any thread exists (NNG's and lws's
	// inherit the mask); only hawser_sigwait takes them.
	sigemptyset(&hs.set);
	sigaddset(&hs.set, SIGINT);
	sigaddset(&hs.set, SIGTERM);
	sigaddset(&hs.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &hs.set, NULL);
	signal(SIGPIPE, SIG_IGN);
	atomic_init(&hs.quit, false);

	if (hw_metrics_alloc(&metrics) != HW_OK) {
		hw_log_error("HAWSER-START", "out of memory");
		goto out;
	}
	if ((err = rtr_server_alloc(&router, &cfg, metrics)) != HW_OK) {
		status = hawser_status("router", err);
		goto out;
	}
	if ((err = brk_server_alloc(&broker, &cfg, metrics)) != HW_OK) {
		status = hawser_status("broker", err);
		goto out;
	}
	if ((err = rtr_server_start(router, 0)) != HW_OK) {
		status = hawser_status("router", err);
		goto out;
	}
	if ((err = brk_server_start(broker, 0)) != HW_OK) {
		status = hawser_status("broker", err);
		goto out;
	}
	if ((err = edge_server_alloc(&edge, &cfg, metrics)) != HW_OK) {
		status = hawser_status("edge", err);
		goto out;
	}
	hs.edge = edge;
	hs.broker = broker;
	hs.argc = argc;
	hs.argv = argv;
	if (pthread_create(&sig_thread, NULL, hawser_sigwait, &hs) != 0) {
		hw_log_error("HAWSER-START", "cannot start the signal thread");
		goto out;
	}
	err = edge_server_run(edge);
	status = err == HW_OK ? 0 : 1;
	if (err != HW_OK)
		hw_log_error("HAWSER-RUN", "edge stopped: %s", hw_strerror(err));
	atomic_store(&hs.quit, true);
	pthread_kill(sig_thread, SIGTERM);
	pthread_join(sig_thread, NULL);
out:
	edge_server_free(edge);
	if (broker != NULL)
		brk_server_stop(broker);
	rtr_server_stop(router);
	if (broker != NULL)
		brk_server_free(broker);
	rtr_server_free(router);
	hw_metrics_free(metrics);
	hw_config_fini(&cfg);
	return status;
}
