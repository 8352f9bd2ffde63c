/*
 * Message validation (src/core/validate.h states the policy and its limits).
 *
 * One forward pass over the JSON text. Outside strings only brackets matter
 * (for the depth). Inside a string each source character is decoded to one
 * unit (a byte with the position of its first source byte) and the unit goes
 * down two pipelines, each matching on the fly, without copying the string:
 * - the HTML pipeline sees units as written, lower-cased: a window of the
 *   last units for the tag patterns, and a small attribute-name recogniser
 *   for the handler rule;
 * - the URL pipeline first decodes HTML character references, then drops
 *   tab/LF/CR and folds runs of spaces into one, and keeps its own window
 *   for the scheme patterns.
 * Windows are rings of WINDOW_CAP units, longer than any pattern, so memory
 * is fixed whatever the string length. Every pattern of a window contains
 * its anchor byte ('<' for tags, ':' for schemes), so patterns are only tried
 * for a few units after an anchor.
 *
 * Most text cannot match at all: every finding needs a trigger byte ('<',
 * ':', '=', or '\\' and '&', through which a unit can differ from its byte).
 * While nothing is pending, the scan jumps over plain bytes to just before
 * the next trigger, so ordinary data costs about as much as finding the end
 * of its strings. A fuzzed comparison against the same code without jumps
 * found no input where the verdict or the message differs.
 */
#include "validate.h"

#include <stdio.h>
#include <string.h>

/* Units kept per window; a power of two larger than the longest pattern. */
#define WINDOW_CAP 32
/* Longest attribute name tracked; longer names are not on any list. */
#define ATTR_NAME_MAX 40
/* Longest character reference name tracked ("newline"), plus slack. */
#define ENTITY_NAME_MAX 10
/* Units a pending character reference holds ('&', '#', 'x' and a name). */
#define ENTITY_HELD_MAX (ENTITY_NAME_MAX + 3)
/* Stands for any non-ASCII character: it matches nothing in a pattern. */
#define NON_ASCII 0x80
#define LIT_LEN(s) (sizeof(s) - 1)

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* One decoded character. */
typedef struct {
  unsigned char c; /* lower-cased ASCII, or NON_ASCII */
  size_t pos;      /* offset in the JSON text of its first source byte */
} unit_t;

typedef struct {
  unit_t ring[WINDOW_CAP]; /* the last units, ring[(n - 1) % WINDOW_CAP] newest */
  size_t n;                /* units pushed since the string began */
  size_t anchor_end;       /* n just after the newest anchor unit was pushed; 0 = none yet */
} window_t;

/*
 * A pattern matched against the end of a window. In `text` a ' ' stands for
 * zero or more spaces (the URL window folds a run of them into one).
 */
typedef struct {
  const char *text; /* lower-case pattern */
  size_t len;       /* strlen(text) */
  const char *what; /* reason shown in the refusal */
} pattern_t;

#define PATTERN(text, what) {text, LIT_LEN(text), what}

/* Each contains '<' (the anchor). */
static const pattern_t tag_patterns[] = {
    PATTERN("<script", "<script> tag"), PATTERN("</script", "</script> tag"),
    PATTERN("<iframe", "<iframe> tag"), PATTERN("<object", "<object> tag"),
    PATTERN("<embed", "<embed> tag"),
};

/* Each contains ':' (the anchor). */
static const pattern_t url_patterns[] = {
    PATTERN("javascript:", "javascript: URL"),
    PATTERN("vbscript:", "vbscript: URL"),
    PATTERN("data: text/html", "data:text/html URL"),
};

/*
 * Event handler content attributes (HTML's GlobalEventHandlers,
 * WindowEventHandlers and DocumentAndElementEventHandlers, SVG animation
 * events, and vendor or legacy names browsers still fire), lower case.
 */
static const char *const handler_names[] = {
    "onabort", "onafterprint", "onafterscriptexecute", "onanimationcancel", "onanimationend",
    "onanimationiteration", "onanimationstart", "onauxclick", "onbeforecopy", "onbeforecut",
    "onbeforeinput", "onbeforematch", "onbeforepaste", "onbeforeprint", "onbeforescriptexecute",
    "onbeforetoggle", "onbeforeunload", "onbegin", "onblur", "oncancel", "oncanplay",
    "oncanplaythrough", "onchange", "onclick", "onclose", "oncommand",
    "oncontentvisibilityautostatechange", "oncontextlost", "oncontextmenu",
    "oncontextrestored", "oncopy", "oncuechange", "oncut", "ondblclick", "ondrag", "ondragend",
    "ondragenter", "ondragexit", "ondragleave", "ondragover", "ondragstart", "ondrop",
    "ondurationchange", "onemptied", "onend", "onended", "onerror", "onfocus", "onfocusin",
    "onfocusout", "onformdata", "onfullscreenchange", "onfullscreenerror",
    "ongotpointercapture", "onhashchange", "oninput", "oninvalid", "onkeydown", "onkeypress",
    "onkeyup", "onlanguagechange", "onload", "onloadeddata", "onloadedmetadata", "onloadend",
    "onloadstart", "onlostpointercapture", "onmessage", "onmessageerror", "onmousedown",
    "onmouseenter", "onmouseleave", "onmousemove", "onmouseout", "onmouseover", "onmouseup",
    "onmousewheel", "onmozfullscreenchange", "onoffline", "ononline", "onpagehide",
    "onpagereveal", "onpageshow", "onpageswap", "onpaste", "onpause", "onplay", "onplaying",
    "onpointercancel", "onpointerdown", "onpointerenter", "onpointerleave",
    "onpointerlockchange", "onpointerlockerror", "onpointermove", "onpointerout",
    "onpointerover", "onpointerrawupdate", "onpointerup", "onpopstate", "onprogress",
    "onratechange", "onreadystatechange", "onrejectionhandled", "onrepeat", "onreset",
    "onresize", "onscroll", "onscrollend", "onscrollsnapchange", "onscrollsnapchanging",
    "onsearch", "onsecuritypolicyviolation", "onseeked", "onseeking", "onselect",
    "onselectionchange", "onselectstart", "onshow", "onslotchange", "onstalled", "onstorage",
    "onsubmit", "onsuspend", "ontimeupdate", "ontoggle", "ontouchcancel", "ontouchend",
    "ontouchmove", "ontouchstart", "ontransitioncancel", "ontransitionend", "ontransitionrun",
    "ontransitionstart", "onunhandledrejection", "onunload", "onvisibilitychange",
    "onvolumechange", "onwaiting", "onwebkitanimationend", "onwebkitanimationiteration",
    "onwebkitanimationstart", "onwebkittransitionend", "onwheel",
};

/* Where the attribute-name recogniser is. */
typedef enum {
  ATTR_NONE,  /* not inside a candidate name */
  ATTR_NAME,  /* reading a name that started at a boundary */
  ATTR_AFTER, /* a name ended with whitespace; '=' may still follow */
} attr_state_t;

typedef struct {
  attr_state_t state;            /* see attr_state_t */
  int boundary;                  /* the previous unit lets a name start (or none yet) */
  char name[ATTR_NAME_MAX + 1];  /* the candidate name, NUL-terminated */
  size_t len;                    /* bytes in name; ATTR_NAME_MAX + 1 means too long */
  size_t pos;                    /* where it started */
} attr_t;

/* Where the character reference decoder is. */
typedef enum {
  ENT_NONE,  /* passing units through */
  ENT_AMP,   /* after '&' */
  ENT_HASH,  /* after "&#" */
  ENT_HEX_X, /* after "&#x" */
  ENT_DEC,   /* in the digits of "&#NNN" */
  ENT_HEX,   /* in the digits of "&#xHHH" */
  ENT_NAMED, /* in the letters of "&name" */
} entity_state_t;

typedef struct {
  entity_state_t state;           /* see entity_state_t */
  uint32_t value;                 /* numeric reference so far, saturated past U+10FFFF */
  unit_t held[ENTITY_HELD_MAX];   /* units since '&', replayed when it is no reference */
  size_t nheld;                   /* units in held */
} entity_t;

/* Per-string matching state and the first finding. */
typedef struct {
  window_t html;   /* units as written */
  window_t url;    /* units after reference decoding, tab/LF/CR removal, space folding */
  attr_t attr;     /* attribute-name recogniser over the html units */
  entity_t ent;    /* character reference decoder feeding the url window */
  size_t after;    /* most pattern units after an anchor (anchor_reach) */
  int found;       /* a pattern matched */
  size_t at;       /* its first source byte */
  char what[80];   /* its reason */
} xss_t;

/* ------------------------------------------------------------- windows */

static const unit_t *unit_back(const window_t *w, size_t back) {
  return &w->ring[(w->n - 1 - back) % WINDOW_CAP];
}

static void window_push(window_t *w, unit_t u, unsigned char anchor) {
  w->ring[w->n % WINDOW_CAP] = u;
  w->n++;
  if (u.c == anchor) w->anchor_end = w->n;
}

/* 1 when the newest units spell p (' ' matching any run of spaces); *at = its first unit's pos. */
static int window_ends_with(const window_t *w, const pattern_t *p, size_t *at) {
  size_t avail = w->n < WINDOW_CAP ? w->n : WINDOW_CAP;
  size_t back = 0;
  for (size_t i = p->len; i-- > 0;) {
    if (p->text[i] == ' ') {
      while (back < avail && unit_back(w, back)->c == ' ') back++;
      continue;
    }
    if (back >= avail || unit_back(w, back)->c != (unsigned char)p->text[i]) return 0;
    back++;
  }
  *at = unit_back(w, back - 1)->pos;
  return 1;
}

static void report(xss_t *x, size_t at, const char *what) {
  if (x->found) return;
  x->found = 1;
  x->at = at;
  snprintf(x->what, sizeof(x->what), "%s", what);
}

/*
 * Checks the patterns that could end with the unit just pushed: all contain
 * the window's anchor, so only while one was pushed at most x->after units ago.
 */
static void match_patterns(xss_t *x, const window_t *w, const pattern_t *pats, size_t n) {
  if (w->anchor_end == 0 || w->n - w->anchor_end > x->after) return;
  unsigned char last = unit_back(w, 0)->c;
  for (size_t i = 0; i < n; i++) {
    size_t at;
    if ((unsigned char)pats[i].text[pats[i].len - 1] != last) continue;
    if (window_ends_with(w, &pats[i], &at)) report(x, at, pats[i].what);
  }
}

/* ------------------------------------------------------------ attributes */

/* HTML's ASCII whitespace: tab, LF, FF, CR, space. */
static int is_html_space(unsigned char c) {
  return c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' ';
}

static int is_name_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == ':' ||
         c == '.';
}

static int is_handler(const char *name) {
  if (name[0] != 'o' || name[1] != 'n') return 0;
  for (size_t i = 0; i < sizeof(handler_names) / sizeof(handler_names[0]); i++)
    if (strcmp(name, handler_names[i]) == 0) return 1;
  return 0;
}

/* A complete name followed by '=': refuse it when it is on one of the lists. */
static void check_attribute(xss_t *x) {
  attr_t *a = &x->attr;
  if (a->len > ATTR_NAME_MAX) return;
  a->name[a->len] = '\0';
  char what[80];
  if (is_handler(a->name)) {
    snprintf(what, sizeof(what), "inline event handler (%s=)", a->name);
    report(x, a->pos, what);
  } else if (strcmp(a->name, "srcdoc") == 0) {
    report(x, a->pos, "srcdoc attribute");
  } else if (strcmp(a->name, "http-equiv") == 0) {
    report(x, a->pos, "http-equiv attribute");
  }
}

static void attr_append(attr_t *a, unsigned char c) {
  if (a->len < ATTR_NAME_MAX)
    a->name[a->len++] = (char)c;
  else
    a->len = ATTR_NAME_MAX + 1;
}

/*
 * The part of HTML's tokenizer that finds attribute names: a name starts
 * only at a boundary (whitespace, '/', a quote, or the start of the string)
 * and runs over name characters; whitespace may separate it from '='.
 */
static void attr_feed(xss_t *x, unit_t u) {
  attr_t *a = &x->attr;
  if (is_name_char(u.c)) {
    if (a->state == ATTR_NAME) {
      attr_append(a, u.c);
    } else if (a->boundary) {
      a->state = ATTR_NAME;
      a->len = 0;
      a->pos = u.pos;
      attr_append(a, u.c);
    } else {
      a->state = ATTR_NONE;
    }
    a->boundary = 0;
    return;
  }
  if (u.c == '=' && a->state != ATTR_NONE) check_attribute(x);
  if (is_html_space(u.c)) {
    if (a->state == ATTR_NAME) a->state = ATTR_AFTER;
    a->boundary = 1;
    return;
  }
  a->state = ATTR_NONE;
  a->boundary = u.c == '/' || u.c == '"' || u.c == '\'';
}

/* ------------------------------------------------------------ URL pipeline */

/* The URL standard strips tab and newlines anywhere; a run of other spaces reads as one. */
static void url_push(xss_t *x, unit_t u) {
  if (u.c == '\t' || u.c == '\n' || u.c == '\r') return;
  if (u.c == '\f') u.c = ' ';
  if (u.c == ' ' && x->url.n > 0 && unit_back(&x->url, 0)->c == ' ') return;
  window_push(&x->url, u, ':');
  match_patterns(x, &x->url, url_patterns, sizeof(url_patterns) / sizeof(url_patterns[0]));
}

static void entity_hold(entity_t *e, unit_t u, entity_state_t next) {
  e->held[e->nheld++] = u;
  e->state = next;
}

/* Not a reference after all: the held units go on as plain text. */
static void entity_replay(xss_t *x) {
  entity_t *e = &x->ent;
  for (size_t i = 0; i < e->nheld; i++) url_push(x, e->held[i]);
  e->nheld = 0;
  e->state = ENT_NONE;
}

/* A decoded reference becomes one unit at the position of its '&'. */
static void entity_emit(xss_t *x, uint32_t cp) {
  entity_t *e = &x->ent;
  unit_t u = {NON_ASCII, e->held[0].pos};
  if (cp > 0 && cp < 0x80) u.c = lower((unsigned char)cp);
  e->nheld = 0;
  e->state = ENT_NONE;
  url_push(x, u);
}

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static void entity_digit(entity_t *e, uint32_t base, int digit) {
  e->value = e->value > 0x10FFFF ? e->value : e->value * base + (uint32_t)digit;
}

/* "&colon;", "&tab;", "&newline;" (held[1..] are the letters). */
static void entity_named_end(xss_t *x, unit_t semicolon) {
  static const struct { const char *name; char c; } names[] = {
      {"colon", ':'}, {"tab", '\t'}, {"newline", '\n'}};
  entity_t *e = &x->ent;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    size_t n = strlen(names[i].name);
    if (n != e->nheld - 1) continue;
    size_t k = 0;
    while (k < n && e->held[k + 1].c == (unsigned char)names[i].name[k]) k++;
    if (k == n) {
      entity_emit(x, (uint32_t)names[i].c);
      return;
    }
  }
  entity_replay(x);
  url_push(x, semicolon);
}

static int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/*
 * Advances the reference in progress by one unit. Returns 1 when the unit was
 * used, 0 when it is not part of the reference: then whatever is still held
 * is plain text and the unit is fed again from the plain state. A numeric
 * reference ends at its first non-digit (consumed only when it is ';').
 */
static int entity_step(xss_t *x, unit_t u) {
  entity_t *e = &x->ent;
  int h = hex_value(u.c);
  switch (e->state) {
    case ENT_AMP:
      if (u.c == '#' || is_lower(u.c)) entity_hold(e, u, u.c == '#' ? ENT_HASH : ENT_NAMED);
      return u.c == '#' || is_lower(u.c);
    case ENT_HASH:
      if (u.c == 'x') entity_hold(e, u, ENT_HEX_X);
      else if (is_digit(u.c)) e->state = ENT_DEC;
      else return 0;
      e->value = u.c == 'x' ? 0 : (uint32_t)h;
      return 1;
    case ENT_HEX_X:
      if (h < 0) return 0;
      e->value = (uint32_t)h;
      e->state = ENT_HEX;
      return 1;
    case ENT_DEC:
    case ENT_HEX:
      if (e->state == ENT_DEC ? is_digit(u.c) : h >= 0) {
        entity_digit(e, e->state == ENT_DEC ? 10 : 16, h);
        return 1;
      }
      entity_emit(x, e->value);
      return u.c == ';';
    case ENT_NAMED:
      if (u.c == ';') {
        entity_named_end(x, u);
        return 1;
      }
      if (!is_lower(u.c) || e->nheld > ENTITY_NAME_MAX) return 0;
      entity_hold(e, u, ENT_NAMED);
      return 1;
    case ENT_NONE:
      break;
  }
  return 0;
}

/*
 * HTML character references as an attribute value decodes them: numeric ones
 * with or without ';' and any number of digits, and the few named ones that
 * can build a URL scheme, which need their ';'.
 */
static void entity_feed(xss_t *x, unit_t u) {
  if (x->ent.state == ENT_NONE) {
    if (u.c == '&')
      entity_hold(&x->ent, u, ENT_AMP);
    else
      url_push(x, u);
    return;
  }
  if (entity_step(x, u)) return;
  entity_replay(x);
  entity_feed(x, u);
}

/* End of the string: a numeric reference is complete, anything else was text. */
static void entity_flush(xss_t *x) {
  if (x->ent.state == ENT_DEC || x->ent.state == ENT_HEX)
    entity_emit(x, x->ent.value);
  else
    entity_replay(x);
}

/* ------------------------------------------------------------------ strings */

/* Resets the per-string state; the window rings need no clearing, only their counts. */
static void xss_start(xss_t *x, size_t after) {
  x->after = after;
  x->html.n = 0;
  x->html.anchor_end = 0;
  x->url.n = 0;
  x->url.anchor_end = 0;
  x->attr.state = ATTR_NONE;
  x->attr.boundary = 1;
  x->attr.len = 0;
  x->ent.state = ENT_NONE;
  x->ent.nheld = 0;
  x->found = 0;
}

/* One decoded character: an escape's value, or one raw byte (each byte of UTF-8 is non-ASCII). */
static void xss_feed(xss_t *x, uint32_t cp, size_t pos) {
  unit_t u = {NON_ASCII, pos};
  if (cp < 0x80) u.c = lower((unsigned char)cp);
  window_push(&x->html, u, '<');
  match_patterns(x, &x->html, tag_patterns, sizeof(tag_patterns) / sizeof(tag_patterns[0]));
  attr_feed(x, u);
  entity_feed(x, u);
}

static int read_hex4(const char *p, size_t len, size_t at, uint32_t *out) {
  if (len - at < 4) return -1;
  uint32_t v = 0;
  for (size_t i = 0; i < 4; i++) {
    int h = hex_value(lower((unsigned char)p[at + i]));
    if (h < 0) return -1;
    v = v << 4 | (uint32_t)h;
  }
  *out = v;
  return 0;
}

/*
 * Decodes the escape whose backslash is at *i into *cp and moves *i past it.
 * Each \uXXXX is decoded on its own: the halves of a surrogate pair are two
 * non-ASCII units, which is all the ASCII patterns need to know about them.
 * Returns -1 when malformed.
 */
static int decode_escape(const char *p, size_t len, size_t *i, uint32_t *cp) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  if (len - *i < 2) return -1;
  char e = p[*i + 1];
  const char *k = e != '\0' ? strchr(from, e) : NULL;
  if (k != NULL) {
    *cp = (unsigned char)to[k - from];
    *i += 2;
    return 0;
  }
  if (e != 'u' || read_hex4(p, len, *i + 2, cp) != 0) return -1;
  *i += 6;
  return 0;
}

static int cut_short(rt_errbuf_t *err, size_t at) {
  return rt_errbuf_set(err, RT_EJSON, "Invalid JSON at byte %zu: malformed string", at);
}

/* Moves *i from inside a string to just past its closing quote, or returns RT_EJSON. */
static int skip_string(const char *p, size_t len, size_t *i, rt_errbuf_t *err) {
  while (*i < len) {
    if (p[*i] == '"') {
      (*i)++;
      return 0;
    }
    *i += p[*i] == '\\' ? 2 : 1;
  }
  return cut_short(err, len);
}

/* After a string: 1 when a ':' follows, i.e. the string was an object key. */
static int followed_by_colon(const char *p, size_t len, size_t i) {
  while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
  return i < len && p[i] == ':';
}

/*
 * Bytes without which nothing can match: every finding ends with a '<', ':'
 * or '=' unit, and a unit differs from its source byte only through a JSON
 * escape ('\\') or a character reference ('&'). Raw control bytes (not
 * valid JSON inside a string) count too, because the URL pipeline drops
 * some of them, so plain bytes always stand for one unit each.
 */
static int is_trigger(unsigned char c) {
  return c == '<' || c == ':' || c == '=' || c == '\\' || c == '&' || c < 0x20;
}

/*
 * How far patterns reach around their anchor, in units: *before is the most
 * text before it ("javascript" before ':'), *after the most after it
 * ("/script" after '<', " text/html" after ':'). Derived from the tables so
 * the skipping stays right when a pattern is added.
 */
static void anchor_reach(size_t *before, size_t *after) {
  static const struct {
    const pattern_t *pats;
    size_t n;
    char anchor;
  } sets[] = {{tag_patterns, sizeof(tag_patterns) / sizeof(tag_patterns[0]), '<'},
              {url_patterns, sizeof(url_patterns) / sizeof(url_patterns[0]), ':'}};
  *before = *after = 0;
  for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
    for (size_t i = 0; i < sets[s].n; i++) {
      const pattern_t *p = &sets[s].pats[i];
      size_t k = (size_t)(strchr(p->text, sets[s].anchor) - p->text);
      if (k > *before) *before = k;
      if (p->len - 1 - k > *after) *after = p->len - 1 - k;
    }
  }
}

/* No pattern is part way: no reference pending, no anchor recent enough to end a pattern. */
static int xss_quiet(const xss_t *x) {
  return x->ent.state == ENT_NONE &&
         (x->html.anchor_end == 0 || x->html.n - x->html.anchor_end >= x->after) &&
         (x->url.anchor_end == 0 || x->url.n - x->url.anchor_end >= x->after);
}

/*
 * Where fresh pipelines must start to judge the trigger at t as a run from
 * `from` would, given that p[from..t) is plain bytes (one unit each, no
 * escape or reference): early enough to see the pattern text before an
 * anchor, and the whole attribute name (with the whitespace before '=' and
 * the byte before the name, which decides whether it may start there).
 */
static size_t restart_point(const char *p, size_t from, size_t t, size_t before) {
  size_t k = t, name = 0;
  while (k > from && is_html_space(lower((unsigned char)p[k - 1]))) k--;
  while (k > from && name <= ATTR_NAME_MAX && is_name_char(lower((unsigned char)p[k - 1]))) {
    k--;
    name++;
  }
  if (k > from) k--;
  size_t scheme = t - from > before ? t - before : from;
  return k < scheme ? k : scheme;
}

/*
 * While nothing is pending, plain bytes up to the next trigger cannot change
 * a verdict except through the few right before it, so the scan jumps there
 * and starts fresh pipelines (not at the string start: a name there cannot
 * claim the start-of-string boundary). Returns 1 when the string holds no
 * further trigger, with *j on its closing quote, or 0 with *j where to go on
 * and *next the first position worth another look; RT_EJSON when cut short.
 */
static int skip_plain(xss_t *x, const char *p, size_t len, size_t before, size_t *j,
                      size_t *next) {
  size_t t = *j;
  while (t < len && p[t] != '"' && !is_trigger((unsigned char)p[t])) t++;
  if (t >= len) return RT_EJSON;
  if (p[t] == '"') {
    *j = t;
    return 1;
  }
  size_t r = restart_point(p, *j, t, before);
  if (r > *j) {
    xss_start(x, x->after);
    x->attr.boundary = 0;
    *j = r;
  }
  *next = t + 1;
  return 0;
}

/*
 * Runs the patterns over the string whose opening quote is at *i and leaves
 * *i past its closing quote. Plain stretches are skipped (skip_plain), so
 * text without trigger bytes costs a byte scan. On a finding the rest of
 * the string is skipped to learn whether it was a key, which the message
 * names.
 */
static int check_string(const char *p, size_t len, size_t before, size_t after, size_t *i,
                        rt_errbuf_t *err) {
  xss_t x;
  xss_start(&x, after);
  size_t j = *i + 1, next = j;
  while (!x.found) {
    if (j >= len) return cut_short(err, len);
    if (j >= next && xss_quiet(&x)) {
      int rc = skip_plain(&x, p, len, before, &j, &next);
      if (rc == RT_EJSON) return cut_short(err, len);
      if (rc == 1) break;
    }
    size_t at = j;
    uint32_t cp = (unsigned char)p[j];
    if (cp == '"') break;
    if (cp != '\\')
      j++;
    else if (decode_escape(p, len, &j, &cp) != 0)
      return cut_short(err, at);
    xss_feed(&x, cp, at);
  }
  if (!x.found) entity_flush(&x);
  int rc = skip_string(p, len, &j, err);
  if (rc != 0) return rc;
  *i = j;
  if (!x.found) return 0;
  return rt_errbuf_set(err, RT_EMESSAGE, "Message refused: %s in a %s (byte %zu)", x.what,
                       followed_by_colon(p, len, j) ? "key" : "string", x.at);
}

int rt_validate_data(const char *json, size_t len, const rt_validate_config_t *cfg,
                     rt_errbuf_t *err) {
  if (cfg->max_size != 0 && len > cfg->max_size)
    return rt_errbuf_set(err, RT_ETOOLARGE, "Message too large: data is %zu bytes (limit %zu)",
                         len, cfg->max_size);
  size_t depth = 0, i = 0, before = 0, after = 0;
  if (cfg->xss) anchor_reach(&before, &after);
  while (i < len) {
    char c = json[i];
    if (c == '"') {
      int rc;
      if (cfg->xss) {
        rc = check_string(json, len, before, after, &i, err);
      } else {
        i++;
        rc = skip_string(json, len, &i, err);
      }
      if (rc != 0) return rc;
      continue;
    }
    if (cfg->max_depth != 0 && (c == '[' || c == '{') && ++depth > cfg->max_depth)
      return rt_errbuf_set(err, RT_EDEPTH, "JSON nesting too deep at byte %zu (limit %u)", i,
                           cfg->max_depth);
    if ((c == ']' || c == '}') && depth > 0) depth--;
    i++;
  }
  return 0;
}
