// ACL: rule templates, filter-vs-pattern containment, the bypass attempts
// of issue 4, per-client rules, rule validation and reload.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "auth_acl.h"
#include "core/config.h"

static const char *const rules_json =
    "["
    "{\"topic\":\"user/%u/#\"},"
    "{\"action\":\"subscribe\",\"topic\":\"device/%c/+\"},"
    "{\"action\":\"publish\",\"topic\":\"device/%c/status\",\"max_qos\":1,\"retain\":false},"
    "{\"permission\":\"deny\",\"topic\":\"broadcast/internal/#\"},"
    "{\"action\":\"subscribe\",\"topic\":\"broadcast/#\",\"max_qos\":1},"
    "{\"topic\":\"tenant/%{tenant}/#\"},"
    "{\"action\":\"subscribe\",\"topic\":\"$SYS/broker/uptime\"},"
    "{\"action\":\"subscribe\",\"topic\":\"+/public/#\"},"
    "{\"action\":\"both\",\"topic\":\"room/%{room}-%u\"}"
    "]";

typedef struct acl_case {
	const char *user;     // NULL = anonymous
	const char *cid;
	int         action;
	const char *topic;
	size_t      len;      // 0 = strlen(topic)
	uint8_t     qos;
	bool        retain;
	int         verdict;
	uint8_t     granted;
} acl_case;

#define S BRK_ACL_SUBSCRIBE
#define P BRK_ACL_PUBLISH
#define A BRK_ACL_ALLOW
#define D BRK_ACL_DENY

static const acl_case cases[] = {
	// The user's own tree.
	{ "alice", "c-alice", S, "user/alice/inbox", 0, 1, false, A, 1 },
	{ "alice", "c-alice", S, "user/alice/#", 0, 2, false, A, 2 },
	{ "alice", "c-alice", S, "user/alice/+", 0, 0, false, A, 0 },
	{ "alice", "c-alice", S, "user/alice", 0, 0, false, A, 0 },
	{ "alice", "c-alice", P, "user/alice/x", 0, 1, true, A, 1 },
	// Bypass attempts from the issue: wildcards crossing the user level.
	{ "alice", "c-alice", S, "user/+/inbox", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "user/#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "+/bob/#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "+/alice/#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "+/+/#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "user/bob/inbox", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "user/alic", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "user/alice2/x", 0, 0, false, D, 0 },
	{ "alice", "c-alice", P, "user/bob/x", 0, 0, false, D, 0 },
	// Publish topics with wildcards are refused outright.
	{ "alice", "c-alice", P, "user/alice/+", 0, 0, false, D, 0 },
	{ "alice", "c-alice", P, "user/alice/#", 0, 0, false, D, 0 },
	// Client id templates, QoS and retain limits.
	{ "alice", "c-alice", S, "device/c-alice/temp", 0, 2, false, A, 2 },
	{ "alice", "c-alice", S, "device/c-alice/+", 0, 1, false, A, 1 },
	{ "alice", "c-alice", S, "device/c-alice/#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "device/+/temp", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "device/c-bob/temp", 0, 0, false, D, 0 },
	{ "alice", "c-alice", P, "device/c-alice/status", 0, 1, false, A, 1 },
	{ "alice", "c-alice", P, "device/c-alice/status", 0, 2, false, D, 0 },
	{ "alice", "c-alice", P, "device/c-alice/status", 0, 0, true, D, 0 },
	{ "alice", "c-alice", P, "device/c-alice/temp", 0, 0, false, D, 0 },
	// Deny before allow; a filter overlapping a deny rule is denied.
	{ "alice", "c-alice", S, "broadcast/news", 0, 2, false, A, 1 },
	{ "alice", "c-alice", S, "broadcast/internal/x", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "broadcast/#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "broadcast/+", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "broadcast/+/x", 0, 0, false, D, 0 },
	{ "alice", "c-alice", P, "broadcast/news", 0, 0, false, D, 0 },
	// Attribute templates (tenant = acme, room = r1 for alice).
	{ "alice", "c-alice", S, "tenant/acme/room1", 0, 0, false, A, 0 },
	{ "alice", "c-alice", S, "tenant/other/room1", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "tenant/+/room1", 0, 0, false, D, 0 },
	{ "alice", "c-alice", P, "room/r1-alice", 0, 0, false, A, 0 },
	{ "alice", "c-alice", P, "room/r1-bob", 0, 0, false, D, 0 },
	// '$' topics: only literal rules match them.
	{ "alice", "c-alice", S, "$SYS/broker/uptime", 0, 0, false, A, 0 },
	{ "alice", "c-alice", S, "$SYS/#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "$SYS/public/x", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "$foo/public/x", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "news/public/x", 0, 0, false, A, 0 },
	{ "alice", "c-alice", S, "+/public/#", 0, 0, false, A, 0 },
	// Malformed topics never reach the rules.
	{ "alice", "c-alice", S, "user/alice/\xff", 0, 0, false, D, 0 },
	{ "alice", "c-alice", P, "user/alice/a\0b", 14, 0, false, D, 0 },
	{ "alice", "c-alice", P, "user/alice/\xc0\xaf", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "user/alice/a#", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "", 0, 0, false, D, 0 },
	// Shared subscriptions are checked as their inner filter.
	{ "alice", "c-alice", S, "$share/g/user/alice/x", 0, 1, false, A, 1 },
	{ "alice", "c-alice", S, "$share/g/user/+/x", 0, 0, false, D, 0 },
	{ "alice", "c-alice", S, "$share/g/#", 0, 0, false, D, 0 },
	// Identities that must never be expanded into a pattern.
	{ "a/b", "c-1", S, "user/a/b/x", 0, 0, false, D, 0 },
	{ "#", "c-1", S, "user/#", 0, 0, false, D, 0 },
	{ "+", "c-1", S, "user/+/inbox", 0, 0, false, D, 0 },
	{ "", "c-1", S, "user//x", 0, 0, false, D, 0 },
	{ "bob", "+", S, "device/+/temp", 0, 0, false, D, 0 },
	{ "bob", "#", P, "device/#/status", 0, 0, false, D, 0 },
	{ "bob", "c-bob", S, "user/bob/inbox", 0, 0, false, A, 0 },
	// Anonymous: no %u, only identity-free rules.
	{ NULL, "c-anon", S, "user/x/y", 0, 0, false, D, 0 },
	{ NULL, "c-anon", S, "broadcast/news", 0, 0, false, A, 0 },
	{ NULL, "c-anon", S, "device/c-anon/t", 0, 0, false, A, 0 },
};

typedef struct fixture {
	hw_config cfg;
	brk_auth *a;
} fixture;

static void cfg_set(hw_config *cfg, const char *kv)
{
	char *why = NULL;

	if (hw_config_set(cfg, kv, &why) != HW_OK)
		fail_msg("config %s: %s", kv, why);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	char     buf[4096];
	char    *why = NULL;

	assert_int_equal(hw_config_init(&f->cfg), HW_OK);
	snprintf(buf, sizeof(buf), "auth.rules=%s", rules_json);
	cfg_set(&f->cfg, buf);
	cfg_set(&f->cfg, "auth.acl_default=deny");
	if (brk_auth_alloc(&f->a, &f->cfg, NULL, &why) != HW_OK)
		fail_msg("alloc: %s", why);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	brk_auth_free(f->a);
	hw_config_fini(&f->cfg);
	free(f);
	return 0;
}

static brk_identity *ident(const char *user, const char *cid, const char *rules)
{
	const char   *attrs[] = { "tenant", "acme", "room", "r1", NULL };
	brk_identity *id = NULL;
	char         *why = NULL;

	if (brk_identity_alloc(&id, user, cid, attrs, rules, &why) != HW_OK)
		fail_msg("identity: %s", why);
	return id;
}

static void test_acl_table(void **state)
{
	fixture *f = *state;
	size_t   n = sizeof(cases) / sizeof(cases[0]);

	assert_true(n >= 40);
	for (size_t i = 0; i < n; i++) {
		const acl_case *c = &cases[i];
		brk_identity   *id = c->user == NULL && strcmp(c->cid, "c-anon") == 0 ?
		      ident(NULL, c->cid, NULL) : ident(c->user, c->cid, NULL);
		hw_bytes        t = { (const uint8_t *)c->topic, c->len ? c->len : strlen(c->topic) };
		brk_acl_result  r = brk_auth_check(f->a, id, c->action, t, c->qos, c->retain, NULL, NULL);
		if ((int)r.verdict != c->verdict || (r.verdict == BRK_ACL_ALLOW && r.qos != c->granted))
			fail_msg("case %zu: user %s %s \"%s\" qos %u retain %d: got %s qos %u, want %s qos %u",
			    i, c->user ? c->user : "(anon)", c->action == S ? "subscribe" : "publish",
			    c->topic, c->qos, c->retain, r.verdict == A ? "allow" : "deny", r.qos,
			    c->verdict == A ? "allow" : "deny", c->granted);
		brk_identity_unref(id);
	}
}

static void test_acl_per_client_rules_first(void **state)
{
	fixture      *f = *state;
	brk_identity *id = ident("alice", "c-alice",
	    "[{\"permission\":\"deny\",\"topic\":\"user/%u/private/#\"},"
	    "{\"action\":\"subscribe\",\"topic\":\"vip/%u\"}]");

	assert_int_equal(brk_auth_check(f->a, id, S, hw_bytes_of_cstr("user/alice/private/x"), 0,
	                     false, NULL, NULL).verdict, D);
	// A filter overlapping the client's deny rule is denied as a whole.
	assert_int_equal(brk_auth_check(f->a, id, S, hw_bytes_of_cstr("user/alice/#"), 0, false,
	                     NULL, NULL).verdict, D);
	assert_int_equal(brk_auth_check(f->a, id, S, hw_bytes_of_cstr("user/alice/inbox"), 0,
	                     false, NULL, NULL).verdict, A);
	assert_int_equal(brk_auth_check(f->a, id, S, hw_bytes_of_cstr("vip/alice"), 0, false, NULL,
	                     NULL).verdict, A);
	assert_int_equal(brk_auth_check(f->a, id, S, hw_bytes_of_cstr("vip/bob"), 0, false, NULL,
	                     NULL).verdict, D);
	brk_identity_unref(id);
}

// Containment of filters in patterns without templates, level by level.
static void test_acl_containment(void **state)
{
	static const struct {
		const char *pattern;
		const char *filter;
		bool        contains;
		bool        overlaps;
	} t[] = {
		{ "a/#", "a", true, true },
		{ "a/#", "a/b/c", true, true },
		{ "a/#", "a/+", true, true },
		{ "a/#", "a/#", true, true },
		{ "a/#", "#", false, true },
		{ "a/#", "+/b", false, true },
		{ "a/+", "a/#", false, true },
		{ "a/+", "a/+", true, true },
		{ "a/+", "a/b/c", false, false },
		{ "a/+", "a", false, false },
		{ "a/+/c", "a/+/c", true, true },
		{ "a/+/c", "a/b/+", false, true },
		{ "a/b", "a/b", true, true },
		{ "a/b", "a/c", false, false },
		{ "+/+", "+/x", true, true },
		{ "#", "#", true, true },
		{ "#", "$SYS/x", false, false },
		{ "+/x", "$SYS/x", false, false },
		{ "$SYS/#", "$SYS/x", true, true },
		{ "$SYS/#", "#", false, false },
		{ "$SYS/#", "+/x", false, false },
		{ "a//b", "a//b", true, true },
		{ "a/+/b", "a//b", true, true },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char         *why = NULL;
		char          js[256];
		brk_json     *j = NULL;
		brk_acl_rules rs;
		brk_acl_vars  v = { 0 };
		hw_bytes      fb = hw_bytes_of_cstr(t[i].filter);

		snprintf(js, sizeof(js), "[{\"topic\":\"%s\"}]", t[i].pattern);
		assert_int_equal(brk_json_parse(js, strlen(js), &j), HW_OK);
		assert_int_equal(brk_acl_compile(j, NULL, NULL, &rs, &why), HW_OK);
		if (brk_acl_contains(fb, &rs.v[0], &v) != t[i].contains ||
		    brk_acl_overlaps(fb, &rs.v[0], &v) != t[i].overlaps)
			fail_msg("pattern %s filter %s: contains %d overlaps %d", t[i].pattern,
			    t[i].filter, brk_acl_contains(fb, &rs.v[0], &v),
			    brk_acl_overlaps(fb, &rs.v[0], &v));
		brk_acl_rules_fini(&rs);
		brk_json_free(j);
	}
}

static void test_acl_default_allow(void **state)
{
	hw_config cfg;
	brk_auth *a = NULL;
	char     *why = NULL;

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	cfg_set(&cfg, "auth.rules=[{\"permission\":\"deny\",\"topic\":\"secret/#\"}]");
	assert_int_equal(brk_auth_alloc(&a, &cfg, NULL, &why), HW_OK);
	assert_int_equal(brk_auth_check(a, NULL, S, hw_bytes_of_cstr("public/x"), 1, false, NULL,
	                     NULL).verdict, A);
	assert_int_equal(brk_auth_check(a, NULL, S, hw_bytes_of_cstr("secret/x"), 1, false, NULL,
	                     NULL).verdict, D);
	// '#' would include secret/...: denied even under default allow.
	assert_int_equal(brk_auth_check(a, NULL, S, hw_bytes_of_cstr("#"), 1, false, NULL,
	                     NULL).verdict, D);
	brk_auth_free(a);
	hw_config_fini(&cfg);
}

// An earlier allow rule with a lower max_qos that matches part of a
// wildcard filter caps the QoS granted to the whole filter.
static void test_acl_qos_cap_from_overlap(void **state)
{
	hw_config cfg;
	brk_auth *a = NULL;
	char     *why = NULL;

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	cfg_set(&cfg, "auth.acl_default=deny");
	cfg_set(&cfg, "auth.rules=[{\"topic\":\"a/slow\",\"max_qos\":0},{\"topic\":\"a/#\"}]");
	assert_int_equal(brk_auth_alloc(&a, &cfg, NULL, &why), HW_OK);
	assert_int_equal(brk_auth_check(a, NULL, S, hw_bytes_of_cstr("a/+"), 2, false, NULL, NULL).qos, 0);
	assert_int_equal(brk_auth_check(a, NULL, S, hw_bytes_of_cstr("a/fast"), 2, false, NULL, NULL).qos, 2);
	assert_int_equal(brk_auth_check(a, NULL, S, hw_bytes_of_cstr("a/slow"), 2, false, NULL, NULL).qos, 0);
	brk_auth_free(a);
	hw_config_fini(&cfg);
}

// Every bad rule is refused with its index and content in the message.
static void test_acl_rule_errors(void **state)
{
	static const struct {
		const char *rules;
		const char *want;
	} t[] = {
		{ "[{\"topic\":\"a\"},{\"topic\":\"a/#/b\"}]", "rule 1 {\"topic\":\"a/#/b\"}: '#' must be the last level" },
		{ "[{\"topic\":\"a/b+\"}]", "rule 0 {\"topic\":\"a/b+\"}: level 2: '+' and '#' must be whole levels" },
		{ "[{\"topic\":\"a/%x\"}]", "rule 0 {\"topic\":\"a/%x\"}: level 2: unknown template" },
		{ "[{\"topic\":\"a/%{}\"}]", "unterminated or empty %{...}" },
		{ "[{\"topc\":\"a\"}]", "rule 0 {\"topc\":\"a\"}: unknown field \"topc\"" },
		{ "[{\"topic\":\"a\",\"action\":\"read\"}]", "\"action\" must be subscribe, publish or both" },
		{ "[{\"topic\":\"a\",\"max_qos\":3}]", "\"max_qos\" must be 0, 1 or 2" },
		{ "[{\"topic\":\"a\",\"permission\":\"maybe\"}]", "\"permission\" must be allow or deny" },
		{ "[{\"topic\":\"a\",\"delegate\":\"nope\"}]", "\"delegate\" names no callback" },
		{ "[{\"topic\":\"\"}]", "\"topic\" is required" },
		{ "[\"a/b\"]", "rule 0 \"a/b\": a rule must be an object" },
		{ "{\"topic\":\"a\"}", "rules must be a list" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		hw_config cfg;
		char      kv[512];
		char     *why = NULL;
		assert_int_equal(hw_config_init(&cfg), HW_OK);
		snprintf(kv, sizeof(kv), "auth.rules=%s", t[i].rules);
		cfg_set(&cfg, kv);
		assert_int_equal(brk_auth_validate(&cfg, &why), HW_ECONFIG);
		assert_non_null(why);
		if (strstr(why, t[i].want) == NULL || strncmp(why, "auth.rules: ", 12) != 0)
			fail_msg("rules %s: message \"%s\" lacks \"%s\"", t[i].rules, why, t[i].want);
		free(why);
		hw_config_fini(&cfg);
	}
}

static void test_acl_reload(void **state)
{
	fixture      *f = *state;
	brk_identity *id = ident("alice", "c-alice", NULL);
	char         *why = NULL;
	hw_bytes      inbox = hw_bytes_of_cstr("user/alice/inbox");
	hw_bytes      news = hw_bytes_of_cstr("news/today");

	assert_int_equal(brk_auth_check(f->a, id, S, inbox, 0, false, NULL, NULL).verdict, A);
	assert_int_equal(brk_auth_check(f->a, id, S, news, 0, false, NULL, NULL).verdict, D);
	// A bad rule: the reload fails naming it, the old rules stay.
	cfg_set(&f->cfg, "auth.rules=[{\"topic\":\"news/#\"},{\"topic\":\"x/#/y\"}]");
	assert_int_equal(brk_auth_reload(f->a, &f->cfg, &why), HW_ECONFIG);
	assert_non_null(strstr(why, "rule 1 {\"topic\":\"x/#/y\"}"));
	free(why);
	why = NULL;
	assert_int_equal(brk_auth_check(f->a, id, S, inbox, 0, false, NULL, NULL).verdict, A);
	assert_int_equal(brk_auth_check(f->a, id, S, news, 0, false, NULL, NULL).verdict, D);
	// A good reload: new checks see the new rules at once.
	cfg_set(&f->cfg, "auth.rules=[{\"topic\":\"news/#\"}]");
	assert_int_equal(brk_auth_reload(f->a, &f->cfg, &why), HW_OK);
	assert_int_equal(brk_auth_check(f->a, id, S, inbox, 0, false, NULL, NULL).verdict, D);
	assert_int_equal(brk_auth_check(f->a, id, S, news, 0, false, NULL, NULL).verdict, A);
	brk_identity_unref(id);
}

// The YAML file carries rules as a structured list; the config keeps it as
// JSON for the auth module, and --print-config shows it back.
static void test_acl_rules_from_yaml(void **state)
{
	char          path[] = "/tmp/hawser-auth-yaml-XXXXXX";
	int           fd = mkstemp(path);
	FILE         *fp = fdopen(fd, "w");
	hw_config     cfg;
	brk_auth     *a = NULL;
	char         *why = NULL;
	brk_identity *id = ident("alice", "c1", NULL);

	(void)state;
	fputs("auth:\n"
	      "  acl_default: deny\n"
	      "  chain: [anonymous]\n"
	      "  rules:\n"
	      "    - {permission: deny, topic: \"user/%u/private/#\"}\n"
	      "    - topic: \"user/%u/#\"\n"
	      "      action: both\n"
	      "      max_qos: 1\n"
	      "      retain: false\n",
	    fp);
	fclose(fp);
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	if (hw_config_load_file(&cfg, path, &why) != HW_OK)
		fail_msg("load: %s", why);
	unlink(path);
	assert_string_equal(cfg.auth.rules,
	    "[{\"permission\":\"deny\",\"topic\":\"user/%u/private/#\"},"
	    "{\"topic\":\"user/%u/#\",\"action\":\"both\",\"max_qos\":1,\"retain\":false}]");
	// --print-config output loads back to the same rules.
	{
		char     *text = NULL;
		size_t    tl = 0;
		FILE     *mf = open_memstream(&text, &tl);
		char      p2[] = "/tmp/hawser-auth-dump-XXXXXX";
		int       fd2 = mkstemp(p2);
		hw_config back;
		hw_config_dump(&cfg, mf);
		fclose(mf);
		assert_int_equal(write(fd2, text, tl), (ssize_t)tl);
		close(fd2);
		assert_int_equal(hw_config_init(&back), HW_OK);
		if (hw_config_load_file(&back, p2, &why) != HW_OK)
			fail_msg("reload dump: %s\n%s", why, text);
		assert_string_equal(back.auth.rules, cfg.auth.rules);
		assert_string_equal(back.auth.callbacks, "");
		hw_config_fini(&back);
		unlink(p2);
		free(text);
	}
	assert_int_equal(brk_auth_alloc(&a, &cfg, NULL, &why), HW_OK);
	assert_int_equal(brk_auth_check(a, id, S, hw_bytes_of_cstr("user/alice/x"), 2, false, NULL,
	                     NULL).qos, 1);
	assert_int_equal(brk_auth_check(a, id, S, hw_bytes_of_cstr("user/alice/private/x"), 0,
	                     false, NULL, NULL).verdict, D);
	assert_int_equal(brk_auth_check(a, id, P, hw_bytes_of_cstr("user/alice/x"), 0, true, NULL,
	                     NULL).verdict, D);
	brk_identity_unref(id);
	brk_auth_free(a);
	hw_config_fini(&cfg);
}

static void test_acl_denied_codes(void **state)
{
	(void)state;
	assert_int_equal(brk_auth_denied_code(4, BRK_ACL_SUBSCRIBE), 0x80);
	assert_int_equal(brk_auth_denied_code(3, BRK_ACL_SUBSCRIBE), 0x80);
	assert_int_equal(brk_auth_denied_code(5, BRK_ACL_SUBSCRIBE), 0x87);
	assert_int_equal(brk_auth_denied_code(5, BRK_ACL_PUBLISH), 0x87);
	assert_int_equal(brk_auth_denied_code(4, BRK_ACL_PUBLISH), 0x00);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_acl_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acl_per_client_rules_first, setup, teardown),
		cmocka_unit_test(test_acl_containment),
		cmocka_unit_test(test_acl_default_allow),
		cmocka_unit_test(test_acl_qos_cap_from_overlap),
		cmocka_unit_test(test_acl_rule_errors),
		cmocka_unit_test_setup_teardown(test_acl_reload, setup, teardown),
		cmocka_unit_test(test_acl_rules_from_yaml),
		cmocka_unit_test(test_acl_denied_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
