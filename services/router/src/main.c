// hawser-router: the router tier as its own process.
#include <signal.h>
#include <stdio.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "server.h"

extern char **environ;

int main(int argc, char **argv)
{
	hw_config   cfg;
	hw_metrics *metrics = NULL;
	rtr_server *s = NULL;
	sigset_t    set;
	hw_err      err;
	int         rc, sig, status = 1;

	rc = hw_cli_load(&cfg, argc, argv, environ, "hawser-router",
	    "Hawser router: routes publishes between brokers (direct mode; Kafka pipelines later).",
	    NULL);
	if (rc == 1)
		return 0;
	if (rc != 0)
		return 2;
	hw_cli_log_setup(&cfg);
	hw_log_crash_setup();

	// Block the stop signals before NNG starts its threads (they inherit
	// the mask); this thread takes them with sigwait.
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (hw_metrics_alloc(&metrics) != HW_OK) {
		hw_log_error("RTR-START", "out of memory");
		goto out;
	}
	if ((err = rtr_server_alloc(&s, &cfg, metrics)) != HW_OK) {
		hw_log_error("RTR-START", "cannot start: %s", hw_strerror(err));
		status = err == HW_ECONFIG ? 2 : 1;
		goto out;
	}
	if ((err = rtr_server_start(s, 1)) != HW_OK) {
		hw_log_error("RTR-START", "cannot start: %s", hw_strerror(err));
		status = err == HW_ECONFIG ? 2 : 1;
		goto out;
	}
	// SIGHUP: nothing to reload in the router yet (pipelines are read at
	// startup); its default action would stop the process, so it is taken
	// here, logged and ignored.
	while (sigwait(&set, &sig) != 0 || sig == SIGHUP) {
		if (sig == SIGHUP) {
			hw_log_info("RTR-SIGNAL", "SIGHUP: nothing to reload in the router; ignored");
			sig = 0;
		}
	}
	hw_log_info("RTR-SIGNAL", "signal %d: stopping", sig);
	rtr_server_stop(s);
	status = 0;
out:
	rtr_server_free(s);
	hw_metrics_free(metrics);
	hw_config_fini(&cfg);
	return status;
}
