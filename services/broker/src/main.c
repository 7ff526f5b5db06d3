// hawser-broker: parse the configuration, run the broker until SIGINT or
// SIGTERM; SIGHUP reloads the configuration's auth section (same file,
// environment and flags as at startup) without dropping connections.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "server.h"

extern char **environ;

static const char brk_main_prog[] = "hawser-broker";
static const char brk_main_summary[] =
    "Hawser broker: MQTT sessions, subscriptions, QoS, retained messages, wills.";

// brk_main_load is hw_cli_load plus, for --check-config, the broker's own
// checks (the auth section), which the shared command line cannot know.
static int brk_main_load(hw_config *cfg, int argc, char **argv)
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
	rc = hw_cli_load(cfg, n, args, environ, brk_main_prog, brk_main_summary, NULL);
	free(args);
	if (rc != 0 || !check)
		return rc;
	if (brk_server_check_config(cfg, &why) != HW_OK) {
		fprintf(stderr, "%s: config: %s\n", brk_main_prog, why != NULL ? why : "out of memory");
		rc = 2;
	} else {
		printf("config ok\n");
		rc = 1;
	}
	free(why);
	hw_config_fini(cfg);
	return rc;
}

// brk_main_reload loads the configuration again and applies what can change
// at run time; a bad one is logged and the running settings stay.
static void brk_main_reload(brk_server *srv, int argc, char **argv)
{
	hw_config cfg;
	char *why = NULL;

	if (hw_cli_load(&cfg, argc, argv, environ, brk_main_prog, brk_main_summary, NULL) != 0) {
		hw_log_warn("BRK-AUTH-RELOAD", "SIGHUP: the configuration does not load (see the "
		    "message above); the running settings stay");
		return;
	}
	(void)brk_server_reload(srv, &cfg, &why); // logs BRK-AUTH-RELOAD either way
	free(why);
	hw_config_fini(&cfg);
}

int main(int argc, char **argv)
{
	hw_config cfg;
	hw_metrics *metrics = NULL;
	brk_server *srv = NULL;
	sigset_t sigs;
	int rc, sig = 0, status = 1;
	hw_err err;

	rc = brk_main_load(&cfg, argc, argv);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	hw_cli_log_setup(&cfg);
	hw_log_crash_setup();
	// Block the signals before any thread starts so every thread inherits
	// the mask and sigwait below receives them.
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	// A Redis or callback server that resets its connection must cost a
	// write error (EPIPE, handled by reconnecting), not the process:
	// hiredis writes with write(2).
	signal(SIGPIPE, SIG_IGN);
	if (hw_metrics_alloc(&metrics) != HW_OK)
		goto out;
	if ((err = brk_server_alloc(&srv, &cfg, metrics)) != HW_OK) {
		status = err == HW_ECONFIG ? 2 : 1;
		goto out;
	}
	if (brk_server_start(srv, 1) != HW_OK)
		goto out;
	for (;;) {
		if (sigwait(&sigs, &sig) != 0 || sig != SIGHUP)
			break;
		brk_main_reload(srv, argc, argv);
	}
	hw_log_info("BRK-STOP", "signal %d: stopping", sig);
	status = 0;
out:
	brk_server_stop(srv);
	brk_server_free(srv);
	hw_metrics_free(metrics);
	hw_config_fini(&cfg);
	return status;
}
