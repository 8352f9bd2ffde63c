/*
 * Wire protocol v1: a strict RFC 8259 scanner, the command parser built on
 * it, and the encoders for ack/error/message frames.
 *
 * The scanner validates in one pass without allocating and without building
 * a tree: it only moves a position forward, so a publish's `data` is the
 * byte range the scan went over. Nesting is tracked in a bit stack on the C
 * stack (one bit per level: object or array), which bounds the depth at
 * DEPTH_CAP whatever max_depth asks for; the scan itself is iterative.
 *
 * Error positions are 0-based byte offsets into the message, pointing at the
 * first byte that cannot continue a valid text (the end of the input when it
 * stopped early), like JavaScript's JSON.parse "at position N".
 */
#include "proto.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "ws_codec.h"

/* Hard ceiling on nesting: 1024 levels are 128 bytes of bit stack. */
#define DEPTH_CAP 1024u
/* Longest type name shown in an unknown_type message, in decoded bytes. */
#define TYPE_SHOWN_MAX 32
/* Length of a string literal without its NUL. */
#define LIT_LEN(s) (sizeof(s) - 1)

struct scanner {
  const char *p;      /* the text */
  size_t len;         /* its length */
  size_t pos;         /* next byte to read */
  uint32_t max_depth; /* min(caller's limit, DEPTH_CAP) */
  size_t too_deep_at; /* position of the first container past max_depth, or SIZE_MAX */
  rt_errbuf_t *err;   /* where the message goes, may be NULL */
};

/* Where a string decodes to; past cap only the prefix that fits is kept and overflow is set. */
struct decoded {
  char *buf;    /* output bytes, not NUL-terminated */
  size_t cap;   /* capacity of buf */
  size_t len;   /* bytes written */
  int overflow; /* the string decoded to more than cap bytes */
};

static void init_scanner(struct scanner *s, const char *p, size_t len, uint32_t max_depth,
                         rt_errbuf_t *err) {
  s->p = p;
  s->len = len;
  s->pos = 0;
  s->max_depth = max_depth < DEPTH_CAP ? max_depth : DEPTH_CAP;
  s->too_deep_at = SIZE_MAX;
  s->err = err;
}

/*
 * Nesting past max_depth is remembered and reported after the scan (so the
 * rest of the command, its id included, is still read for the reply); only
 * nesting past DEPTH_CAP, the size of the bit stack, stops the scan at once.
 */
static int depth_error(const struct scanner *s, size_t at) {
  return rt_errbuf_set(s->err, RT_EDEPTH, "JSON nesting too deep at byte %zu (limit %u)", at,
                       s->max_depth);
}

static int finish_depth(const struct scanner *s, int rc) {
  return rc == 0 && s->too_deep_at != SIZE_MAX ? depth_error(s, s->too_deep_at) : rc;
}

/* Every syntax error goes through here, so the message always carries the position. */
static int fail(struct scanner *s, const char *what) {
  if (s->pos >= s->len) what = "unexpected end of input";
  return rt_errbuf_set(s->err, RT_EJSON, "Invalid JSON at byte %zu: %s", s->pos, what);
}

static int peek(const struct scanner *s) {
  return s->pos < s->len ? (unsigned char)s->p[s->pos] : -1;
}

/* RFC 8259 section 2: insignificant whitespace is space, tab, LF and CR only. */
static void skip_ws(struct scanner *s) {
  while (s->pos < s->len) {
    char c = s->p[s->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    s->pos++;
  }
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static void skip_digits(struct scanner *s) {
  while (is_digit(peek(s))) s->pos++;
}

/* utf8_seq_len: p[0..n) is a correct start of a sequence that the input cuts short. */
#define UTF8_SHORT ((size_t)-1)

/*
 * Length of the well-formed UTF-8 sequence starting at p[0] >= 0x80 (RFC
 * 3629 table 3-7: no overlongs, no surrogates, nothing past U+10FFFF), 0
 * when malformed, or UTF8_SHORT when the input ends inside it, so a cut-off
 * text reports its end like any other truncation.
 */
static size_t utf8_seq_len(const unsigned char *p, size_t n) {
  unsigned char c = p[0], lo = 0x80, hi = 0xBF;
  size_t len;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i < len; i++, lo = 0x80, hi = 0xBF) {
    if (i == n) return UTF8_SHORT;
    if (p[i] < lo || p[i] > hi) return 0;
  }
  return len;
}

static size_t encode_utf8(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static void put(struct decoded *d, const char *p, size_t n) {
  if (d == NULL || d->overflow) return;
  if (n > d->cap - d->len) {
    n = d->cap - d->len;
    d->overflow = 1;
  }
  memcpy(d->buf + d->len, p, n);
  d->len += n;
}

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_hex4(struct scanner *s, uint32_t *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex_value(peek(s));
    if (h < 0) return fail(s, "invalid \\u escape");
    *v = (*v << 4) | (uint32_t)h;
    s->pos++;
  }
  return 0;
}

/*
 * \uXXXX, with s->pos on the 'u'. A high surrogate must be followed at once
 * by an escaped low surrogate and a low one must not stand alone (RFC 8259
 * section 7): an unpaired one cannot become UTF-8, and the receivers' parsers
 * would disagree about it. The error points at the offending escape.
 */
static int scan_unicode(struct scanner *s, struct decoded *d) {
  size_t at = s->pos - 1;
  uint32_t cp, lo;
  int rc;
  s->pos++;
  if ((rc = read_hex4(s, &cp)) != 0) return rc;
  if (cp >= 0xDC00 && cp <= 0xDFFF) {
    s->pos = at;
    return fail(s, "unpaired surrogate in \\u escape");
  }
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    size_t second = s->pos;
    if (s->pos + 1 >= s->len || s->p[s->pos] != '\\' || s->p[s->pos + 1] != 'u') {
      int cut = s->pos == s->len || (s->pos + 1 == s->len && s->p[s->pos] == '\\');
      s->pos = cut ? s->len : at;
      return fail(s, "unpaired surrogate in \\u escape");
    }
    s->pos += 2;
    if ((rc = read_hex4(s, &lo)) != 0) return rc;
    if (lo < 0xDC00 || lo > 0xDFFF) {
      s->pos = second;
      return fail(s, "unpaired surrogate in \\u escape");
    }
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  }
  char out[4];
  put(d, out, encode_utf8(cp, out));
  return 0;
}

/* One escape sequence, with s->pos on the byte after the backslash. */
static int scan_escape(struct scanner *s, struct decoded *d) {
  char c;
  switch (peek(s)) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u': return scan_unicode(s, d);
    default: return fail(s, "invalid escape in string");
  }
  put(d, &c, 1);
  s->pos++;
  return 0;
}

static int is_plain(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

/*
 * A string, with s->pos on its opening quote; leaves s->pos after the
 * closing one. Raw control characters and malformed UTF-8 are refused (RFC
 * 8259 sections 7 and 8.1). When d is non-NULL the decoded bytes go there.
 */
static int scan_string(struct scanner *s, struct decoded *d) {
  const unsigned char *p = (const unsigned char *)s->p;
  s->pos++;
  for (;;) {
    size_t run = s->pos;
    while (s->pos < s->len && is_plain(p[s->pos])) s->pos++;
    put(d, s->p + run, s->pos - run);
    if (s->pos >= s->len) return fail(s, "unexpected end of input");
    unsigned char c = p[s->pos];
    if (c == '"') {
      s->pos++;
      return 0;
    }
    if (c == '\\') {
      s->pos++;
      int rc = scan_escape(s, d);
      if (rc != 0) return rc;
    } else if (c < 0x20) {
      return fail(s, "control character in string");
    } else {
      size_t n = utf8_seq_len(p + s->pos, s->len - s->pos);
      if (n == UTF8_SHORT) s->pos = s->len;
      if (n == 0 || n == UTF8_SHORT) return fail(s, "invalid UTF-8 in string");
      put(d, s->p + s->pos, n);
      s->pos += n;
    }
  }
}

/* RFC 8259 section 6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int scan_number(struct scanner *s) {
  if (peek(s) == '-') s->pos++;
  int c = peek(s);
  if (c == '0') {
    s->pos++;
    if (is_digit(peek(s))) return fail(s, "leading zero in number");
  } else if (is_digit(c)) {
    skip_digits(s);
  } else {
    return fail(s, "expected a digit");
  }
  if (peek(s) == '.') {
    s->pos++;
    if (!is_digit(peek(s))) return fail(s, "expected a digit after '.'");
    skip_digits(s);
  }
  if (peek(s) == 'e' || peek(s) == 'E') {
    s->pos++;
    if (peek(s) == '+' || peek(s) == '-') s->pos++;
    if (!is_digit(peek(s))) return fail(s, "expected a digit in the exponent");
    skip_digits(s);
  }
  return 0;
}

static int scan_literal(struct scanner *s, const char *word) {
  for (size_t i = 0; word[i] != '\0'; i++, s->pos++)
    if (peek(s) != word[i]) return fail(s, "invalid literal");
  return 0;
}

/* One bit per open container: 1 for an object, 0 for an array. */
static void set_kind(uint64_t *kinds, uint32_t level, int is_object) {
  uint64_t bit = (uint64_t)1 << (level % 64);
  if (is_object)
    kinds[level / 64] |= bit;
  else
    kinds[level / 64] &= ~bit;
}

static int is_object_at(const uint64_t *kinds, uint32_t level) {
  return (int)((kinds[level / 64] >> (level % 64)) & 1);
}

/* An object member's name and colon; when key is non-NULL the name is decoded there. */
static int scan_key(struct scanner *s, struct decoded *key) {
  skip_ws(s);
  if (peek(s) != '"') return fail(s, "expected a string key");
  int rc = scan_string(s, key);
  if (rc != 0) return rc;
  skip_ws(s);
  if (peek(s) != ':') return fail(s, "expected ':'");
  s->pos++;
  return 0;
}

/*
 * Opens the container at s->pos, `outer` levels deep already. Returns 0 when
 * it was empty and is already closed (a complete value), 1 when a member
 * value comes next, or an error: RT_EDEPTH when it would nest too deep.
 */
static int open_container(struct scanner *s, uint64_t *kinds, uint32_t outer, uint32_t *top) {
  int is_object = s->p[s->pos] == '{';
  if (outer + *top + 1 > DEPTH_CAP) return depth_error(s, s->pos);
  if (outer + *top + 1 > s->max_depth && s->too_deep_at == SIZE_MAX) s->too_deep_at = s->pos;
  s->pos++;
  skip_ws(s);
  if (peek(s) == (is_object ? '}' : ']')) {
    s->pos++;
    return 0;
  }
  set_kind(kinds, (*top)++, is_object);
  if (!is_object) return 1;
  int rc = scan_key(s, NULL);
  return rc != 0 ? rc : 1;
}

/* Scans a scalar or opens a container; same returns as open_container. */
static int scan_item(struct scanner *s, uint64_t *kinds, uint32_t outer, uint32_t *top) {
  skip_ws(s);
  switch (peek(s)) {
    case '"': return scan_string(s, NULL);
    case '{':
    case '[': return open_container(s, kinds, outer, top);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default:
      if (peek(s) == '-' || is_digit(peek(s))) return scan_number(s);
      return fail(s, "expected a value");
  }
}

/*
 * After a complete value: closes every container that ends here. Returns 1
 * when a ',' announced another member (its key already scanned), 0 when the
 * outermost container of this scan is closed, or an error.
 */
static int close_items(struct scanner *s, const uint64_t *kinds, uint32_t *top) {
  while (*top > 0) {
    int is_object = is_object_at(kinds, *top - 1);
    skip_ws(s);
    int c = peek(s);
    if (c == ',') {
      s->pos++;
      if (!is_object) return 1;
      int rc = scan_key(s, NULL);
      return rc != 0 ? rc : 1;
    }
    if (c != (is_object ? '}' : ']'))
      return fail(s, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    s->pos++;
    (*top)--;
  }
  return 0;
}

/*
 * One complete value from s->pos (leading whitespace skipped), leaving s->pos
 * right after it. `outer` containers already enclose it, for the depth limit.
 * Iterative: each turn scans one item, then closes what ends after it.
 */
static int scan_value(struct scanner *s, uint32_t outer) {
  uint64_t kinds[DEPTH_CAP / 64];
  uint32_t top = 0;
  for (;;) {
    int rc = scan_item(s, kinds, outer, &top);
    if (rc < 0) return rc;
    if (rc == 1) continue;
    rc = close_items(s, kinds, &top);
    if (rc <= 0) return rc;
  }
}

int rt_json_validate(const char *p, size_t len, uint32_t max_depth, size_t *start, size_t *vlen,
                     rt_errbuf_t *err) {
  struct scanner s;
  init_scanner(&s, p, len, max_depth, err);
  skip_ws(&s);
  size_t begin = s.pos;
  int rc = scan_value(&s, 0);
  if (rc != 0) return rc;
  size_t end = s.pos;
  skip_ws(&s);
  if (s.pos != len) return fail(&s, "unexpected data after the value");
  rc = finish_depth(&s, 0);
  if (rc != 0) return rc;
  if (start != NULL) *start = begin;
  if (vlen != NULL) *vlen = end - begin;
  return 0;
}

/* ------------------------------------------------------------------ commands */

enum { F_TYPE, F_ID, F_CHANNEL, F_DATA, F_TOKEN, F_APIKEY, F_QUERY, F_SQL, F_PARAMS, F_SUB, F_COUNT };
static const char *const field_names[F_COUNT] = {"type",  "id",  "channel", "data",
                                                 "token", "apiKey", "query", "sql",
                                                 "params", "subscription"};

/* Where the value of a known member lies in the message. */
struct field {
  int present;  /* the member appeared */
  size_t start; /* first byte of its value */
  size_t len;   /* bytes of its value, no surrounding whitespace */
};

static int field_index(const struct decoded *key) {
  if (key->overflow) return -1;
  for (int i = 0; i < F_COUNT; i++)
    if (strlen(field_names[i]) == key->len && memcmp(field_names[i], key->buf, key->len) == 0)
      return i;
  return -1;
}

/*
 * An integer id: a JSON number with no fraction or exponent that fits int64
 * (so -0 is 0). The text is grammar-valid already.
 */
static int read_id(const char *p, size_t n, int64_t *out) {
  int neg = p[0] == '-';
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
  for (size_t i = (size_t)neg; i < n; i++) {
    if (!is_digit(p[i])) return -1;
    unsigned d = (unsigned)(p[i] - '0');
    if (v > (limit - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = neg && v > 0 ? -(int64_t)(v - 1) - 1 : (int64_t)v;
  return 0;
}

/*
 * Notes where a known member's value lies. The id is read on the spot so an
 * error reply can echo it even when the scan fails further on.
 */
static int record_member(struct scanner *s, struct field *fields, int idx, size_t key_at,
                         rt_cmd_t *cmd) {
  if (fields[idx].present) {
    s->pos = key_at;
    return rt_errbuf_set(s->err, RT_EJSON, "Invalid JSON at byte %zu: duplicate key \"%s\"", key_at,
                         field_names[idx]);
  }
  skip_ws(s);
  size_t start = s->pos;
  int rc = scan_value(s, 1);
  if (rc != 0) return rc;
  fields[idx] = (struct field){1, start, s->pos - start};
  if (idx == F_ID && read_id(s->p + start, s->pos - start, &cmd->id) == 0) cmd->has_id = 1;
  return 0;
}

/*
 * The top-level object: one member at a time, known members recorded,
 * others validated and skipped. Nothing about the fields is judged here, so
 * every syntax error is found before any field error. A repeated protocol
 * member is refused (which one counts would be a guess); repeats among
 * unknown members are not looked for, since that would take a quadratic
 * scan or an allocation per message for names nobody reads.
 */
static int scan_command(struct scanner *s, struct field *fields, rt_cmd_t *cmd) {
  skip_ws(s);
  if (peek(s) != '{') return fail(s, "expected an object");
  if (s->max_depth < 1) s->too_deep_at = s->pos;
  s->pos++;
  skip_ws(s);
  int c = peek(s);
  while (c != '}') {
    char name[16]; /* longer than every known key, so a longer name is unknown */
    struct decoded key = {name, sizeof(name), 0, 0};
    skip_ws(s);
    size_t key_at = s->pos;
    int rc = scan_key(s, &key);
    if (rc != 0) return rc;
    int idx = field_index(&key);
    rc = idx >= 0 ? record_member(s, fields, idx, key_at, cmd) : scan_value(s, 1);
    if (rc != 0) return rc;
    skip_ws(s);
    c = peek(s);
    if (c != ',' && c != '}') return fail(s, "expected ',' or '}'");
    if (c == ',') s->pos++;
  }
  s->pos++;
  skip_ws(s);
  return s->pos == s->len ? 0 : fail(s, "unexpected data after the object");
}

/* Decodes a string value already validated by the scan. */
static void decode_string(const char *msg, size_t len, const struct field *f, struct decoded *d) {
  struct scanner s;
  init_scanner(&s, msg, len, 0, NULL);
  s.pos = f->start;
  int rc = scan_string(&s, d);
  assert(rc == 0);
  (void)rc;
}

/* Escaped form of byte c < 0x80 in a JSON string (RFC 8259 section 7), or 0 if it passes as is. */
static size_t escape_byte(unsigned char c, char out[6]) {
  static const char hex[] = "0123456789abcdef";
  char letter;
  switch (c) {
    case '"': letter = '"'; break;
    case '\\': letter = '\\'; break;
    case '\b': letter = 'b'; break;
    case '\f': letter = 'f'; break;
    case '\n': letter = 'n'; break;
    case '\r': letter = 'r'; break;
    case '\t': letter = 't'; break;
    default:
      if (c >= 0x20) return 0;
      memcpy(out, "\\u00", 4);
      out[4] = hex[c >> 4];
      out[5] = hex[c & 0xF];
      return 6;
  }
  out[0] = '\\';
  out[1] = letter;
  return 2;
}

/* End of the run from i of bytes that pass through escaping: plain ASCII and well-formed UTF-8. */
static size_t plain_run(const unsigned char *u, size_t n, size_t i) {
  while (i < n) {
    if (u[i] >= 0x80) {
      size_t k = utf8_seq_len(u + i, n - i);
      if (k == 0 || k == UTF8_SHORT) break;
      i += k;
    } else if (u[i] >= 0x20 && u[i] != '"' && u[i] != '\\') {
      i++;
    } else {
      break;
    }
  }
  return i;
}

typedef void (*emit_fn)(void *ctx, const char *p, size_t n);

/*
 * Walks s[0..n) as the content of a JSON string: runs of plain bytes and
 * well-formed UTF-8 pass through unchanged, `"`, `\` and control characters
 * are escaped, and each byte of malformed UTF-8 becomes \ufffd, so the output
 * is always valid JSON in valid UTF-8 (a text frame). Returns the output
 * length; emit may be NULL to only measure.
 */
static size_t escape_json(const char *s, size_t n, emit_fn emit, void *ctx) {
  const unsigned char *u = (const unsigned char *)s;
  size_t out = 0, i = 0;
  while (i < n) {
    size_t end = plain_run(u, n, i);
    if (end > i) {
      if (emit != NULL) emit(ctx, s + i, end - i);
      out += end - i;
      i = end;
      continue;
    }
    char esc[6];
    size_t k = 6;
    if (u[i] >= 0x80)
      memcpy(esc, "\\ufffd", 6);
    else
      k = escape_byte(u[i], esc);
    if (emit != NULL) emit(ctx, esc, k);
    out += k;
    i++;
  }
  return out;
}

/* Writes into a buffer the caller sized from escape_json's measure; ctx is a char ** cursor. */
static void emit_fixed(void *ctx, const char *p, size_t n) {
  char **cursor = ctx;
  memcpy(*cursor, p, n);
  *cursor += n;
}

/*
 * The unknown type's name for a human message: at most TYPE_SHOWN_MAX
 * decoded bytes, cut on a code point boundary, escaped, "..." when cut.
 */
static void describe_name(const struct decoded *name, char *out) {
  size_t n = name->len < TYPE_SHOWN_MAX ? name->len : TYPE_SHOWN_MAX;
  while (n > 0 && n < name->len && ((unsigned char)name->buf[n] & 0xC0) == 0x80) n--;
  char *cursor = out;
  escape_json(name->buf, n, emit_fixed, &cursor);
  if (n < name->len || name->overflow) {
    memcpy(cursor, "...", 3);
    cursor += 3;
  }
  *cursor = '\0';
}

static int check_type(const char *msg, size_t len, const struct field *f, rt_cmd_t *cmd,
                      rt_errbuf_t *err) {
  static const struct { const char *name; rt_cmd_type_t type; } types[] = {
      {"subscribe", RT_CMD_SUBSCRIBE}, {"unsubscribe", RT_CMD_UNSUBSCRIBE},
      {"publish", RT_CMD_PUBLISH}, {"auth", RT_CMD_AUTH}, {"presence", RT_CMD_PRESENCE},
      {"presence_leave", RT_CMD_PRESENCE_LEAVE}, {"presence_get", RT_CMD_PRESENCE_GET},
      {"query_subscribe", RT_CMD_QUERY_SUBSCRIBE}, {"query_unsubscribe", RT_CMD_QUERY_UNSUBSCRIBE}};
  if (!f->present) return rt_errbuf_set(err, RT_EMISSING, "Missing field \"type\"");
  if (msg[f->start] != '"') return rt_errbuf_set(err, RT_EFIELD, "Field \"type\" must be a string");
  char buf[2 * TYPE_SHOWN_MAX];
  struct decoded name = {buf, sizeof(buf), 0, 0};
  decode_string(msg, len, f, &name);
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    if (!name.overflow && strlen(types[i].name) == name.len &&
        memcmp(types[i].name, name.buf, name.len) == 0) {
      cmd->type = types[i].type;
      return 0;
    }
  }
  char shown[TYPE_SHOWN_MAX * 6 + 4];
  describe_name(&name, shown);
  return rt_errbuf_set(err, RT_ETYPE, "Unknown message type \"%s\"", shown);
}

static int check_channel(const char *msg, size_t len, const struct field *f, rt_cmd_t *cmd,
                         rt_errbuf_t *err) {
  if (!f->present) return rt_errbuf_set(err, RT_EMISSING, "Missing field \"channel\"");
  if (msg[f->start] != '"')
    return rt_errbuf_set(err, RT_EFIELD, "Field \"channel\" must be a string");
  struct decoded name = {cmd->channel, RT_CHANNEL_MAX, 0, 0};
  decode_string(msg, len, f, &name);
  cmd->channel[name.len] = '\0';
  cmd->channel_len = name.len;
  if (name.overflow || !rt_channel_valid(cmd->channel, name.len))
    return rt_errbuf_set(err, RT_ECHANNEL, "Invalid channel name format");
  return 0;
}

static int check_data(const char *msg, const struct field *f, size_t max_data, rt_cmd_t *cmd,
                      rt_errbuf_t *err) {
  if (!f->present) return rt_errbuf_set(err, RT_EMISSING, "Missing field \"data\"");
  if (f->len > max_data)
    return rt_errbuf_set(err, RT_ETOOLARGE, "Message too large: %zu bytes (limit %zu)", f->len,
                         max_data);
  cmd->data = msg + f->start;
  cmd->data_len = f->len;
  return 0;
}

/* auth: exactly one of "token" and "apiKey", a string. */
static int check_cred(const char *msg, const struct field *fields, rt_cmd_t *cmd,
                      rt_errbuf_t *err) {
  const struct field *t = &fields[F_TOKEN], *k = &fields[F_APIKEY];
  if (t->present == k->present)
    return rt_errbuf_set(err, t->present ? RT_EFIELD : RT_EMISSING,
                         t->present ? "Send either \"token\" or \"apiKey\", not both"
                                    : "Missing field \"token\"");
  const struct field *f = t->present ? t : k;
  if (msg[f->start] != '"')
    return rt_errbuf_set(err, RT_EFIELD, "Field \"%s\" must be a string",
                         t->present ? "token" : "apiKey");
  cmd->cred = msg + f->start;
  cmd->cred_len = f->len;
  cmd->cred_is_key = k->present;
  return 0;
}

/* A required string member, returned as its literal (quotes included). */
static int check_literal(const char *msg, const struct field *f, const char *name,
                         const char **lit, size_t *len, rt_errbuf_t *err) {
  if (!f->present) return rt_errbuf_set(err, RT_EMISSING, "Missing field \"%s\"", name);
  if (msg[f->start] != '"')
    return rt_errbuf_set(err, RT_EFIELD, "Field \"%s\" must be a string", name);
  *lit = msg + f->start;
  *len = f->len;
  return 0;
}

/* query_subscribe: exactly one of "query" (a name) and "sql"; "params" an array or object. */
static int check_query(const char *msg, const struct field *fields, rt_cmd_t *cmd,
                       rt_errbuf_t *err) {
  const struct field *q = &fields[F_QUERY], *sql = &fields[F_SQL], *p = &fields[F_PARAMS];
  if (q->present && sql->present)
    return rt_errbuf_set(err, RT_EFIELD, "Send either \"query\" or \"sql\", not both");
  cmd->cred_is_key = sql->present; /* 1: raw SQL */
  int rc = check_literal(msg, sql->present ? sql : q, sql->present ? "sql" : "query", &cmd->cred,
                         &cmd->cred_len, err);
  if (rc != 0) return rc;
  if (p->present && msg[p->start] != '[' && msg[p->start] != '{')
    return rt_errbuf_set(err, RT_EFIELD, "Field \"params\" must be an array or an object");
  cmd->data = p->present ? msg + p->start : NULL;
  cmd->data_len = p->present ? p->len : 0;
  return 0;
}

long rt_proto_decode_string(const char *lit, size_t len, char *out, size_t cap) {
  struct field f = {1, 0, len};
  struct decoded d = {out, cap, 0, 0};
  decode_string(lit, len, &f, &d);
  return d.overflow ? RT_ETOOLARGE : (long)d.len;
}

/*
 * Scan first, judge after: the whole object is validated and its known
 * members located before any field is checked, in the documented order
 * (syntax, type, id, channel, data), so the error reported does not depend
 * on member order and the id is known for the reply.
 */
int rt_proto_parse(const char *msg, size_t len, uint32_t max_depth, size_t max_data, rt_cmd_t *cmd,
                   rt_errbuf_t *err) {
  struct field fields[F_COUNT] = {{0, 0, 0}};
  struct scanner s;
  memset(cmd, 0, sizeof(*cmd));
  init_scanner(&s, msg, len, max_depth, err);
  int rc = finish_depth(&s, scan_command(&s, fields, cmd));
  if (rc == 0) rc = check_type(msg, len, &fields[F_TYPE], cmd, err);
  if (rc == 0 && fields[F_ID].present && !cmd->has_id)
    rc = rt_errbuf_set(err, RT_EFIELD, "Field \"id\" must be an integer");
  if (rc == 0 && cmd->type == RT_CMD_AUTH) return check_cred(msg, fields, cmd, err);
  if (rc == 0 && cmd->type == RT_CMD_QUERY_SUBSCRIBE) return check_query(msg, fields, cmd, err);
  if (rc == 0 && cmd->type == RT_CMD_QUERY_UNSUBSCRIBE)
    return check_literal(msg, &fields[F_SUB], "subscription", &cmd->cred, &cmd->cred_len, err);
  if (rc == 0) rc = check_channel(msg, len, &fields[F_CHANNEL], cmd, err);
  if (rc == 0 && (cmd->type == RT_CMD_PUBLISH ||
                  (cmd->type == RT_CMD_PRESENCE && fields[F_DATA].present)))
    rc = check_data(msg, &fields[F_DATA], max_data, cmd, err);
  return rc;
}

/* ------------------------------------------------------------------ strbuf */

/* Room for `extra` more bytes plus the NUL; grows by doubling so appends are amortised O(1). */
static int reserve(rt_strbuf_t *b, size_t extra) {
  if (extra >= SIZE_MAX - b->len) return RT_ENOMEM;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = rt_realloc(b->p, cap);
  if (p == NULL) return RT_ENOMEM;
  b->p = p;
  b->cap = cap;
  return 0;
}

static void emit_strbuf(void *ctx, const char *p, size_t n) {
  rt_strbuf_t *b = ctx;
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

/* Returns 0 or RT_ENOMEM, in which case the buffer is unchanged. */
int rt_strbuf_append(rt_strbuf_t *b, const char *s, size_t n) {
  if (reserve(b, n) != 0) return RT_ENOMEM;
  if (n > 0) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

/* Measures first, so the one reservation is exact and an OOM leaves the buffer unchanged. */
int rt_strbuf_append_json_string(rt_strbuf_t *b, const char *s, size_t n) {
  size_t body = escape_json(s, n, NULL, NULL);
  if (body > SIZE_MAX - 2 || reserve(b, body + 2) != 0) return RT_ENOMEM;
  emit_strbuf(b, "\"", 1);
  escape_json(s, n, emit_strbuf, b);
  emit_strbuf(b, "\"", 1);
  b->p[b->len] = '\0';
  return 0;
}

void rt_strbuf_destroy(rt_strbuf_t *b) {
  rt_free(b->p);
  b->p = NULL;
  b->len = 0;
  b->cap = 0;
}

/* ------------------------------------------------------------------ encoders */

/* Decimal text of v; out needs 20 bytes (INT64_MIN). */
static size_t format_i64(int64_t v, char *out) {
  char rev[20];
  size_t n = 0, len = 0;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    rev[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) out[len++] = '-';
  while (n > 0) out[len++] = rev[--n];
  return len;
}

#define APPEND_LIT(f, s) rt_frame_append((f), (s), LIT_LEN(s))

/* The optional `,"<key>":<v>` member of a reply: its text and its size. */
struct int_member {
  int present;  /* member is written */
  char num[20]; /* decimal digits */
  size_t len;   /* digits used */
};

static size_t prepare_member(struct int_member *m, int present, int64_t v, size_t key_len) {
  m->present = present;
  m->len = present ? format_i64(v, m->num) : 0;
  return present ? key_len + m->len : 0;
}

static void append_member(rt_frame_t *f, const struct int_member *m, const char *key,
                          size_t key_len) {
  if (!m->present) return;
  rt_frame_append(f, key, key_len);
  rt_frame_append(f, m->num, m->len);
}

static rt_frame_t *seal(rt_frame_t *f) {
  assert(f->len == f->cap);
  rt_frame_seal(f, RT_WS_OP_TEXT);
  return f;
}

static const char ID_KEY[] = ",\"id\":";
static const char DELIVERED_KEY[] = ",\"delivered\":";

rt_frame_t *rt_proto_ack(int has_id, int64_t id, int64_t delivered) {
  static const char head[] = "{\"type\":\"ack\"";
  struct int_member idm, dm;
  size_t size = LIT_LEN(head) + 1;
  size += prepare_member(&idm, has_id, id, LIT_LEN(ID_KEY));
  size += prepare_member(&dm, delivered >= 0, delivered, LIT_LEN(DELIVERED_KEY));
  rt_frame_t *f = rt_frame_new(size);
  if (f == NULL) return NULL;
  APPEND_LIT(f, head);
  append_member(f, &idm, ID_KEY, LIT_LEN(ID_KEY));
  append_member(f, &dm, DELIVERED_KEY, LIT_LEN(DELIVERED_KEY));
  APPEND_LIT(f, "}");
  return seal(f);
}

static void emit_frame(void *ctx, const char *p, size_t n) { rt_frame_append(ctx, p, n); }

/* A NULL message stands for rt_strerror(err); retry_after_ms < 0 leaves that member out. */
static rt_frame_t *error_frame(int has_id, int64_t id, int err, const char *message,
                               int64_t retry_after_ms) {
  static const char head[] = "{\"type\":\"error\"";
  static const char code_key[] = ",\"code\":\"";
  static const char message_key[] = "\",\"message\":\"";
  static const char retry_key[] = ",\"retry_after_ms\":";
  const char *code = rt_err_name(err);
  size_t code_len = strlen(code);
  if (message == NULL) message = rt_strerror(err);
  size_t message_len = strlen(message);
  struct int_member idm, rm;
  size_t size = LIT_LEN(head) + LIT_LEN(code_key) + code_len + LIT_LEN(message_key) + 2;
  size += prepare_member(&idm, has_id, id, LIT_LEN(ID_KEY));
  size += prepare_member(&rm, retry_after_ms >= 0, retry_after_ms, LIT_LEN(retry_key));
  size += escape_json(message, message_len, NULL, NULL);
  rt_frame_t *f = rt_frame_new(size);
  if (f == NULL) return NULL;
  APPEND_LIT(f, head);
  append_member(f, &idm, ID_KEY, LIT_LEN(ID_KEY));
  APPEND_LIT(f, code_key);
  rt_frame_append(f, code, code_len);
  APPEND_LIT(f, message_key);
  escape_json(message, message_len, emit_frame, f);
  APPEND_LIT(f, "\"");
  append_member(f, &rm, retry_key, LIT_LEN(retry_key));
  APPEND_LIT(f, "}");
  return seal(f);
}

rt_frame_t *rt_proto_error(int has_id, int64_t id, int err, const char *message) {
  return error_frame(has_id, id, err, message, -1);
}

rt_frame_t *rt_proto_error_retry(int has_id, int64_t id, int err, const char *message,
                                 uint32_t retry_after_ms) {
  return error_frame(has_id, id, err, message, retry_after_ms);
}

rt_frame_t *rt_strbuf_to_frame(rt_strbuf_t *b, int ok) {
  rt_frame_t *f = ok ? rt_frame_new(b->len) : NULL;
  if (f != NULL) {
    rt_frame_append(f, b->p, b->len);
    seal(f);
  }
  rt_strbuf_destroy(b);
  return f;
}

/* Not on a hot path (once per authentication), so built in a strbuf for clarity. */
rt_frame_t *rt_proto_auth_ack(int has_id, int64_t id, const char *user_id,
                              const char *const *perms, size_t n) {
  rt_strbuf_t b = {0};
  char num[32];
  int ok = rt_strbuf_append(&b, "{\"type\":\"ack\"", 13) == 0;
  if (ok && has_id) {
    int k = snprintf(num, sizeof(num), ",\"id\":%lld", (long long)id);
    ok = rt_strbuf_append(&b, num, (size_t)k) == 0;
  }
  if (ok && user_id != NULL)
    ok = rt_strbuf_append(&b, ",\"userId\":", 10) == 0 &&
         rt_strbuf_append_json_string(&b, user_id, strlen(user_id)) == 0;
  ok = ok && rt_strbuf_append(&b, ",\"permissions\":[", 16) == 0;
  for (size_t i = 0; ok && i < n; i++)
    ok = (i == 0 || rt_strbuf_append(&b, ",", 1) == 0) &&
         rt_strbuf_append_json_string(&b, perms[i], strlen(perms[i])) == 0;
  ok = ok && rt_strbuf_append(&b, "]}", 2) == 0;
  return rt_strbuf_to_frame(&b, ok);
}

rt_frame_t *rt_proto_token_expired(uint32_t grace_ms) {
  char text[64];
  int n = snprintf(text, sizeof(text), "{\"type\":\"token_expired\",\"graceMs\":%u}", grace_ms);
  rt_frame_t *f = rt_frame_new((size_t)n);
  if (f == NULL) return NULL;
  rt_frame_append(f, text, (size_t)n);
  return seal(f);
}

/*
 * The fan-out envelope: sized exactly, data copied once straight into the
 * frame (its own, or the channel's batch frame after the header). A valid
 * channel needs no escaping.
 */
static const char message_head[] = "{\"type\":\"message\",\"channel\":\"";
static const char message_data_key[] = "\",\"data\":";

const char *rt_proto_message_data(const rt_frame_t *f, size_t channel_len) {
  return (const char *)f->bytes + RT_FRAME_HEADROOM + LIT_LEN(message_head) + channel_len +
         LIT_LEN(message_data_key);
}

size_t rt_proto_message_len(size_t channel_len, size_t data_len) {
  size_t fixed = LIT_LEN(message_head) + channel_len + LIT_LEN(message_data_key) + 1;
  if (data_len > SIZE_MAX - RT_FRAME_HEADROOM - sizeof(rt_frame_t) - 10 - fixed) return 0;
  return fixed + data_len;
}

static void append_message(rt_frame_t *f, const char *channel, size_t channel_len,
                           const char *data, size_t data_len) {
  APPEND_LIT(f, message_head);
  rt_frame_append(f, channel, channel_len);
  APPEND_LIT(f, message_data_key);
  rt_frame_append(f, data, data_len);
  APPEND_LIT(f, "}");
}

void rt_proto_message_append(rt_frame_t *f, const char *channel, size_t channel_len,
                             const char *data, size_t data_len) {
  assert(rt_channel_valid(channel, channel_len));
  rt_frame_append_header(f, RT_WS_OP_TEXT, rt_proto_message_len(channel_len, data_len));
  append_message(f, channel, channel_len, data, data_len);
}

rt_frame_t *rt_proto_message(const char *channel, size_t channel_len, const char *data,
                             size_t data_len) {
  assert(rt_channel_valid(channel, channel_len));
  size_t n = rt_proto_message_len(channel_len, data_len);
  if (n == 0) return NULL;
  rt_frame_t *f = rt_frame_new(n);
  if (f == NULL) return NULL;
  append_message(f, channel, channel_len, data, data_len);
  return seal(f);
}
