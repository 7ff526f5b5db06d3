// CONNECT authentication: JWT (HS256/RS256/ES256; expired, not yet valid,
// wrong key, wrong algorithm including none, malformed), the password
// file, anonymous, the empty chain, and the CONNACK codes for 3.1.1 and 5.0.

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>

#include "auth.h"
#include "core/config.h"

typedef struct outcome {
	bool          called;
	bool          allowed;
	uint8_t       code;
	const char   *method;
	brk_identity *id;
} outcome;

static void on_connect(void *arg, brk_auth_connect_result *r)
{
	outcome *o = arg;

	assert_false(o->called); // exactly once
	o->called = true;
	o->allowed = r->allowed;
	o->code = r->code;
	o->method = r->method;
	o->id = r->identity;
}

static void cfg_set(hw_config *cfg, const char *kv)
{
	char *why = NULL;

	if (hw_config_set(cfg, kv, &why) != HW_OK)
		fail_msg("config %s: %s", kv, why);
}

// connect_with runs one CONNECT that must complete inline (local methods).
static outcome connect_with(brk_auth *a, uint8_t version, const char *user, const char *pass)
{
	brk_auth_connect_req req = { 0 };
	outcome              o = { 0 };

	req.version = version;
	req.client_id = "c1";
	req.username = user != NULL ? hw_bytes_of_cstr(user) : HW_BYTES_NULL;
	req.password = pass != NULL ? hw_bytes_of_cstr(pass) : HW_BYTES_NULL;
	req.peer = "127.0.0.1:5555";
	req.listener = "mqtt";
	assert_int_equal(brk_auth_connect(a, &req, on_connect, &o), HW_OK);
	assert_true(o.called);
	return o;
}

static void expect_denied(brk_auth *a, const char *user, const char *pass, uint8_t v4, uint8_t v5)
{
	outcome o4 = connect_with(a, 4, user, pass);
	outcome o5 = connect_with(a, 5, user, pass);

	assert_false(o4.allowed);
	assert_null(o4.id);
	assert_int_equal(o4.code, v4);
	assert_false(o5.allowed);
	assert_int_equal(o5.code, v5);
}

static brk_identity *expect_allowed(brk_auth *a, const char *user, const char *pass,
    const char *method, const char *want_user)
{
	outcome o4 = connect_with(a, 4, user, pass);
	outcome o5 = connect_with(a, 5, user, pass);

	if (!o4.allowed)
		fail_msg("denied with code 0x%02x", o4.code);
	assert_true(o5.allowed);
	assert_int_equal(o4.code, 0);
	assert_string_equal(o4.method, method);
	if (want_user == NULL)
		assert_null(brk_identity_user(o4.id));
	else
		assert_string_equal(brk_identity_user(o4.id), want_user);
	brk_identity_unref(o5.id);
	return o4.id;
}

// ---------------------------------------------------------------------------
// Keys and tokens

static char *pem_of(EVP_PKEY *k, bool private_key)
{
	BIO  *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long  n;

	if (private_key)
		assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	else
		assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
	n = BIO_get_mem_data(b, &p);
	s = strndup(p, (size_t)n);
	BIO_free(b);
	return s;
}

// token builds a JWT signed with alg/key; exp/nbf relative to now (0 = absent).
static char *token(jwt_alg_t alg, const char *key, const char *sub, long exp_in, long nbf_in,
    const char *extra_json)
{
	jwt_t *t = NULL;
	char  *s;
	long   now = (long)time(NULL);

	assert_int_equal(jwt_new(&t), 0);
	if (sub != NULL)
		jwt_add_grant(t, "sub", sub);
	if (exp_in != 0)
		jwt_add_grant_int(t, "exp", now + exp_in);
	if (nbf_in != 0)
		jwt_add_grant_int(t, "nbf", now + nbf_in);
	if (extra_json != NULL)
		assert_int_equal(jwt_add_grants_json(t, extra_json), 0);
	assert_int_equal(jwt_set_alg(t, alg, (const unsigned char *)key, (int)strlen(key)), 0);
	s = jwt_encode_str(t);
	jwt_free(t);
	assert_non_null(s);
	return s;
}

static char *b64url(const char *s)
{
	size_t n = strlen(s);
	char  *o = malloc(n * 2 + 8);
	int    k = EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);

	for (int i = 0; i < k; i++)
		o[i] = o[i] == '+' ? '-' : o[i] == '/' ? '_' : o[i];
	while (k > 0 && o[k - 1] == '=')
		k--;
	o[k] = '\0';
	return o;
}

static brk_auth *auth_jwt(const char *alg, const char *key, const char *extra)
{
	hw_config cfg;
	brk_auth *a = NULL;
	char     *why = NULL;
	char      kv[8192];

	assert_int_equal(hw_config_init(&cfg), HW_OK);
	cfg_set(&cfg, "auth.chain=jwt");
	snprintf(kv, sizeof(kv), "auth.jwt.alg=%s", alg);
	cfg_set(&cfg, kv);
	snprintf(kv, sizeof(kv), "auth.jwt.key=%s", key);
	cfg_set(&cfg, kv);
	for (const char *p = extra; p != NULL && *p != '\0';) {
		const char *semi = strchr(p, ';');
		size_t      n = semi ? (size_t)(semi - p) : strlen(p);
		snprintf(kv, sizeof(kv), "%.*s", (int)n, p);
		cfg_set(&cfg, kv);
		p += n + (semi != NULL);
	}
	if (brk_auth_alloc(&a, &cfg, NULL, &why) != HW_OK)
		fail_msg("alloc: %s", why);
	hw_config_fini(&cfg);
	return a;
}

#define SECRET "s3cret-for-tests-only-0123456789"

static void test_jwt_hs256_valid_claims_and_rules(void **state)
{
	brk_auth     *a = auth_jwt("HS256", SECRET,
	        "auth.jwt.attr_claims=tenant,level;auth.jwt.acl_claim=acl;auth.acl_default=deny");
	char         *t = token(JWT_ALG_HS256, SECRET, "alice", 3600, -10,
	            "{\"tenant\":\"acme\",\"level\":3,\"acl\":[{\"topic\":\"t/%{tenant}/%u/#\"}]}");
	brk_identity *id = expect_allowed(a, "ignored", t, "jwt", "alice");

	(void)state;
	assert_string_equal(brk_identity_attr(id, "tenant"), "acme");
	assert_string_equal(brk_identity_attr(id, "level"), "3");
	assert_int_equal(brk_auth_check(a, id, BRK_ACL_SUBSCRIBE, hw_bytes_of_cstr("t/acme/alice/x"),
	                     0, false, NULL, NULL).verdict, BRK_ACL_ALLOW);
	assert_int_equal(brk_auth_check(a, id, BRK_ACL_SUBSCRIBE, hw_bytes_of_cstr("t/acme/bob/x"),
	                     0, false, NULL, NULL).verdict, BRK_ACL_DENY);
	brk_identity_unref(id);
	free(t);
	brk_auth_free(a);
}

static void test_jwt_time_checks(void **state)
{
	brk_auth *a = auth_jwt("HS256", SECRET, "auth.jwt.leeway_s=30");
	char     *expired = token(JWT_ALG_HS256, SECRET, "alice", -100, 0, NULL);
	char     *in_leeway = token(JWT_ALG_HS256, SECRET, "alice", -10, 0, NULL);
	char     *future = token(JWT_ALG_HS256, SECRET, "alice", 3600, 600, NULL);
	char     *no_exp = token(JWT_ALG_HS256, SECRET, "alice", 0, 0, NULL);

	(void)state;
	expect_denied(a, NULL, expired, 0x04, 0x86);
	brk_identity_unref(expect_allowed(a, NULL, in_leeway, "jwt", "alice"));
	expect_denied(a, NULL, future, 0x04, 0x86);
	expect_denied(a, NULL, no_exp, 0x04, 0x86);
	free(expired);
	free(in_leeway);
	free(future);
	free(no_exp);
	brk_auth_free(a);
}

static void test_jwt_wrong_key_and_algorithm(void **state)
{
	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	char     *rpub = pem_of(rsa, false);
	char     *rpriv = pem_of(rsa, true);
	brk_auth *hs = auth_jwt("HS256", SECRET, NULL);
	brk_auth *rs = auth_jwt("RS256", rpub, NULL);
	char     *wrong_key = token(JWT_ALG_HS256, "another-secret-of-the-same-size!", "alice", 3600, 0, NULL);
	char     *hs384 = token(JWT_ALG_HS384, SECRET, "alice", 3600, 0, NULL);
	char     *rs_tok = token(JWT_ALG_RS256, rpriv, "alice", 3600, 0, NULL);
	// Key confusion: HS256 signed with the RSA public key as the secret.
	char     *confused = token(JWT_ALG_HS256, rpub, "alice", 3600, 0, NULL);
	char      payload[128], none_tok[512], none_sig[600];
	char     *h, *p;

	(void)state;
	snprintf(payload, sizeof(payload), "{\"sub\":\"alice\",\"exp\":%ld}", (long)time(NULL) + 3600);
	h = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}");
	p = b64url(payload);
	snprintf(none_tok, sizeof(none_tok), "%s.%s.", h, p);
	// alg none with a signature from a valid token glued on.
	snprintf(none_sig, sizeof(none_sig), "%s.%s.%s", h, p, strrchr(rs_tok, '.') + 1);

	expect_denied(hs, NULL, wrong_key, 0x04, 0x86);
	expect_denied(hs, NULL, hs384, 0x04, 0x86);
	expect_denied(hs, NULL, none_tok, 0x04, 0x86);
	expect_denied(hs, NULL, none_sig, 0x04, 0x86);
	expect_denied(hs, NULL, rs_tok, 0x04, 0x86);
	expect_denied(rs, NULL, none_tok, 0x04, 0x86);
	expect_denied(rs, NULL, confused, 0x04, 0x86);
	brk_identity_unref(expect_allowed(rs, NULL, rs_tok, "jwt", "alice"));
	free(h);
	free(p);
	free(wrong_key);
	free(hs384);
	free(rs_tok);
	free(confused);
	free(rpub);
	free(rpriv);
	EVP_PKEY_free(rsa);
	brk_auth_free(hs);
	brk_auth_free(rs);
}

// es256_raw signs a token the way RFC 7518 says (signature = R || S, 64
// bytes), independently of libjwt, to check interoperability.
static char *es256_raw(EVP_PKEY *k, const char *payload)
{
	char          *h = b64url("{\"alg\":\"ES256\",\"typ\":\"JWT\"}");
	char          *p = b64url(payload);
	char           input[1024], sig64[200];
	unsigned char  der[128], raw[64];
	size_t         dl = sizeof(der);
	EVP_MD_CTX    *ctx = EVP_MD_CTX_new();
	const unsigned char *dp = der;
	ECDSA_SIG     *sig;
	const BIGNUM  *r, *s;
	char          *out = malloc(2048);
	int            n;

	snprintf(input, sizeof(input), "%s.%s", h, p);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
	assert_int_equal(EVP_DigestSign(ctx, der, &dl, (const unsigned char *)input, strlen(input)), 1);
	sig = d2i_ECDSA_SIG(NULL, &dp, (long)dl);
	assert_non_null(sig);
	ECDSA_SIG_get0(sig, &r, &s);
	BN_bn2binpad(r, raw, 32);
	BN_bn2binpad(s, raw + 32, 32);
	n = EVP_EncodeBlock((unsigned char *)sig64, raw, 64);
	for (int i = 0; i < n; i++)
		sig64[i] = sig64[i] == '+' ? '-' : sig64[i] == '/' ? '_' : sig64[i];
	while (n > 0 && sig64[n - 1] == '=')
		n--;
	sig64[n] = '\0';
	snprintf(out, 2048, "%s.%s", input, sig64);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(ctx);
	free(h);
	free(p);
	return out;
}

static void test_jwt_es256(void **state)
{
	EVP_PKEY *ec = EVP_EC_gen("P-256");
	EVP_PKEY *ec2 = EVP_EC_gen("P-256");
	char     *pub = pem_of(ec, false);
	char     *priv = pem_of(ec, true);
	char     *priv2 = pem_of(ec2, true);
	brk_auth *a = auth_jwt("ES256", pub, NULL);
	char     *good = token(JWT_ALG_ES256, priv, "dev-7", 3600, 0, NULL);
	char     *other = token(JWT_ALG_ES256, priv2, "dev-7", 3600, 0, NULL);

	char      payload[128];
	char     *raw;

	(void)state;
	snprintf(payload, sizeof(payload), "{\"sub\":\"dev-8\",\"exp\":%ld}", (long)time(NULL) + 60);
	raw = es256_raw(ec, payload);
	brk_identity_unref(expect_allowed(a, NULL, good, "jwt", "dev-7"));
	brk_identity_unref(expect_allowed(a, NULL, raw, "jwt", "dev-8"));
	expect_denied(a, NULL, other, 0x04, 0x86);
	free(raw);
	free(good);
	free(other);
	free(pub);
	free(priv);
	free(priv2);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ec2);
	brk_auth_free(a);
}

static void test_jwt_malformed_and_missing(void **state)
{
	brk_auth             *a = auth_jwt("HS256", SECRET, NULL);
	brk_auth             *u = auth_jwt("HS256", SECRET, "auth.jwt.token_field=username");
	char                 *good = token(JWT_ALG_HS256, SECRET, "alice", 3600, 0, NULL);
	char                 *nosub = token(JWT_ALG_HS256, SECRET, NULL, 3600, 0, NULL);
	char                  cut[1024];
	brk_auth_connect_req  req = { 0 };
	outcome               o = { 0 };

	(void)state;
	snprintf(cut, sizeof(cut), "%.*s", (int)strlen(good) - 5, good);
	expect_denied(a, NULL, cut, 0x04, 0x86);                // signature cut short
	expect_denied(a, NULL, "aaaa.bbbb.cccc", 0x04, 0x86);   // JWT-shaped garbage
	expect_denied(a, NULL, "not a token", 0x04, 0x86);       // no method accepts it
	expect_denied(a, NULL, nosub, 0x04, 0x86);              // no user claim
	expect_denied(a, NULL, NULL, 0x05, 0x87);               // no credentials at all
	// Token carried in the user name instead.
	brk_identity_unref(expect_allowed(u, good, NULL, "jwt", "alice"));
	expect_denied(u, "alice", good, 0x04, 0x86);
	// MQTT 5 enhanced authentication is not supported: 0x8C.
	req.version = 5;
	req.client_id = "c1";
	req.password = hw_bytes_of_cstr(good);
	req.auth_method = hw_bytes_of_cstr("SCRAM-SHA-1");
	assert_int_equal(brk_auth_connect(a, &req, on_connect, &o), HW_OK);
	assert_true(o.called);
	assert_false(o.allowed);
	assert_int_equal(o.code, 0x8C);
	free(good);
	free(nosub);
	brk_auth_free(a);
	brk_auth_free(u);
}

static void test_jwt_config_errors(void **state)
{
	hw_config cfg;
	char     *why = NULL;

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	cfg_set(&cfg, "auth.chain=jwt");
	assert_int_equal(brk_auth_validate(&cfg, &why), HW_ECONFIG);
	assert_non_null(strstr(why, "auth.jwt.key"));
	free(why);
	cfg_set(&cfg, "auth.jwt.alg=RS256");
	cfg_set(&cfg, "auth.jwt.key=not-a-pem");
	assert_int_equal(brk_auth_validate(&cfg, &why), HW_ECONFIG);
	assert_non_null(strstr(why, "not a PEM public key"));
	free(why);
	cfg_set(&cfg, "auth.chain=anonymous");
	cfg_set(&cfg, "broker.allow_anonymous=false");
	assert_int_equal(brk_auth_validate(&cfg, &why), HW_ECONFIG);
	assert_non_null(strstr(why, "auth.chain: lists anonymous but broker.allow_anonymous is false"));
	free(why);
	cfg_set(&cfg, "broker.allow_anonymous=true");
	cfg_set(&cfg, "auth.chain=anonymous,kerberos");
	assert_int_equal(brk_auth_validate(&cfg, &why), HW_ECONFIG);
	assert_non_null(strstr(why, "auth.chain: unknown method \"kerberos\""));
	free(why);
	hw_config_fini(&cfg);
}

// ---------------------------------------------------------------------------
// Password file, anonymous, empty chain

static void test_password_file(void **state)
{
	char      path[] = "/tmp/hawser-passwd-XXXXXX";
	int       fd = mkstemp(path);
	FILE     *fp = fdopen(fd, "w");
	char     *e1 = NULL, *e2 = NULL;
	hw_config cfg;
	brk_auth *a = NULL;
	char     *why = NULL;
	char      kv[512];

	(void)state;
	assert_int_equal(brk_auth_passwd_entry("alice", "wonderland", 0, &e1), HW_OK);
	assert_int_equal(brk_auth_passwd_entry("bob", "builder", 1000, &e2), HW_OK);
	assert_int_equal(strncmp(e1, "alice:$pbkdf2-sha256$10000$", 27), 0);
	// The third line was made by tests/auth/mkpasswd.py (the documented
	// tool), for the password "from python".
	fprintf(fp, "# users\n\n%s\n%s\n%s\n", e1, e2,
	    "pyuser:$pbkdf2-sha256$10000$yoqjgI6z6uZKz3VQJ6xXpw==$3nFnPCuK/3dG5RvGSjSPQppz31ZPeHZrifp7GI98EeY=");
	fclose(fp);
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	cfg_set(&cfg, "auth.chain=file,anonymous");
	snprintf(kv, sizeof(kv), "auth.file.path=%s", path);
	cfg_set(&cfg, kv);
	if (brk_auth_alloc(&a, &cfg, NULL, &why) != HW_OK)
		fail_msg("alloc: %s", why);
	brk_identity_unref(expect_allowed(a, "alice", "wonderland", "file", "alice"));
	brk_identity_unref(expect_allowed(a, "bob", "builder", "file", "bob"));
	brk_identity_unref(expect_allowed(a, "pyuser", "from python", "file", "pyuser"));
	expect_denied(a, "alice", "Wonderland", 0x04, 0x86);
	expect_denied(a, "alice", NULL, 0x04, 0x86);
	expect_denied(a, "bob", "wonderland", 0x04, 0x86);
	// Unknown user: the file does not decide, anonymous does not apply
	// (credentials were given), so the chain ends with bad credentials.
	expect_denied(a, "carol", "x", 0x04, 0x86);
	brk_identity_unref(expect_allowed(a, NULL, NULL, "anonymous", NULL));
	brk_auth_free(a);

	// A bad line stops the load and names the file and line.
	fp = fopen(path, "a");
	fputs("mallory:$pbkdf2-sha256$10$AAAAAAAAAAA=$AAAA\n", fp);
	fclose(fp);
	assert_int_equal(brk_auth_alloc(&a, &cfg, NULL, &why), HW_ECONFIG);
	assert_non_null(strstr(why, ":6: iterations"));
	free(why);
	unlink(path);
	free(e1);
	free(e2);
	hw_config_fini(&cfg);
}

static void test_listener_chains(void **state)
{
	hw_config            cfg;
	brk_auth            *a = NULL;
	char                *why = NULL;
	brk_auth_connect_req req = { 0 };
	outcome              tcp = { 0 }, ws = { 0 };

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	cfg_set(&cfg, "auth.chain=jwt");
	cfg_set(&cfg, "auth.jwt.key=" SECRET);
	cfg_set(&cfg, "auth.listener_chains={\"ws\":[\"anonymous\"]}");
	if (brk_auth_alloc(&a, &cfg, NULL, &why) != HW_OK)
		fail_msg("alloc: %s", why);
	req.version = 4;
	req.client_id = "c1";
	req.listener = "mqtt";
	assert_int_equal(brk_auth_connect(a, &req, on_connect, &tcp), HW_OK);
	req.listener = "ws";
	assert_int_equal(brk_auth_connect(a, &req, on_connect, &ws), HW_OK);
	assert_false(tcp.allowed);
	assert_int_equal(tcp.code, 0x05);
	assert_true(ws.allowed);
	assert_string_equal(ws.method, "anonymous");
	brk_identity_unref(ws.id);
	brk_auth_free(a);

	cfg_set(&cfg, "auth.listener_chains={\"ws\":[\"anonymous\"],\"wss\":[\"ldap\"]}");
	assert_int_equal(brk_auth_validate(&cfg, &why), HW_ECONFIG);
	assert_non_null(strstr(why, "auth.listener_chains.wss: unknown method \"ldap\""));
	free(why);
	hw_config_fini(&cfg);
}

static void test_empty_chain(void **state)
{
	hw_config cfg;
	brk_auth *a = NULL;
	char     *why = NULL;

	(void)state;
	assert_int_equal(hw_config_init(&cfg), HW_OK);
	assert_int_equal(brk_auth_alloc(&a, &cfg, NULL, &why), HW_OK);
	brk_identity_unref(expect_allowed(a, "anyone", "anything", "open", "anyone"));
	brk_identity_unref(expect_allowed(a, NULL, NULL, "open", NULL));
	cfg_set(&cfg, "broker.allow_anonymous=false");
	assert_int_equal(brk_auth_reload(a, &cfg, &why), HW_OK);
	// Without a chain, a user name is taken as is (the broker's rule
	// before authentication existed); no user name needs allow_anonymous.
	brk_identity_unref(expect_allowed(a, "anyone", NULL, "open", "anyone"));
	expect_denied(a, NULL, NULL, 0x05, 0x87);
	brk_auth_free(a);
	hw_config_fini(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwt_hs256_valid_claims_and_rules),
		cmocka_unit_test(test_jwt_time_checks),
		cmocka_unit_test(test_jwt_wrong_key_and_algorithm),
		cmocka_unit_test(test_jwt_es256),
		cmocka_unit_test(test_jwt_malformed_and_missing),
		cmocka_unit_test(test_jwt_config_errors),
		cmocka_unit_test(test_password_file),
		cmocka_unit_test(test_listener_chains),
		cmocka_unit_test(test_empty_chain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
