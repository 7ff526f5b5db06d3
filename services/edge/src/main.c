// hawser-edge: the edge tier as its own process.
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "server.h"

extern char **environ;

typedef struct edge_main_sig {
	edge_server *s;
	sigset_t     set;
	atomic_bool  quit;
} edge_main_sig;

// edge_main_sigwait turns SIGINT/SIGTERM into edge_server_stop, on its own
// thread (nothing runs in a signal handler); SIGHUP is logged and ignored.
static void *edge_main_sigwait(void *arg)
{
	edge_main_sig *ms = arg;

	for (;;) {
		int sig = 0;

		if (sigwait(&ms->set, &sig) != 0)
			continue;
		if (atomic_load(&ms->quit))
			break;
		if (sig == SIGHUP) {
			// Operators often HUP every process after a config change;
			// the edge has nothing to reload, and HUP's default action
			// would drop every connection.
			hw_log_info("EDGE-SIGNAL", "SIGHUP: nothing to reload in the edge; ignored");
			continue;
		}
		hw_log_info("EDGE-SIGNAL", "signal %d: stopping", sig);
		edge_server_stop(ms->s);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	hw_config cfg;
	hw_metrics *metrics = NULL;
	edge_server *s = NULL;
	edge_main_sig ms;
	pthread_t sig_thread;
	hw_err err;
	int rc, status = 1;

	rc = hw_cli_load(&cfg, argc, argv, environ, "hawser-edge",
	    "Hawser edge: terminates MQTT over TCP/WebSocket (+TLS) and forwards to brokers.",
	    NULL);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	hw_cli_log_setup(&cfg);
	hw_log_crash_setup();

	// Block the stop signals in every thread (NNG's and lws's are created
	// later and inherit the mask); one thread takes them with sigwait.
	sigemptyset(&ms.set);
	sigaddset(&ms.set, SIGINT);
	sigaddset(&ms.set, SIGTERM);
	sigaddset(&ms.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &ms.set, NULL);
	signal(SIGPIPE, SIG_IGN);
	atomic_init(&ms.quit, false);

	if (hw_metrics_alloc(&metrics) != HW_OK) {
		hw_log_error("EDGE-START", "out of memory");
		goto out;
	}
	err = edge_server_alloc(&s, &cfg, metrics);
	if (err != HW_OK) {
		hw_log_error("EDGE-START", "cannot start: %s", hw_strerror(err));
		status = err == HW_ECONFIG ? 2 : 1;
		goto out;
	}
	ms.s = s;
	if (pthread_create(&sig_thread, NULL, edge_main_sigwait, &ms) != 0) {
		hw_log_error("EDGE-START", "cannot start the signal thread");
		goto out;
	}
	err = edge_server_run(s);
	status = err == HW_OK ? 0 : 1;

	atomic_store(&ms.quit, true);
	pthread_kill(sig_thread, SIGTERM);
	pthread_join(sig_thread, NULL);
out:
	edge_server_free(s);
	hw_metrics_free(metrics);
	hw_config_fini(&cfg);
	return status;
}
