// hawser-broker: parse the configuration, run the broker until SIGINT or
// SIGTERM.
#include <signal.h>
#include <stdio.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "server.h"

extern char **environ;

int main(int argc, char **argv)
{
	hw_config cfg;
	hw_metrics *metrics = NULL;
	brk_server *srv = NULL;
	hw_log_level level = HW_LOG_INFO;
	sigset_t sigs;
	int rc, sig = 0, status = 1;

	rc = hw_cli_load(&cfg, argc, argv, environ, "hawser-broker",
	    "Hawser broker: MQTT sessions, subscriptions, QoS, retained messages, wills.", NULL);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	(void)hw_log_level_parse(cfg.log.level, &level);
	hw_log_setup(level, cfg.node.id);
	// Block the signals before any thread starts so every thread inherits
	// the mask and sigwait below receives them.
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (hw_metrics_alloc(&metrics) != HW_OK)
		goto out;
	if (brk_server_alloc(&srv, &cfg, metrics) != HW_OK)
		goto out;
	if (brk_server_start(srv, 1) != HW_OK)
		goto out;
	sigwait(&sigs, &sig);
	hw_log_info("BRK-STOP", "signal %d: stopping", sig);
	status = 0;
out:
	brk_server_stop(srv);
	brk_server_free(srv);
	hw_metrics_free(metrics);
	hw_config_fini(&cfg);
	return status;
}
