// JWT verification with libjwt (auth_impl.h).
//
// libjwt 1.10 accepts a token whose header says "alg":"none" without
// checking any signature, and picks the algorithm from the token. So the
// header is decoded and checked here first: its alg must be exactly the
// configured one; libjwt then verifies the signature with the configured
// key, and its idea of the algorithm is checked again. exp is required;
// exp and nbf are checked here with the configured leeway.

#include <errno.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_impl.h"

static bool jwt_b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '_';
}

// jwt_b64url_decode decodes s[0..n) (base64url, no padding) into a heap
// buffer with a NUL after the data.
static hw_err jwt_b64url_decode(const char *s, size_t n, char **out, size_t *olen)
{
	size_t   pn = (n + 3) / 4 * 4;
	char    *tmp = malloc(pn + 1);
	uint8_t *dst = malloc(pn / 4 * 3 + 1);
	int      r;

	if (tmp == NULL || dst == NULL || n % 4 == 1) {
		free(tmp);
		free(dst);
		return tmp == NULL || dst == NULL ? HW_ENOMEM : HW_EMALFORMED;
	}
	for (size_t i = 0; i < n; i++)
		tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	for (size_t i = n; i < pn; i++)
		tmp[i] = '=';
	tmp[pn] = '\0';
	r = EVP_DecodeBlock(dst, (const unsigned char *)tmp, (int)pn);
	free(tmp);
	if (r < 0) {
		free(dst);
		return HW_EMALFORMED;
	}
	*olen = (size_t)r - (pn - n); // EVP_DecodeBlock counts padding as zeros
	dst[*olen] = '\0';
	*out = (char *)dst;
	return HW_OK;
}

static char *jwt_read_file(const char *path, size_t *len)
{
	FILE  *fp = fopen(path, "rb");
	hw_buf b = { 0 };
	char   chunk[4096];
	size_t n;

	if (fp == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if (hw_buf_append(&b, chunk, n) != HW_OK || b.len > (1u << 20)) {
			hw_buf_fini(&b);
			fclose(fp);
			return NULL;
		}
	}
	fclose(fp);
	if (hw_buf_append_u8(&b, 0) != HW_OK) {
		hw_buf_fini(&b);
		return NULL;
	}
	*len = b.len - 1;
	return (char *)b.ptr;
}

static hw_err jwt_fail(char **why, const char *msg, const char *arg)
{
	if (why != NULL) {
		size_t n = strlen(msg) + (arg != NULL ? strlen(arg) : 0) + 8;
		if ((*why = malloc(n)) != NULL)
			snprintf(*why, n, msg, arg != NULL ? arg : "");
	}
	return HW_ECONFIG;
}

hw_err brk_jwt_cfg_init(brk_jwt_cfg *c, const hw_config *cfg, char **why)
{
	size_t n = 0;

	memset(c, 0, sizeof(*c));
	c->alg = (int)jwt_str_alg(cfg->auth.jwt.alg);
	if (c->alg != JWT_ALG_HS256 && c->alg != JWT_ALG_RS256 && c->alg != JWT_ALG_ES256)
		return jwt_fail(why, "auth.jwt.alg: \"%s\" is not HS256, RS256 or ES256",
		    cfg->auth.jwt.alg);
	if ((c->alg_name = strdup(cfg->auth.jwt.alg)) == NULL)
		goto nomem;
	if (cfg->auth.jwt.key != NULL && cfg->auth.jwt.key[0] != '\0') {
		if ((c->key = (unsigned char *)strdup(cfg->auth.jwt.key)) == NULL)
			goto nomem;
		c->key_len = strlen(cfg->auth.jwt.key);
	} else if (cfg->auth.jwt.key_file != NULL && cfg->auth.jwt.key_file[0] != '\0') {
		if ((c->key = (unsigned char *)jwt_read_file(cfg->auth.jwt.key_file, &c->key_len)) == NULL) {
			brk_jwt_cfg_fini(c);
			return jwt_fail(why, "auth.jwt.key_file: cannot read \"%s\"",
			    cfg->auth.jwt.key_file);
		}
		// A secret written with echo ends with a newline that is not
		// part of it.
		if (c->alg == JWT_ALG_HS256)
			while (c->key_len > 0 && (c->key[c->key_len - 1] == '\n' ||
			                             c->key[c->key_len - 1] == '\r'))
				c->key[--c->key_len] = '\0';
	} else {
		brk_jwt_cfg_fini(c);
		return jwt_fail(why, "auth.jwt.key: jwt is in auth.chain but neither auth.jwt.key nor auth.jwt.key_file is set%s", NULL);
	}
	if (c->key_len == 0 || (c->alg != JWT_ALG_HS256 && strstr((char *)c->key, "-----BEGIN") == NULL)) {
		brk_jwt_cfg_fini(c);
		return jwt_fail(why, "auth.jwt.key: empty, or not a PEM public key for %s",
		    cfg->auth.jwt.alg);
	}
	c->leeway_s = cfg->auth.jwt.leeway_s;
	c->in_username = strcmp(cfg->auth.jwt.token_field, "username") == 0;
	if ((c->user_claim = strdup(cfg->auth.jwt.user_claim)) == NULL)
		goto nomem;
	if (cfg->auth.jwt.acl_claim != NULL && cfg->auth.jwt.acl_claim[0] != '\0' &&
	    (c->acl_claim = strdup(cfg->auth.jwt.acl_claim)) == NULL)
		goto nomem;
	while (cfg->auth.jwt.attr_claims != NULL && cfg->auth.jwt.attr_claims[n] != NULL)
		n++;
	if ((c->attr_claims = calloc(n + 1, sizeof(char *))) == NULL)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		if ((c->attr_claims[i] = strdup(cfg->auth.jwt.attr_claims[i])) == NULL)
			goto nomem;
	}
	return HW_OK;
nomem:
	brk_jwt_cfg_fini(c);
	return HW_ENOMEM;
}

void brk_jwt_cfg_fini(brk_jwt_cfg *c)
{
	if (c->key != NULL)
		OPENSSL_cleanse(c->key, c->key_len);
	free(c->key);
	free(c->alg_name);
	free(c->user_claim);
	free(c->acl_claim);
	for (size_t i = 0; c->attr_claims != NULL && c->attr_claims[i] != NULL; i++)
		free(c->attr_claims[i]);
	free(c->attr_claims);
	memset(c, 0, sizeof(*c));
}

void brk_jwt_out_fini(brk_jwt_out *o)
{
	free(o->user);
	for (size_t i = 0; o->attrs != NULL && o->attrs[i] != NULL; i++)
		free(o->attrs[i]);
	free(o->attrs);
	free(o->acl_json);
	memset(o, 0, sizeof(*o));
}

// jwt_claim_text returns a heap copy of a string or integer claim, or NULL.
static char *jwt_claim_text(jwt_t *t, const char *name)
{
	const char *s = jwt_get_grant(t, name);
	long        v;
	char        buf[32];

	if (s != NULL)
		return strdup(s);
	errno = 0;
	v = jwt_get_grant_int(t, name);
	if (errno != 0)
		return NULL;
	snprintf(buf, sizeof(buf), "%ld", v);
	return strdup(buf);
}

hw_err brk_jwt_verify(const brk_jwt_cfg *c, const char *token, size_t len, int64_t now_s,
    brk_jwt_out *out)
{
	const char *dot1, *dot2;
	char       *head = NULL, *tok = NULL;
	size_t      hl;
	brk_json   *hj = NULL;
	jwt_t      *t = NULL;
	hw_err      rv = HW_EDENIED;
	long        exp, nbf;
	size_t      na = 0;

	memset(out, 0, sizeof(*out));
	// Shape: three base64url segments; anything else is not a JWT.
	for (size_t i = 0; i < len; i++) {
		if (!jwt_b64url_char(token[i]) && token[i] != '.')
			return HW_ENOTFOUND;
	}
	dot1 = memchr(token, '.', len);
	dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot1 == NULL || dot2 == NULL || dot1 == token ||
	    memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
		return HW_ENOTFOUND;
	out->reason = "malformed token";
	if (jwt_b64url_decode(token, (size_t)(dot1 - token), &head, &hl) != HW_OK ||
	    brk_json_parse(head, hl, &hj) != HW_OK || hj->type != BRK_JSON_OBJECT)
		goto out;
	if (brk_json_str(brk_json_get(hj, "alg")) == NULL ||
	    strcmp(brk_json_str(brk_json_get(hj, "alg")), c->alg_name) != 0) {
		out->reason = "wrong algorithm";
		goto out;
	}
	if (dot2 + 1 == token + len) {
		out->reason = "unsigned token";
		goto out;
	}
	if ((tok = strndup(token, len)) == NULL) {
		rv = HW_ENOMEM;
		goto out;
	}
	out->reason = "bad signature or malformed token";
	if (jwt_decode(&t, tok, c->key, (int)c->key_len) != 0 || t == NULL)
		goto out;
	if ((int)jwt_get_alg(t) != c->alg) {
		out->reason = "wrong algorithm";
		goto out;
	}
	errno = 0;
	exp = jwt_get_grant_int(t, "exp");
	if (errno != 0) {
		out->reason = "no exp claim";
		goto out;
	}
	if (now_s > (int64_t)exp + (int64_t)c->leeway_s) {
		out->reason = "expired";
		goto out;
	}
	errno = 0;
	nbf = jwt_get_grant_int(t, "nbf");
	if (errno == 0 && now_s + (int64_t)c->leeway_s < (int64_t)nbf) {
		out->reason = "not yet valid";
		goto out;
	}
	if (jwt_get_grant(t, c->user_claim) == NULL || jwt_get_grant(t, c->user_claim)[0] == '\0') {
		out->reason = "no user claim";
		goto out;
	}
	if ((out->user = strdup(jwt_get_grant(t, c->user_claim))) == NULL)
		goto nomem;
	while (c->attr_claims != NULL && c->attr_claims[na] != NULL)
		na++;
	if ((out->attrs = calloc(2 * na + 1, sizeof(char *))) == NULL)
		goto nomem;
	for (size_t i = 0, k = 0; i < na; i++) {
		char *v = jwt_claim_text(t, c->attr_claims[i]);
		if (v == NULL)
			continue; // absent or not a scalar: the attribute is unset
		if ((out->attrs[k] = strdup(c->attr_claims[i])) == NULL) {
			free(v);
			goto nomem;
		}
		out->attrs[k + 1] = v;
		k += 2;
	}
	if (c->acl_claim != NULL) {
		char *j = jwt_get_grants_json(t, c->acl_claim);
		// A missing claim is "no per-client rules".
		if (j != NULL && (out->acl_json = strdup(j)) == NULL) {
			free(j);
			goto nomem;
		}
		free(j);
	}
	out->reason = NULL;
	rv = HW_OK;
	goto out;
nomem:
	rv = HW_ENOMEM;
out:
	if (rv != HW_OK) {
		const char *reason = out->reason;
		brk_jwt_out_fini(out);
		out->reason = rv == HW_ENOMEM ? "out of memory" : reason;
	}
	if (t != NULL)
		jwt_free(t);
	free(tok);
	free(head);
	brk_json_free(hj);
	return rv;
}
