// Password file with PBKDF2-HMAC-SHA256 hashes (auth_impl.h, docs/auth.md).
//
// Line format (blank lines and lines starting with '#' are skipped):
//   <user>:$pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>
// The user may not contain ':'. The hash is 32 bytes; salt 8..64 bytes;
// iterations 1000..10000000. Entries are kept sorted for binary search.

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_impl.h"

#define PW_HASH 32

typedef struct pw_ent {
	char    *user;
	uint32_t iter;
	uint8_t  salt[64];
	size_t   salt_len;
	uint8_t  hash[PW_HASH];
} pw_ent;

struct brk_pwfile {
	pw_ent *v;
	size_t  n;
};

static int pw_cmp(const void *a, const void *b)
{
	return strcmp(((const pw_ent *)a)->user, ((const pw_ent *)b)->user);
}

// pw_b64 decodes standard base64 s into dst (cap bytes); -1 on error.
static int pw_b64(const char *s, uint8_t *dst, size_t cap)
{
	size_t  n = strlen(s);
	uint8_t tmp[128];
	int     r;

	if (n == 0 || n % 4 != 0 || n / 4 * 3 > sizeof(tmp))
		return -1;
	r = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
	if (r < 0)
		return -1;
	if (s[n - 1] == '=')
		r--;
	if (s[n - 2] == '=')
		r--;
	if ((size_t)r > cap)
		return -1;
	memcpy(dst, tmp, (size_t)r);
	return r;
}

static hw_err pw_fail(char **why, const char *path, unsigned line, const char *msg)
{
	if (why != NULL) {
		size_t n = strlen(path) + strlen(msg) + 64;
		if ((*why = malloc(n)) != NULL)
			snprintf(*why, n, "auth.file.path: %s:%u: %s", path, line, msg);
	}
	return HW_ECONFIG;
}

static hw_err pw_parse_line(char *line, pw_ent *e, const char **bad)
{
	char *colon = strchr(line, ':');
	char *f[4];
	char *save = NULL;
	char *end;
	long  it;
	int   r;

	*bad = "expected user:$pbkdf2-sha256$iterations$salt$hash";
	if (colon == NULL || colon == line)
		return HW_EINVAL;
	*colon = '\0';
	if (strncmp(colon + 1, "$pbkdf2-sha256$", 15) != 0)
		return HW_EINVAL;
	f[0] = strtok_r(colon + 16, "$", &save);
	f[1] = strtok_r(NULL, "$", &save);
	f[2] = strtok_r(NULL, "$", &save);
	f[3] = strtok_r(NULL, "$", &save);
	if (f[0] == NULL || f[1] == NULL || f[2] == NULL || f[3] != NULL)
		return HW_EINVAL;
	errno = 0;
	it = strtol(f[0], &end, 10);
	if (errno != 0 || *end != '\0' || it < 1000 || it > 10000000) {
		*bad = "iterations must be 1000..10000000";
		return HW_EINVAL;
	}
	e->iter = (uint32_t)it;
	if ((r = pw_b64(f[1], e->salt, sizeof(e->salt))) < 8) {
		*bad = "salt must be 8..64 bytes of base64";
		return HW_EINVAL;
	}
	e->salt_len = (size_t)r;
	if (pw_b64(f[2], e->hash, sizeof(e->hash)) != PW_HASH) {
		*bad = "hash must be 32 bytes of base64";
		return HW_EINVAL;
	}
	if ((e->user = strdup(line)) == NULL)
		return HW_ENOMEM;
	return HW_OK;
}

void brk_pwfile_free(brk_pwfile *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i].user);
	OPENSSL_cleanse(f->v, f->n * sizeof(*f->v));
	free(f->v);
	free(f);
}

hw_err brk_pwfile_load(const char *path, brk_pwfile **out, char **why)
{
	FILE       *fp = fopen(path, "r");
	brk_pwfile *f = NULL;
	char        line[1024];
	unsigned    ln = 0;
	size_t      cap = 0;
	hw_err      rv = HW_OK;

	if (fp == NULL)
		return pw_fail(why, path, 0, strerror(errno));
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		rv = HW_ENOMEM;
		goto out;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t      n = strlen(line);
		const char *bad;
		pw_ent      e = { 0 };
		ln++;
		if (n > 0 && line[n - 1] != '\n' && !feof(fp)) {
			rv = pw_fail(why, path, ln, "line too long");
			goto out;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if ((rv = pw_parse_line(line, &e, &bad)) != HW_OK) {
			if (rv != HW_ENOMEM)
				rv = pw_fail(why, path, ln, bad);
			goto out;
		}
		if (f->n == cap) {
			pw_ent *nv = realloc(f->v, (cap = cap ? cap * 2 : 16) * sizeof(*nv));
			if (nv == NULL) {
				free(e.user);
				rv = HW_ENOMEM;
				goto out;
			}
			f->v = nv;
		}
		f->v[f->n++] = e;
	}
	if (f->n > 0)
		qsort(f->v, f->n, sizeof(*f->v), pw_cmp);
	for (size_t i = 1; i < f->n; i++) {
		if (strcmp(f->v[i - 1].user, f->v[i].user) == 0) {
			rv = pw_fail(why, path, 0, "a user appears twice");
			goto out;
		}
	}
out:
	fclose(fp);
	if (rv != HW_OK) {
		brk_pwfile_free(f);
		return rv;
	}
	*out = f;
	return HW_OK;
}

int brk_pwfile_check(const brk_pwfile *f, hw_bytes user, hw_bytes password)
{
	size_t  lo = 0, hi = f->n;
	uint8_t h[PW_HASH];

	while (lo < hi) {
		size_t        mid = (lo + hi) / 2;
		const pw_ent *e = &f->v[mid];
		size_t        ul = strlen(e->user);
		int           c = memcmp(e->user, user.ptr, ul < user.len ? ul : user.len);
		if (c == 0)
			c = ul < user.len ? -1 : ul > user.len ? 1 : 0;
		if (c < 0) {
			lo = mid + 1;
		} else if (c > 0) {
			hi = mid;
		} else {
			if (PKCS5_PBKDF2_HMAC((const char *)password.ptr, (int)password.len, e->salt,
			        (int)e->salt_len, (int)e->iter, EVP_sha256(), PW_HASH, h) != 1)
				return 0;
			return CRYPTO_memcmp(h, e->hash, PW_HASH) == 0 ? 1 : 0;
		}
	}
	return -1;
}

hw_err brk_auth_passwd_entry(const char *user, const char *password, uint32_t iterations,
    char **out)
{
	uint8_t salt[16], h[PW_HASH];
	char    s64[32], h64[64];
	size_t  n;

	if (iterations == 0)
		iterations = BRK_AUTH_PBKDF2_ITERATIONS;
	if (user == NULL || user[0] == '\0' || strchr(user, ':') != NULL || iterations < 1000)
		return HW_EINVAL;
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return HW_EINTERNAL;
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, sizeof(salt),
	        (int)iterations, EVP_sha256(), PW_HASH, h) != 1)
		return HW_EINTERNAL;
	EVP_EncodeBlock((unsigned char *)s64, salt, sizeof(salt));
	EVP_EncodeBlock((unsigned char *)h64, h, PW_HASH);
	n = strlen(user) + strlen(s64) + strlen(h64) + 48;
	if ((*out = malloc(n)) == NULL)
		return HW_ENOMEM;
	snprintf(*out, n, "%s:$pbkdf2-sha256$%u$%s$%s", user, iterations, s64, h64);
	return HW_OK;
}
