/*
 * Message validation for published data: size, nesting depth and the seed's
 * "XSS prevention" policy.
 *
 * This is a heuristic, and a deliberately narrow one. It refuses data whose
 * strings look like an attempt to inject script into a page that renders
 * them as HTML without escaping; it does not make such rendering safe. A
 * client that puts received text into innerHTML, an href or a template
 * without escaping is vulnerable to payloads this filter does not know
 * (there are many ways to write HTML), and a client that escapes what it
 * renders does not need it. It never rewrites data: a message either passes
 * unchanged or is refused with a reason.
 *
 * What is checked: every JSON string, object keys included, after decoding
 * its escapes (\n, \t, \uXXXX with surrogate pairs), ASCII case-insensitively
 * (the way HTML tag and attribute names and URL schemes are matched). Each
 * string is checked on its own; a pattern spanning two strings is not one.
 * - Tags: "<script", "</script", "<iframe", "<object", "<embed", as written
 *   (HTML allows nothing between '<' and the tag name, so "< script" is text,
 *   and a NUL inside a name breaks it, so "<scr\u0000ipt" passes).
 * - URL schemes: "javascript:", "vbscript:", "data:text/html" (with optional
 *   whitespace after "data:"), anywhere in a string, matched the way a
 *   browser reads an attribute value holding a URL: HTML character
 *   references are decoded first (numeric ones, "&#106;" "&#x6A;" with or
 *   without ';', and the named "&colon;", "&tab;", "&newline;"), then ASCII
 *   tab, LF and CR are dropped (the URL standard strips them), so
 *   "java\tscript:" and "jav&#x61;script&colon;" are caught. Escaped text
 *   such as "&lt;script&gt;" is not decoded for the tag patterns: it renders
 *   as text.
 * - Inline handlers and dangerous attributes: a name followed by optional
 *   HTML whitespace and '=', where the name starts the string or follows
 *   HTML whitespace, '/', '"' or '\'' (the places the HTML tokenizer starts
 *   an attribute name), and is a DOM event handler attribute from a fixed
 *   list (onerror, onload, onclick, onmouseover, onfocus, ontoggle, onbegin,
 *   ... about 150 names), or "srcdoc", or "http-equiv" (meta refresh). So
 *   "<img src=x onerror=alert(1)>", "<svg/onload=...>" and "ONERROR =x" are
 *   refused, while "the onion=good", "ongoing=", "money=" and "xonerror="
 *   pass. A handler name missing from the list passes.
 * Known false positives: ordinary prose containing one of the patterns, e.g.
 * a chat line "I like javascript: it is fun" or a code snippet with
 * "<script"; applications that must carry such text turn the policy off
 * (validation.xss = false) and escape on output.
 */
#ifndef RT_CORE_VALIDATE_H
#define RT_CORE_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

typedef struct {
  int xss;            /* 1: apply the XSS policy above to every string and key; 0: skip it */
  uint32_t max_depth; /* deepest container nesting allowed ([1] is 1, a scalar 0); 0 = no limit */
  size_t max_size;    /* largest data in bytes; 0 = no limit */
} rt_validate_config_t;

/*
 * Validates one published value, json[0..len) (borrowed, not NUL-terminated),
 * in a single pass that allocates nothing. The text must already be valid
 * JSON (the protocol parser or rt_json_validate checked it); other input
 * never reads out of bounds but gets an unspecified verdict (RT_EJSON when a
 * string is cut short or an escape is malformed).
 *
 * Returns 0, or an RT_E* with the reason in *err (may be NULL):
 * - RT_ETOOLARGE when len > max_size ("Message too large: data is N bytes
 *   (limit M)"), checked before anything is read;
 * - RT_EDEPTH at the first container nested past max_depth ("JSON nesting
 *   too deep at byte N (limit L)");
 * - RT_EMESSAGE for the first pattern found, e.g. "Message refused: <script>
 *   tag in a string (byte 17)" or "Message refused: inline event handler
 *   (onerror=) in a key (byte 3)". The byte is the 0-based offset in json
 *   of the first source byte of the match (the backslash of an escape, the
 *   '&' of a character reference).
 * The first problem in byte order wins.
 */
int rt_validate_data(const char *json, size_t len, const rt_validate_config_t *cfg,
                     rt_errbuf_t *err);

#endif
