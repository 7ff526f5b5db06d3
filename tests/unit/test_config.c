// Tests of the configuration table, its sources and the shared command line
// (libs/core/config.h).

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

// write_tmp writes text to a new temporary file and returns its path
// (static storage per call site is not needed: the caller frees).
static char *write_tmp(const char *text)
{
	char  tmpl[] = "/tmp/hawser-test-config-XXXXXX";
	int   fd = mkstemp(tmpl);
	FILE *fp;

	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	return strdup(tmpl);
}

static void assert_why_contains(const char *why, const char *needle)
{
	assert_non_null(why);
	if (strstr(why, needle) == NULL)
		fail_msg("error \"%s\" does not mention \"%s\"", why, needle);
}

static void test_defaults(void **state)
{
	hw_config cfg;
	char     *why = NULL;
	char      host[256];

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	assert_string_equal(cfg.edge.mqtt_listen, "0.0.0.0:1883");
	assert_string_equal(cfg.edge.mqtts_listen, "");
	assert_string_equal(cfg.edge.ws_listen, "0.0.0.0:8083");
	assert_string_equal(cfg.edge.http_listen, "0.0.0.0:9100");
	assert_string_equal(cfg.edge.listen, "tcp://0.0.0.0:7300");
	assert_string_equal(cfg.broker.listen, "tcp://0.0.0.0:7100");
	assert_string_equal(cfg.broker.http_listen, "0.0.0.0:9101");
	assert_string_equal(cfg.router.listen, "tcp://0.0.0.0:7200");
	assert_string_equal(cfg.router.http_listen, "0.0.0.0:9102");
	assert_non_null(cfg.edge.brokers);
	assert_string_equal(cfg.edge.brokers[0], "tcp://127.0.0.1:7100");
	assert_null(cfg.edge.brokers[1]);
	assert_string_equal(cfg.broker.routers[0], "tcp://127.0.0.1:7200");
	assert_string_equal(cfg.router.brokers[0], "tcp://127.0.0.1:7100");
	assert_int_equal(cfg.edge.max_packet_size, 1048576);
	assert_int_equal(cfg.edge.max_connections, 1000000);
	assert_int_equal(cfg.edge.write_queue_bytes, 1048576);
	assert_int_equal(cfg.edge.connect_timeout_ms, 10000);
	assert_int_equal(cfg.edge.drain_rate, 500);
	assert_int_equal(cfg.edge.drain_timeout_ms, 30000);
	assert_false(cfg.edge.demo_page);
	assert_int_equal(cfg.broker.workers, 0);
	assert_int_equal(cfg.broker.receive_maximum, 32);
	assert_int_equal(cfg.broker.max_inflight, 65535);
	assert_int_equal(cfg.broker.max_queued_messages, 1000);
	assert_int_equal(cfg.broker.max_queued_bytes, 16777216);
	assert_int_equal(cfg.broker.topic_alias_maximum, 64);
	assert_int_equal(cfg.broker.max_session_expiry, 86400 * 7);
	assert_int_equal(cfg.broker.max_keepalive, 0);
	assert_true(cfg.broker.retain_available);
	assert_true(cfg.broker.allow_anonymous);
	assert_string_equal(cfg.router.mode, "direct");
	assert_string_equal(cfg.store.backend, "memory");
	assert_string_equal(cfg.store.redis_url, "redis://127.0.0.1:6379/0");
	assert_string_equal(cfg.log.level, "info");

	// node.id defaults to <hostname>-<pid>.
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	char want[300];
	snprintf(want, sizeof(want), "%s-%ld", host, (long)getpid());
	assert_string_equal(cfg.node.id, want);

	// The defaults pass validation by themselves.
	assert_int_equal(hw_config_validate(&cfg, &why), HW_OK);
	hw_config_fini(&cfg);
	hw_config_fini(&cfg); // harmless twice
}

static const char *every_type_yaml =
    "# every type of key\n"
    "node:\n"
    "  id: edge-7\n"
    "log:\n"
    "  level: debug\n"
    "edge:\n"
    "  mqtt_listen: \"127.0.0.1:11883\"\n"
    "  max_packet_size: 4096\n"
    "  demo_page: yes\n"
    "  brokers:\n"
    "    - tcp://10.0.0.1:7100\n"
    "    - tcp://10.0.0.2:7100\n"
    "broker:\n"
    "  allow_anonymous: off\n"
    "  routers: [ \"inproc://r1\", \"ipc:///tmp/r2\" ]\n"
    "store:\n"
    "  backend: redis\n";

static void test_yaml_every_type(void **state)
{
	hw_config cfg;
	char     *why = NULL;
	char     *path = write_tmp(every_type_yaml);

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	assert_int_equal(hw_config_load_file(&cfg, path, &why), HW_OK);
	assert_null(why);
	assert_string_equal(cfg.node.id, "edge-7");
	assert_string_equal(cfg.log.level, "debug");
	assert_string_equal(cfg.edge.mqtt_listen, "127.0.0.1:11883");
	assert_int_equal(cfg.edge.max_packet_size, 4096);
	assert_true(cfg.edge.demo_page);
	assert_string_equal(cfg.edge.brokers[0], "tcp://10.0.0.1:7100");
	assert_string_equal(cfg.edge.brokers[1], "tcp://10.0.0.2:7100");
	assert_null(cfg.edge.brokers[2]);
	assert_false(cfg.broker.allow_anonymous);
	assert_string_equal(cfg.broker.routers[0], "inproc://r1");
	assert_string_equal(cfg.broker.routers[1], "ipc:///tmp/r2");
	assert_null(cfg.broker.routers[2]);
	assert_string_equal(cfg.store.backend, "redis");
	// Keys not in the file keep their defaults.
	assert_string_equal(cfg.edge.ws_listen, "0.0.0.0:8083");
	assert_int_equal(hw_config_validate(&cfg, &why), HW_OK);
	hw_config_fini(&cfg);
	unlink(path);
	free(path);
}

static hw_err load_yaml(const char *text, char **why)
{
	hw_config cfg;
	char     *path = write_tmp(text);
	hw_err    rv;

	assert_int_equal(hw_config_init(&cfg), HW_OK);
	rv = hw_config_load_file(&cfg, path, why);
	hw_config_fini(&cfg);
	unlink(path);
	free(path);
	return rv;
}

static void test_yaml_unknown_key(void **state)
{
	char *why = NULL;

	(void)state;
	assert_int_equal(load_yaml("edge:\n  mqtt_listen: 0.0.0.0:1\n  mqtt_lisen: x\n", &why),
	    HW_ECONFIG);
	assert_why_contains(why, "edge.mqtt_lisen");
	assert_why_contains(why, ":3"); // the line
	assert_why_contains(why, "edge.mqtt_listen"); // the suggestion
	free(why);
	why = NULL;
	assert_int_equal(load_yaml("edgy:\n  mqtt_listen: 0.0.0.0:1\n", &why), HW_ECONFIG);
	assert_why_contains(why, "edgy");
	assert_why_contains(why, "section");
	free(why);
}

static void test_yaml_out_of_bounds(void **state)
{
	char *why = NULL;

	(void)state;
	assert_int_equal(load_yaml("edge:\n  max_packet_size: 268435456\n", &why), HW_ECONFIG);
	assert_why_contains(why, "edge.max_packet_size");
	assert_why_contains(why, "268435456");
	assert_why_contains(why, ":2");
	free(why);
	why = NULL;
	// Decimal only: no sign, no hex, no suffix.
	assert_int_equal(load_yaml("broker:\n  receive_maximum: 0x10\n", &why), HW_ECONFIG);
	assert_why_contains(why, "broker.receive_maximum");
	free(why);
	why = NULL;
	assert_int_equal(load_yaml("broker:\n  receive_maximum: -1\n", &why), HW_ECONFIG);
	assert_why_contains(why, "broker.receive_maximum");
	free(why);
	why = NULL;
	assert_int_equal(load_yaml("log:\n  level: loud\n", &why), HW_ECONFIG);
	assert_why_contains(why, "log.level");
	assert_why_contains(why, "loud");
	free(why);
	why = NULL;
	// A list key given a scalar is a type error naming the key.
	assert_int_equal(load_yaml("edge:\n  brokers: tcp://a:1\n", &why), HW_ECONFIG);
	assert_why_contains(why, "edge.brokers");
	free(why);
	why = NULL;
	// Listener addresses are checked as host:port, inbox URLs as NNG URLs.
	assert_int_equal(load_yaml("edge:\n  ws_listen: 8083\n", &why), HW_ECONFIG);
	assert_why_contains(why, "edge.ws_listen");
	free(why);
	why = NULL;
	assert_int_equal(load_yaml("broker:\n  listen: http://x:1\n", &why), HW_ECONFIG);
	assert_why_contains(why, "broker.listen");
	free(why);
}

static void test_yaml_syntax_error(void **state)
{
	char *why = NULL;

	(void)state;
	assert_int_equal(load_yaml("edge:\n  mqtt_listen: [unclosed\n", &why), HW_ECONFIG);
	assert_non_null(why);
	free(why);
}

static void test_missing_file(void **state)
{
	hw_config cfg;
	char     *why = NULL;

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	assert_int_equal(hw_config_load_file(&cfg, "/nonexistent/hawser.yaml", &why),
	    HW_ECONFIG);
	assert_why_contains(why, "/nonexistent/hawser.yaml");
	free(why);
	hw_config_fini(&cfg);
}

static void test_env_overrides_file_and_set_overrides_env(void **state)
{
	hw_config cfg;
	char     *why = NULL;
	char     *path = write_tmp("edge:\n  drain_rate: 10\n  connect_timeout_ms: 2000\n");
	char     *envp[] = {
                "PATH=/usr/bin",
                "HAWSER_EDGE_DRAIN_RATE=20",
                "HAWSER_EDGE_BROKERS=tcp://a:1, tcp://b:2,inproc://c",
                "HAWSER_CONFIG=/ignored/by/load_env",
                "HAWSER_BIN_DIR=/tooling/variables/are/ignored",
                NULL,
	};

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	assert_int_equal(hw_config_load_file(&cfg, path, &why), HW_OK);
	assert_int_equal(cfg.edge.drain_rate, 10);
	assert_int_equal(hw_config_load_env(&cfg, envp, &why), HW_OK);
	assert_int_equal(cfg.edge.drain_rate, 20);
	assert_int_equal(cfg.edge.connect_timeout_ms, 2000); // file value kept
	// Lists from the environment are comma-separated, blanks trimmed.
	assert_string_equal(cfg.edge.brokers[0], "tcp://a:1");
	assert_string_equal(cfg.edge.brokers[1], "tcp://b:2");
	assert_string_equal(cfg.edge.brokers[2], "inproc://c");
	assert_null(cfg.edge.brokers[3]);
	assert_int_equal(hw_config_set(&cfg, "edge.drain_rate=30", &why), HW_OK);
	assert_int_equal(cfg.edge.drain_rate, 30);
	assert_int_equal(hw_config_set(&cfg, "edge.brokers=tcp://z:9", &why), HW_OK);
	assert_string_equal(cfg.edge.brokers[0], "tcp://z:9");
	assert_null(cfg.edge.brokers[1]);
	hw_config_fini(&cfg);
	unlink(path);
	free(path);
}

static void test_env_typo_is_error(void **state)
{
	hw_config cfg;
	char     *why = NULL;
	char     *envp[] = { "HAWSER_EDGE_MQTT_LISEN=0.0.0.0:1", NULL };

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	assert_int_equal(hw_config_load_env(&cfg, envp, &why), HW_ECONFIG);
	assert_why_contains(why, "HAWSER_EDGE_MQTT_LISEN");
	assert_why_contains(why, "HAWSER_EDGE_MQTT_LISTEN");
	free(why);
	hw_config_fini(&cfg);
}

static void test_bad_bool(void **state)
{
	hw_config cfg;
	char     *why = NULL;
	char     *envp[] = { "HAWSER_BROKER_RETAIN_AVAILABLE=maybe", NULL };
	static const char *const good[][2] = {
		{ "true", "1" }, { "yes", "1" }, { "on", "1" }, { "1", "1" },
		{ "false", "0" }, { "no", "0" }, { "off", "0" }, { "0", "0" },
	};

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char set[64];
		snprintf(set, sizeof(set), "edge.demo_page=%s", good[i][0]);
		assert_int_equal(hw_config_set(&cfg, set, &why), HW_OK);
		assert_int_equal(cfg.edge.demo_page, good[i][1][0] == '1');
	}
	assert_int_equal(hw_config_load_env(&cfg, envp, &why), HW_ECONFIG);
	assert_why_contains(why, "broker.retain_available");
	assert_why_contains(why, "maybe");
	assert_why_contains(why, "HAWSER_BROKER_RETAIN_AVAILABLE");
	free(why);
	why = NULL;
	assert_int_equal(hw_config_set(&cfg, "edge.demo_page=sure", &why), HW_ECONFIG);
	assert_why_contains(why, "edge.demo_page");
	assert_why_contains(why, "--set");
	free(why);
	why = NULL;
	assert_int_equal(hw_config_set(&cfg, "edge.nope=1", &why), HW_ECONFIG);
	assert_why_contains(why, "edge.nope");
	free(why);
	hw_config_fini(&cfg);
}

static void test_validate(void **state)
{
	hw_config cfg;
	char     *why = NULL;

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	assert_int_equal(hw_config_set(&cfg, "edge.mqtts_listen=0.0.0.0:8883", &why), HW_OK);
	assert_int_equal(hw_config_validate(&cfg, &why), HW_ECONFIG);
	assert_why_contains(why, "edge.tls_cert");
	free(why);
	why = NULL;
	assert_int_equal(hw_config_set(&cfg, "edge.tls_cert=/c.pem", &why), HW_OK);
	assert_int_equal(hw_config_set(&cfg, "edge.tls_key=/k.pem", &why), HW_OK);
	assert_int_equal(hw_config_validate(&cfg, &why), HW_OK);
	assert_int_equal(hw_config_set(&cfg, "router.brokers=", &why), HW_OK);
	assert_int_equal(hw_config_validate(&cfg, &why), HW_ECONFIG);
	assert_why_contains(why, "router.brokers");
	free(why);
	hw_config_fini(&cfg);
}

static void test_dump_round_trips(void **state)
{
	hw_config a, b;
	char     *why = NULL;
	char     *text = NULL;
	size_t    len = 0;
	FILE     *fp = open_memstream(&text, &len);
	char     *path;

	(void)state;
	assert_int_equal(hw_config_init(&a), HW_OK);
	assert_int_equal(hw_config_set(&a, "edge.brokers=tcp://x:1,tcp://y:2", &why), HW_OK);
	assert_int_equal(hw_config_set(&a, "edge.server_reference=say \"hi\"", &why), HW_OK);
	assert_int_equal(hw_config_set(&a, "broker.max_keepalive=600", &why), HW_OK);
	assert_int_equal(hw_config_set(&a, "broker.retain_available=no", &why), HW_OK);
	hw_config_dump(&a, fp);
	assert_int_equal(fclose(fp), 0);
	assert_non_null(strstr(text, "edge:\n"));
	assert_non_null(strstr(text, "  max_keepalive: 600\n"));
	path = write_tmp(text);
	assert_int_equal(hw_config_init(&b), HW_OK);
	assert_int_equal(hw_config_load_file(&b, path, &why), HW_OK);
	assert_string_equal(b.edge.brokers[1], "tcp://y:2");
	assert_null(b.edge.brokers[2]);
	assert_string_equal(b.edge.server_reference, "say \"hi\"");
	assert_int_equal(b.broker.max_keepalive, 600);
	assert_false(b.broker.retain_available);
	assert_string_equal(b.node.id, a.node.id);
	hw_config_fini(&a);
	hw_config_fini(&b);
	unlink(path);
	free(path);
	free(text);
}

static void test_cli(void **state)
{
	hw_config                cfg;
	char                    *path = write_tmp("edge:\n  drain_rate: 7\n");
	char                     cflag[256];
	char                    *envp[] = { "HAWSER_EDGE_DRAIN_TIMEOUT_MS=5", NULL };
	static const char *const defaults[] = { "edge.listen=inproc://hawser-edge", NULL };

	(void)state;
	snprintf(cflag, sizeof(cflag), "--config=%s", path);
	{
		char *argv[] = { "hawser-edge", cflag, "--set", "edge.drain_rate=8", NULL };
		assert_int_equal(hw_cli_load(&cfg, 4, argv, envp, "hawser-edge", "test", defaults), 0);
		assert_int_equal(cfg.edge.drain_rate, 8);
		assert_int_equal(cfg.edge.drain_timeout_ms, 5);
		assert_string_equal(cfg.edge.listen, "inproc://hawser-edge");
		hw_config_fini(&cfg);
	}
	{
		char *argv[] = { "hawser-edge", "-c", path, "--check-config", NULL };
		assert_int_equal(hw_cli_load(&cfg, 4, argv, envp, "hawser-edge", "test", NULL), 1);
	}
	{
		// The file may also come from HAWSER_CONFIG.
		char  env_cfg[300];
		char *envp2[] = { env_cfg, NULL };
		char *argv[] = { "hawser-edge", NULL };
		snprintf(env_cfg, sizeof(env_cfg), "HAWSER_CONFIG=%s", path);
		assert_int_equal(hw_cli_load(&cfg, 1, argv, envp2, "hawser-edge", "test", NULL), 0);
		assert_int_equal(cfg.edge.drain_rate, 7);
		hw_config_fini(&cfg);
	}
	{
		char *argv[] = { "hawser-edge", "--set", "edge.drain_rate=0", NULL };
		assert_int_equal(hw_cli_load(&cfg, 3, argv, envp, "hawser-edge", "test", NULL), 2);
	}
	{
		char *argv[] = { "hawser-edge", "-c", "/nonexistent.yaml", NULL };
		assert_int_equal(hw_cli_load(&cfg, 3, argv, envp, "hawser-edge", "test", NULL), 2);
	}
	{
		char *argv[] = { "hawser-edge", "--bogus", NULL };
		assert_int_equal(hw_cli_load(&cfg, 2, argv, envp, "hawser-edge", "test", NULL), 2);
	}
	{
		char *argv[] = { "hawser-edge", "-V", NULL };
		assert_int_equal(hw_cli_load(&cfg, 2, argv, envp, "hawser-edge", "test", NULL), 1);
	}
	unlink(path);
	free(path);
}

static void test_split_host_port(void **state)
{
	char host[64];
	int  port;

	(void)state;
	assert_int_equal(hw_config_split_host_port("0.0.0.0:1883", host, sizeof(host), &port), HW_OK);
	assert_string_equal(host, "0.0.0.0");
	assert_int_equal(port, 1883);
	assert_int_equal(hw_config_split_host_port("[::1]:0", host, sizeof(host), &port), HW_OK);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 0);
	assert_int_equal(hw_config_split_host_port("host:65536", host, sizeof(host), &port), HW_EINVAL);
	assert_int_equal(hw_config_split_host_port(":80", host, sizeof(host), &port), HW_EINVAL);
	assert_int_equal(hw_config_split_host_port("::1:80", host, sizeof(host), &port), HW_EINVAL);
	assert_int_equal(hw_config_split_host_port("host", host, sizeof(host), &port), HW_EINVAL);
}

// capture_cli runs hw_cli_load with stdout redirected to a temporary file
// and returns what it printed (heap string) and its result in *ret.
static char *capture_cli(int argc, char **argv, const char *const *defaults, int *ret)
{
	hw_config cfg;
	char      tmpl[] = "/tmp/hawser-test-stdout-XXXXXX";
	int       fd = mkstemp(tmpl);
	int       saved;
	FILE     *fp;
	long      len;
	char     *text;

	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(1);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 1), 1);
	*ret = hw_cli_load(&cfg, argc, argv, NULL, "hawser", "All tiers.", defaults);
	fflush(stdout);
	assert_int_equal(dup2(saved, 1), 1);
	close(saved);
	close(fd);
	fp = fopen(tmpl, "r");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	rewind(fp);
	text = calloc(1, (size_t)len + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)len, fp), (size_t)len);
	fclose(fp);
	unlink(tmpl);
	return text;
}

static void test_help_lists_keys_env_and_defaults(void **state)
{
	static const char *const defaults[] = { "edge.listen=inproc://hawser-edge", NULL };
	char                    *argv[] = { "hawser", "--help", NULL };
	int                      ret;
	char                    *text = capture_cli(2, argv, defaults, &ret);

	(void)state;
	assert_int_equal(ret, 1);
	assert_non_null(strstr(text, "Usage: hawser"));
	assert_non_null(strstr(text, "edge.mqtt_listen"));
	assert_non_null(strstr(text, "HAWSER_EDGE_MQTT_LISTEN"));
	assert_non_null(strstr(text, "\"0.0.0.0:1883\""));
	assert_non_null(strstr(text, "HAWSER_STORE_REDIS_URL"));
	assert_non_null(strstr(text, "u32 1..268435455"));
	// The binary's own defaults are what --help shows.
	assert_non_null(strstr(text, "\"inproc://hawser-edge\""));
	free(text);
}

static void test_print_config_and_version(void **state)
{
	char *argv[] = { "hawser", "--print-config", "--set", "broker.workers=3", NULL };
	char *argv_v[] = { "hawser", "--version", NULL };
	int   ret;
	char *text = capture_cli(4, argv, NULL, &ret);

	(void)state;
	assert_int_equal(ret, 1);
	assert_non_null(strstr(text, "broker:\n"));
	assert_non_null(strstr(text, "\n  workers: 3\n"));
	free(text);
	text = capture_cli(2, argv_v, NULL, &ret);
	assert_int_equal(ret, 1);
	assert_string_equal(text, "hawser 0.1.0\n");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_yaml_every_type),
		cmocka_unit_test(test_yaml_unknown_key),
		cmocka_unit_test(test_yaml_out_of_bounds),
		cmocka_unit_test(test_yaml_syntax_error),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_env_overrides_file_and_set_overrides_env),
		cmocka_unit_test(test_env_typo_is_error),
		cmocka_unit_test(test_bad_bool),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_dump_round_trips),
		cmocka_unit_test(test_cli),
		cmocka_unit_test(test_split_host_port),
		cmocka_unit_test(test_help_lists_keys_env_and_defaults),
		cmocka_unit_test(test_print_config_and_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
