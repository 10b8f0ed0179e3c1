/* Rendering of the statistics report (see report.h): formatted by hand
 * into a fixed buffer, because the library renders it inside malloc_stats
 * or at exit, where neither malloc nor stdio may be called. */
#include "report.h"
#include "hakmem.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* v right-aligned in width columns. */
static void put_padded(struct diag_buf *b, const char *s, size_t width, bool right)
{
  size_t n = strlen(s);
  if (right)
    for (size_t i = n; i < width; i++)
      diag_put_char(b, ' ');
  diag_put(b, s);
  if (!right)
    for (size_t i = n; i < width; i++)
      diag_put_char(b, ' ');
}

void report_put_bytes(struct diag_buf *b, uint64_t v)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  unsigned u = 0;
  uint64_t whole = v, tenths = 0;
  while (whole >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
    /* Tenths of the next unit, rounded to nearest. */
    uint64_t scaled = (v * 10 + (1ull << (10 * (u + 1))) / 2) >> (10 * (u + 1));
    if (v > UINT64_MAX / 10)
      scaled = (v >> (10 * (u + 1))) * 10;
    whole = scaled / 10;
    tenths = scaled % 10;
    u++;
  }
  diag_put_u64(b, whole);
  if (u) {
    diag_put_char(b, '.');
    diag_put_char(b, (char)('0' + tenths));
  }
  diag_put_char(b, ' ');
  diag_put(b, units[u]);
}

static void bytes_text(char *out, size_t size, uint64_t v)
{
  struct diag_buf t = { .buf = out, .size = size };
  out[0] = '\0';
  report_put_bytes(&t, v);
}

void report_put_json_string(struct diag_buf *b, const char *s)
{
  diag_put_char(b, '"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      diag_put_char(b, '\\');
      diag_put_char(b, (char)c);
    } else if (c < 0x20) {
      diag_put(b, "\\u00");
      diag_put_char(b, "0123456789abcdef"[c >> 4]);
      diag_put_char(b, "0123456789abcdef"[c & 15]);
    } else {
      diag_put_char(b, (char)c);
    }
  }
  diag_put_char(b, '"');
}

/* Seconds since the epoch as 2026-11-26T12:34:56Z (UTC; no gmtime, whose
 * time-zone handling may allocate). */
static void put_time(struct diag_buf *b, int64_t t)
{
  int64_t days = t / 86400, secs = t % 86400;
  if (secs < 0) {
    secs += 86400;
    days--;
  }
  /* Civil date from days since 1970-01-01 (H. Hinnant's algorithm). */
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2)
    y++;
  int64_t f[6] = { y, m, d, secs / 3600, secs / 60 % 60, secs % 60 };
  static const char sep[] = "--T::Z";
  for (int i = 0; i < 6; i++) {
    if (i && f[i] < 10)
      diag_put_char(b, '0');
    diag_put_i64(b, f[i]);
    diag_put_char(b, sep[i]);
  }
}

#define COUNTER(f, sections) { #f, sections, offsetof(hak_stats_t, f) }
const struct report_counter_def report_counters[] = {
  COUNTER(malloc_calls, REPORT_MAIN), COUNTER(refills, REPORT_MAIN),
  COUNTER(remote_frees, REPORT_MAIN), COUNTER(remote_drains, REPORT_MAIN),
  COUNTER(slabs_emptied, REPORT_MAIN), COUNTER(large_allocs, REPORT_MAIN),
  COUNTER(large_frees, REPORT_MAIN), COUNTER(bigcache_hits, REPORT_MAIN),
  COUNTER(bigcache_misses, REPORT_MAIN), COUNTER(large_bytes, REPORT_MAIN),
  COUNTER(bigcache_bytes, REPORT_MAIN), COUNTER(lean_decommit, REPORT_MAIN),
  COUNTER(lean_retire, REPORT_MAIN), COUNTER(purge_decommit, REPORT_MAIN),
  COUNTER(purge_threads, REPORT_MAIN), COUNTER(prewarm_bytes, REPORT_MAIN),
  COUNTER(pool_reuse_empty, REPORT_POOL), COUNTER(pool_claim_unused, REPORT_POOL),
  COUNTER(pool_new_superslab, REPORT_POOL), COUNTER(pool_adopt, REPORT_POOL),
  COUNTER(superslabs_live, REPORT_POOL | REPORT_DUMP),
  COUNTER(superslabs_empty, REPORT_POOL | REPORT_DUMP),
  COUNTER(superslabs_unmapped, REPORT_POOL | REPORT_DUMP),
  COUNTER(os_mmap, REPORT_OS), COUNTER(os_munmap, REPORT_OS), COUNTER(os_madvise, REPORT_OS),
  COUNTER(os_mremap, REPORT_OS), COUNTER(os_refused, REPORT_OS), COUNTER(mapped_bytes, REPORT_OS),
};
#undef COUNTER
const unsigned report_counter_count = sizeof report_counters / sizeof report_counters[0];
_Static_assert(sizeof report_counters / sizeof report_counters[0] <= REPORT_COUNTER_MAX,
               "every counter fits in a report");

void report_add_counters(struct report_data *d, unsigned sections,
                         bool (*get)(const struct report_counter_def *c, const void *source,
                                     uint64_t *value),
                         const void *source)
{
  for (unsigned i = 0; i < report_counter_count; i++) {
    const struct report_counter_def *c = &report_counters[i];
    uint64_t v;
    if ((c->sections & sections) && d->ncounters < REPORT_COUNTER_MAX && get(c, source, &v))
      d->counters[d->ncounters++] = (struct report_counter){ c->name, v };
  }
}

uint64_t report_in_use(const struct report_data *d)
{
  return d->small_in_use + d->large_in_use;
}

uint64_t report_held(const struct report_data *d)
{
  uint64_t used = report_in_use(d);
  return d->mapped > used ? d->mapped - used : 0;
}

/* Classes sorted by bytes in use, then free bytes, most first: indexes
 * into d->classes. */
static unsigned classes_by_use(const struct report_data *d, uint8_t *order)
{
  unsigned n = 0;
  for (unsigned c = 0; c < d->nclasses && c < REPORT_CLASS_MAX; c++) {
    const struct report_class *k = &d->classes[c];
    if (!k->in_use_bytes && !k->free_bytes && !k->allocs)
      continue;
    unsigned i = n++;
    while (i > 0) {
      const struct report_class *p = &d->classes[order[i - 1]];
      if (p->in_use_bytes > k->in_use_bytes ||
          (p->in_use_bytes == k->in_use_bytes && p->free_bytes >= k->free_bytes))
        break;
      order[i] = order[i - 1];
      i--;
    }
    order[i] = (uint8_t)c;
  }
  return n;
}

/* Rows of the per-class table in the text report; the rest are counted. */
#define REPORT_TEXT_CLASS_ROWS 12

static void line_start(struct diag_buf *b)
{
  diag_put(b, "hakmem: ");
}

static void text_bytes_field(struct diag_buf *b, const char *label, uint64_t v)
{
  char t[32];
  line_start(b);
  put_padded(b, label, 14, false);
  bytes_text(t, sizeof t, v);
  put_padded(b, t, 10, true);
}

static void json_key(struct diag_buf *b, const char *key, bool *first)
{
  if (!*first)
    diag_put_char(b, ',');
  *first = false;
  report_put_json_string(b, key);
  diag_put_char(b, ':');
}

static void json_u64(struct diag_buf *b, const char *key, uint64_t v, bool *first)
{
  json_key(b, key, first);
  diag_put_u64(b, v);
}

/* ---- rows ----
 * A class of the table, a learner's decision and each of its candidates
 * are rows: one line of the text report or one JSON object, written by the
 * same calls in either format.  A text row is "hakmem: " and its lead,
 * then each field as a column (width > 0: the value right-aligned, no
 * key) or as " key value"; a JSON row is {"key":value,...}. */
struct row {
  struct diag_buf *b;
  bool json;
  bool first;         /* JSON: no comma before the next key */
};

static struct row row_begin(struct diag_buf *b, bool json, const char *text_lead)
{
  if (json) {
    diag_put_char(b, '{');
  } else {
    line_start(b);
    diag_put(b, text_lead);
  }
  return (struct row){ .b = b, .json = json, .first = true };
}

static void row_end(struct row *r)
{
  diag_put(r->b, r->json ? "}" : "\n");
}

/* The text form of a field: " key value", or the value in a column. */
static void row_text_field(struct row *r, const char *key, const char *value, size_t width)
{
  if (width) {
    put_padded(r->b, value, width, true);
    return;
  }
  diag_put_char(r->b, ' ');
  if (key) {
    diag_put(r->b, key);
    diag_put_char(r->b, ' ');
  }
  diag_put(r->b, value);
}

/* A number: key in JSON; in text, text_key (NULL: the value alone) or a
 * column of width. */
static void row_i64(struct row *r, const char *key, const char *text_key, int64_t v, size_t width)
{
  if (r->json) {
    json_key(r->b, key, &r->first);
    diag_put_i64(r->b, v);
    return;
  }
  char num[24];
  struct diag_buf nb = DIAG_BUF(num);
  diag_put_i64(&nb, v);
  row_text_field(r, text_key, num, width);
}

static void row_u64(struct row *r, const char *key, uint64_t v, size_t width)
{
  if (r->json) {
    json_u64(r->b, key, v, &r->first);
    return;
  }
  char num[24];
  struct diag_buf nb = DIAG_BUF(num);
  diag_put_u64(&nb, v);
  row_text_field(r, key, num, width);
}

/* A byte count: a number in JSON, human units in a text column. */
static void row_bytes(struct row *r, const char *key, uint64_t v, size_t width)
{
  if (r->json) {
    json_u64(r->b, key, v, &r->first);
    return;
  }
  char t[32];
  bytes_text(t, sizeof t, v);
  put_padded(r->b, t, width, true);
}

/* A string: quoted in JSON; in text, " key value", or " value" alone
 * when text_key is NULL. */
static void row_string(struct row *r, const char *key, const char *text_key, const char *s)
{
  if (r->json) {
    json_key(r->b, key, &r->first);
    report_put_json_string(r->b, s);
    return;
  }
  row_text_field(r, text_key, s, 0);
}

static void row_class(struct diag_buf *b, bool json, const struct report_class *k)
{
  struct row r = row_begin(b, json, "");
  row_bytes(&r, "block", k->block_size, 10);
  row_bytes(&r, "in_use", k->in_use_bytes, 12);
  row_bytes(&r, "free", k->free_bytes, 12);
  row_u64(&r, "allocs", k->allocs, 14);
  row_u64(&r, "refills", k->refills, 13);
  row_end(&r);
}

static void row_candidate(struct diag_buf *b, bool json, const struct report_learn *l,
                          const struct report_candidate *c)
{
  struct row r = row_begin(b, json, "learn ");
  if (!json)
    diag_put(b, l->name);
  row_i64(&r, "value", "candidate", c->value, 0);
  row_u64(&r, "rating", c->rating, 0);
  row_u64(&r, "epochs", c->epochs, 0);
  row_u64(&r, "cost_ns", c->cost_ns, 0);
  if (json) {
    json_key(b, "chosen", &r.first);
    diag_put(b, c->chosen ? "true" : "false");
  } else if (c->chosen) {
    diag_put(b, " chosen");
  }
  row_end(&r);
}

/* A decision of the learner, then its candidates: lines after it in
 * text, an array inside it in JSON. */
static void row_learn(struct diag_buf *b, bool json, const struct report_learn *l)
{
  struct row r = row_begin(b, json, "learn");
  row_string(&r, "name", NULL, l->name);
  row_string(&r, "phase", "phase", l->phase);
  row_i64(&r, "value", "value", l->value, 0);
  row_u64(&r, "epochs", l->epochs, 0);
  row_u64(&r, "transitions", l->transitions, 0);
  row_u64(&r, "events", l->events, 0);
  row_u64(&r, "events_to_freeze", l->events_to_freeze, 0);
  if (json) {
    json_key(b, "candidates", &r.first);
    diag_put_char(b, '[');
  } else {
    row_end(&r);
  }
  for (unsigned j = 0; j < l->ncand && j < REPORT_CANDIDATE_MAX; j++) {
    if (json && j)
      diag_put_char(b, ',');
    row_candidate(b, json, l, &l->cand[j]);
  }
  if (json) {
    diag_put_char(b, ']');
    row_end(&r);
  }
}

void report_text(struct diag_buf *b, const struct report_data *d)
{
  char t[32];
  line_start(b);
  diag_put(b, "stats pid=");
  diag_put_i64(b, d->pid);
  diag_put(b, " program=");
  diag_put(b, d->program[0] ? d->program : "?");
  if (d->time) {
    diag_put(b, " time=");
    put_time(b, d->time);
  }
  if (d->version[0]) {
    diag_put(b, " version=");
    diag_put(b, d->version);
  }
  diag_put(b, "\n");

  line_start(b);
  put_padded(b, "mode", 14, false);
  diag_put(b, d->mode[0] ? d->mode : "?");
  if (d->mode_source[0]) {
    diag_put(b, " (");
    diag_put(b, d->mode_source);
    diag_put(b, ")");
  }
  diag_put(b, "\n");

  if (d->have_heap) {
    text_bytes_field(b, "in use", report_in_use(d));
    diag_put(b, "  (slab blocks ");
    bytes_text(t, sizeof t, d->small_in_use);
    diag_put(b, t);
    diag_put(b, ", large blocks ");
    bytes_text(t, sizeof t, d->large_in_use);
    diag_put(b, t);
    diag_put(b, ")\n");
    text_bytes_field(b, "held free", report_held(d));
    diag_put(b, "  (free slab blocks ");
    bytes_text(t, sizeof t, d->slab_free);
    diag_put(b, t);
    uint64_t listed = d->slab_free;
    if (d->have_bigcache) {
      diag_put(b, ", BigCache ");
      bytes_text(t, sizeof t, d->bigcache_bytes);
      diag_put(b, t);
      listed += d->bigcache_bytes;
    }
    /* The rest, so that the parts add up to the total. */
    diag_put(b, ", slab space not cut and headers ");
    bytes_text(t, sizeof t, report_held(d) > listed ? report_held(d) - listed : 0);
    diag_put(b, t);
    diag_put(b, ")\n");
  } else {
    text_bytes_field(b, "large in use", d->large_in_use);
    diag_put(b, "  (slab blocks unknown: the slabs could not be walked)\n");
  }
  text_bytes_field(b, "mapped", d->mapped);
  if (d->have_heap) {
    diag_put(b, "  (SuperSlabs ");
    diag_put_u64(b, d->superslabs);
    diag_put(b, ", of which empty ");
    diag_put_u64(b, d->superslabs_empty);
    diag_put(b, ")");
  }
  diag_put(b, "\n");
  if (d->have_resident) {
    text_bytes_field(b, "resident", d->resident);
    diag_put(b, "  (whole process)\n");
    text_bytes_field(b, "peak resident", d->peak_resident);
    diag_put(b, "\n");
  }
  line_start(b);
  put_padded(b, "OS calls", 14, false);
  diag_put_u64(b, d->os_calls);
  if (d->os_calls_per_s >= 0) {
    diag_put(b, " (");
    diag_put_u64(b, (uint64_t)(d->os_calls_per_s + 0.5));
    diag_put(b, "/s)");
  }
  diag_put(b, "\n");

  uint8_t order[REPORT_CLASS_MAX];
  unsigned n = classes_by_use(d, order);
  if (n) {
    line_start(b);
    diag_put(b, "     block      in use        free   allocations      refills\n");
    for (unsigned i = 0; i < n && i < REPORT_TEXT_CLASS_ROWS; i++)
      row_class(b, false, &d->classes[order[i]]);
    if (n > REPORT_TEXT_CLASS_ROWS) {
      line_start(b);
      diag_put(b, "  ... ");
      diag_put_u64(b, n - REPORT_TEXT_CLASS_ROWS);
      diag_put(b, " more classes in use (stats_format = json lists all)\n");
    }
  }

  /* The learner, in the lines scripts already parse. */
  for (unsigned i = 0; i < d->nlearn; i++)
    row_learn(b, false, &d->learn[i]);

  for (unsigned i = 0; i < d->ncounters; i++) {
    line_start(b);
    diag_put(b, d->counters[i].name);
    diag_put_char(b, ' ');
    diag_put_u64(b, d->counters[i].value);
    diag_put(b, "\n");
  }
}

void report_json(struct diag_buf *b, const struct report_data *d)
{
  bool first = true;
  diag_put_char(b, '{');
  json_key(b, "program", &first);
  report_put_json_string(b, d->program);
  json_key(b, "pid", &first);
  diag_put_i64(b, d->pid);
  if (d->time) {
    json_key(b, "time", &first);
    diag_put_char(b, '"');
    put_time(b, d->time);
    diag_put_char(b, '"');
  }
  json_key(b, "version", &first);
  report_put_json_string(b, d->version);
  json_key(b, "mode", &first);
  report_put_json_string(b, d->mode);
  json_key(b, "mode_source", &first);
  report_put_json_string(b, d->mode_source);

  json_key(b, "bytes", &first);
  diag_put_char(b, '{');
  bool f2 = true;
  if (d->have_heap) {
    json_u64(b, "in_use", report_in_use(d), &f2);
    json_u64(b, "held", report_held(d), &f2);
    json_u64(b, "slab_in_use", d->small_in_use, &f2);
    json_u64(b, "slab_free", d->slab_free, &f2);
  }
  json_u64(b, "large_in_use", d->large_in_use, &f2);
  if (d->have_bigcache)
    json_u64(b, "bigcache", d->bigcache_bytes, &f2);
  json_u64(b, "mapped", d->mapped, &f2);
  if (d->have_resident) {
    json_u64(b, "resident", d->resident, &f2);
    json_u64(b, "peak_resident", d->peak_resident, &f2);
  }
  diag_put_char(b, '}');
  if (d->have_heap) {
    json_u64(b, "superslabs", d->superslabs, &first);
    json_u64(b, "superslabs_empty", d->superslabs_empty, &first);
  }
  json_u64(b, "os_calls", d->os_calls, &first);
  if (d->os_calls_per_s >= 0)
    json_u64(b, "os_calls_per_s", (uint64_t)(d->os_calls_per_s + 0.5), &first);

  uint8_t order[REPORT_CLASS_MAX];
  unsigned n = classes_by_use(d, order);
  json_key(b, "classes", &first);
  diag_put_char(b, '[');
  for (unsigned i = 0; i < n; i++) {
    if (i)
      diag_put_char(b, ',');
    row_class(b, true, &d->classes[order[i]]);
  }
  diag_put_char(b, ']');

  json_key(b, "learn", &first);
  diag_put_char(b, '[');
  for (unsigned i = 0; i < d->nlearn; i++) {
    if (i)
      diag_put_char(b, ',');
    row_learn(b, true, &d->learn[i]);
  }
  diag_put_char(b, ']');

  json_key(b, "counters", &first);
  diag_put_char(b, '{');
  bool f4 = true;
  for (unsigned i = 0; i < d->ncounters; i++)
    json_u64(b, d->counters[i].name, d->counters[i].value, &f4);
  diag_put(b, "}}\n");
}

/* The value after key (a line start) in text, in kB, as bytes. */
static bool proc_field_kb(const char *text, const char *key, uint64_t *out)
{
  size_t kl = strlen(key);
  for (const char *p = text; *p;) {
    if (strncmp(p, key, kl) == 0) {
      p += kl;
      while (*p == ' ' || *p == '\t')
        p++;
      uint64_t v = 0;
      bool any = false;
      for (; *p >= '0' && *p <= '9'; p++, any = true)
        v = v * 10 + (uint64_t)(*p - '0');
      *out = v * 1024;
      return any;
    }
    const char *nl = strchr(p, '\n');
    if (!nl)
      break;
    p = nl + 1;
  }
  return false;
}

static size_t read_proc(int64_t pid, const char *file, char *buf, size_t size)
{
  char path[64];
  struct diag_buf pb = { .buf = path, .size = sizeof path };
  diag_put(&pb, "/proc/");
  if (pid)
    diag_put_i64(&pb, pid);
  else
    diag_put(&pb, "self");
  diag_put_char(&pb, '/');
  diag_put(&pb, file);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  size_t len = 0;
  while (len + 1 < size) {
    ssize_t n = read(fd, buf + len, size - 1 - len);
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  return len;
}

bool report_read_resident(int64_t pid, uint64_t *resident, uint64_t *peak)
{
  char buf[4096];
  bool ok = false;
  *resident = *peak = 0;
  if (read_proc(pid, "smaps_rollup", buf, sizeof buf))
    ok = proc_field_kb(strchr(buf, '\n') ? strchr(buf, '\n') + 1 : buf, "Rss:", resident);
  if (read_proc(pid, "status", buf, sizeof buf)) {
    if (!ok)
      ok = proc_field_kb(buf, "VmRSS:", resident);
    if (!proc_field_kb(buf, "VmHWM:", peak))
      *peak = *resident;
  }
  return ok;
}
