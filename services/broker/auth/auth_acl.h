#ifndef BRK_AUTH_ACL_H
#define BRK_AUTH_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "auth_json.h"

// ACL rules: compile, template expansion and filter-vs-pattern matching.
// Internal to the auth module (auth.h is the contract); pure functions, any
// thread. A compiled rule list is immutable and shared read-only.
//
// Matching model. A rule's topic pattern is a sequence of levels, each a
// literal, '+', '#' (last only) or a template (literal text with %u, %c or
// %{attr}). For a SUBSCRIBE filter F and a pattern P:
//  - contains(F, P): every topic F can match is matched by P. Computed
//    level by level (no string tricks): a '+' in F is covered only by '+'
//    or '#' in P, a '#' in F only by '#' in P.
//  - overlaps(F, P): some topic is matched by both.
// Rules are walked in order; the first rule that contains F decides (allow,
// deny or delegate). A deny or delegate rule that merely overlaps F denies
// (conservative: part of F would be denied or is not covered by the
// delegation). A PUBLISH topic is a filter without wildcards, so contains
// and overlaps both reduce to ordinary matching.
// Topics whose first level starts with '$' are matched only by rules whose
// first level is a plain literal: never by '+', '#' or a template.
// A template variable that is missing, empty, or contains '/', '+' or '#'
// makes the rule not match at all for that client.

enum {
	BRK_ACL_PERM_ALLOW = 0,
	BRK_ACL_PERM_DENY = 1,
	BRK_ACL_PERM_DELEGATE = 2,
};

enum {
	BRK_ACL_LV_LIT = 0,
	BRK_ACL_LV_PLUS,
	BRK_ACL_LV_HASH,
	BRK_ACL_LV_TMPL,
};

typedef struct brk_acl_level {
	uint8_t     kind;
	const char *text;   // into rule->topic; LIT and TMPL
	size_t      len;
} brk_acl_level;

typedef struct brk_acl_rule {
	uint8_t        perm;       // BRK_ACL_PERM_*
	uint8_t        actions;    // bit mask of brk_acl_action (auth.h)
	uint8_t        max_qos;    // 0..2
	bool           retain;     // publish with RETAIN allowed
	bool           tmpl;       // some level is a template
	char          *topic;      // the pattern as written
	char          *delegate;   // callback name (DELEGATE)
	brk_acl_level *lv;
	size_t         nlv;
} brk_acl_rule;

typedef struct brk_acl_rules {
	brk_acl_rule *v;
	size_t        n;
} brk_acl_rules;

// Values the templates expand to for one client.
typedef struct brk_acl_vars {
	const char        *user;       // NULL = none
	const char        *client_id;
	const char *const *attr_names; // n_attrs entries
	const char *const *attr_values;
	size_t             n_attrs;
} brk_acl_vars;

// brk_acl_compile parses a JSON array of rule objects into *out (caller
// frees with brk_acl_rules_fini). `has_callback(name, arg)` tells whether a
// delegate name exists (NULL: any name accepted). On error *why (heap,
// caller frees) names the rule by index and content:
//   rule 3 {"topic":"a/#/b"}: '#' must be the last level
hw_err brk_acl_compile(const brk_json *arr, bool (*has_callback)(const char *, void *),
    void *arg, brk_acl_rules *out, char **why);

// brk_acl_rules_fini frees what brk_acl_compile built.
void brk_acl_rules_fini(brk_acl_rules *r);

// brk_acl_usable reports whether every template variable of r expands to a
// valid level for vars (present, non-empty, no '/', '+', '#').
bool brk_acl_usable(const brk_acl_rule *r, const brk_acl_vars *vars);

// brk_acl_contains and brk_acl_overlaps implement the model above for a
// valid filter (or topic name) f and a usable rule r.
bool brk_acl_contains(hw_bytes f, const brk_acl_rule *r, const brk_acl_vars *vars);
bool brk_acl_overlaps(hw_bytes f, const brk_acl_rule *r, const brk_acl_vars *vars);

#endif
