/* hakmemctl stats --pid and hakmemctl top: a running process's heap, read
 * from outside without stopping it.
 *
 * The process needs nothing but libhakmem loaded.  We find the library in
 * /proc/PID/maps, the hakmem_live_stats symbol in the mapped file's
 * dynamic symbol table, and read the block (src/live_stats.h) and what it
 * points to with process_vm_readv, which the kernel allows under the same
 * rule as ptrace: the same user (or CAP_SYS_PTRACE) and whatever Yama's
 * ptrace_scope adds.  Counters are read as they are; bytes in use come
 * from a walk of the registry and the slab descriptors done without the
 * allocator's locks, so they are a momentary estimate (exact when the
 * program is not allocating meanwhile).  The snapshot is rendered by the
 * library's own report code (src/report.c), so the report has one format
 * from inside and from outside. */
#include "hakmemctl_monitor.h"
#include "config.h"
#include "live_stats.h"
#include "report.h"

#include <ctype.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SONAME_PREFIX "libhakmem.so"

/* Why a process could not be read; the message for each is in
 * probe_message. */
enum probe_status {
  PROBE_OK,
  PROBE_NO_PROCESS,
  PROBE_DENIED,
  PROBE_NO_HAKMEM,
  PROBE_NO_SYMBOL,      /* the library has no live block (older than it) */
  PROBE_BAD_BLOCK,      /* magic or version not ours */
  PROBE_READ_FAILED,
};

/* One process's live block, as read. */
struct live_view {
  pid_t pid;
  char library[4096];
  uint64_t block;                 /* address of the block in the process */
  struct live_header header;
  unsigned nentries;
  struct live_entry entries[HAKMEM_LIVE_MAX_ENTRIES];
};

/* Reads len bytes at addr of process pid; 0 or an errno value. */
static int read_mem(pid_t pid, uint64_t addr, void *buf, size_t len)
{
  size_t done = 0;
  while (done < len) {
    struct iovec local = { (char *)buf + done, len - done };
    struct iovec remote = { (void *)(uintptr_t)(addr + done), len - done };
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0)
      return errno;
    if (n == 0)
      return EFAULT;
    done += (size_t)n;
  }
  return 0;
}

static enum probe_status errno_status(int err)
{
  if (err == ESRCH || err == ENOENT)
    return PROBE_NO_PROCESS;
  if (err == EPERM || err == EACCES)
    return PROBE_DENIED;
  return PROBE_READ_FAILED;
}

/* The library's mapped file and the address its file offset 0 is mapped
 * at, from /proc/PID/maps. */
static enum probe_status find_library(pid_t pid, char *path, size_t size, uint64_t *start)
{
  char maps[64];
  snprintf(maps, sizeof maps, "/proc/%d/maps", (int)pid);
  FILE *f = fopen(maps, "re");
  if (!f)
    return errno_status(errno);
  char line[4608];
  enum probe_status st = PROBE_NO_HAKMEM;
  /* Reading maps of a process of another user succeeds to open but
   * yields nothing when ptrace access is refused. */
  bool any = false;
  while (fgets(line, sizeof line, f)) {
    any = true;
    unsigned long lo, hi, off;
    int name_at = 0;
    if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %n", &lo, &hi, &off, &name_at) < 3 || !name_at)
      continue;
    char *name = line + name_at;
    name[strcspn(name, "\n")] = '\0';
    const char *base = strrchr(name, '/');
    if (!base || strncmp(base + 1, SONAME_PREFIX, strlen(SONAME_PREFIX)) != 0 || off != 0)
      continue;
    snprintf(path, size, "%s", name);
    *start = lo;
    st = PROBE_OK;
    break;
  }
  int err = ferror(f) ? errno : 0;
  fclose(f);
  if (st != PROBE_OK && (err || !any))
    return err ? errno_status(err) : PROBE_DENIED;
  return st;
}

/* Opens the library file as the process sees it: through its root (a
 * container), then by path, then through map_files (a deleted file). */
static FILE *open_library(pid_t pid, const char *path, uint64_t start)
{
  char alt[4200];
  const char *deleted = strstr(path, " (deleted)");
  char clean[4096];
  snprintf(clean, sizeof clean, "%.*s", deleted ? (int)(deleted - path) : (int)strlen(path),
           path);
  snprintf(alt, sizeof alt, "/proc/%d/root%s", (int)pid, clean);
  FILE *f = fopen(alt, "re");
  if (!f)
    f = fopen(clean, "re");
  if (!f) {
    /* map_files names a mapping by its exact range: find it again. */
    char maps[64], line[4608];
    snprintf(maps, sizeof maps, "/proc/%d/maps", (int)pid);
    FILE *m = fopen(maps, "re");
    while (m && !f && fgets(line, sizeof line, m)) {
      unsigned long lo, hi;
      if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo == start) {
        snprintf(alt, sizeof alt, "/proc/%d/map_files/%lx-%lx", (int)pid, lo, hi);
        f = fopen(alt, "re");
      }
    }
    if (m)
      fclose(m);
  }
  return f;
}

static bool read_at(FILE *f, uint64_t off, void *buf, size_t len)
{
  return fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, len, f) == len;
}

/* The symbol's address relative to the start of the mapping of file
 * offset 0, from the ELF file's program headers and .dynsym.  Returns
 * false if the file is not a 64-bit ELF or lacks the symbol. */
static bool find_symbol(FILE *f, const char *want, uint64_t *rel)
{
  Elf64_Ehdr eh;
  if (!read_at(f, 0, &eh, sizeof eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
      eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_shnum == 0 || eh.e_shnum > 4096)
    return false;
  /* The virtual address that file offset 0 is loaded at. */
  uint64_t vbase = 0;
  bool have_base = false;
  for (unsigned i = 0; i < eh.e_phnum && i < 256; i++) {
    Elf64_Phdr ph;
    if (!read_at(f, eh.e_phoff + (uint64_t)i * sizeof ph, &ph, sizeof ph))
      return false;
    if (ph.p_type == PT_LOAD && !have_base) {
      vbase = ph.p_vaddr - ph.p_offset;
      have_base = true;
    }
  }
  Elf64_Shdr *sh = calloc(eh.e_shnum, sizeof *sh);
  if (!sh || !read_at(f, eh.e_shoff, sh, (size_t)eh.e_shnum * sizeof *sh)) {
    free(sh);
    return false;
  }
  bool found = false;
  for (unsigned i = 0; i < eh.e_shnum && !found; i++) {
    if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh.e_shnum ||
        sh[i].sh_entsize != sizeof(Elf64_Sym) || sh[i].sh_size > (64u << 20))
      continue;
    const Elf64_Shdr *str = &sh[sh[i].sh_link];
    if (str->sh_size > (64u << 20))
      continue;
    Elf64_Sym *syms = malloc(sh[i].sh_size);
    char *names = malloc(str->sh_size + 1);
    if (syms && names && read_at(f, sh[i].sh_offset, syms, sh[i].sh_size) &&
        read_at(f, str->sh_offset, names, str->sh_size)) {
      names[str->sh_size] = '\0';
      size_t n = sh[i].sh_size / sizeof *syms;
      for (size_t k = 0; k < n; k++)
        if (syms[k].st_name < str->sh_size && syms[k].st_shndx != SHN_UNDEF &&
            strcmp(names + syms[k].st_name, want) == 0) {
          *rel = syms[k].st_value - vbase;
          found = true;
          break;
        }
    }
    free(syms);
    free(names);
  }
  free(sh);
  return found;
}

/* Finds and reads the block of process pid into v. */
static enum probe_status probe(pid_t pid, struct live_view *v)
{
  memset(&v->header, 0, sizeof v->header);
  v->pid = pid;
  v->nentries = 0;
  uint64_t start;
  enum probe_status st = find_library(pid, v->library, sizeof v->library, &start);
  if (st != PROBE_OK)
    return st;
  FILE *f = open_library(pid, v->library, start);
  if (!f)
    return errno_status(errno) == PROBE_DENIED ? PROBE_DENIED : PROBE_NO_SYMBOL;
  uint64_t rel;
  bool found = find_symbol(f, HAKMEM_LIVE_SYMBOL, &rel);
  fclose(f);
  if (!found)
    return PROBE_NO_SYMBOL;
  v->block = start + rel;
  int err = read_mem(pid, v->block, &v->header, sizeof v->header);
  if (err)
    return errno_status(err);
  if (v->header.magic != HAKMEM_LIVE_MAGIC || v->header.version != HAKMEM_LIVE_VERSION ||
      v->header.entry_size < sizeof(struct live_entry) || v->header.entry_size > 4096 ||
      v->header.header_size < sizeof(struct live_header) || v->header.header_size > 4096)
    return PROBE_BAD_BLOCK;
  unsigned n = v->header.entry_count;
  if (n > HAKMEM_LIVE_MAX_ENTRIES)
    n = HAKMEM_LIVE_MAX_ENTRIES;
  for (unsigned i = 0; i < n; i++) {
    err = read_mem(pid, v->block + v->header.header_size + (uint64_t)i * v->header.entry_size,
                   &v->entries[i], sizeof v->entries[i]);
    if (err)
      return errno_status(err);
    v->entries[i].name[HAKMEM_LIVE_NAME_MAX - 1] = '\0';
  }
  v->nentries = n;
  v->header.library_version[sizeof v->header.library_version - 1] = '\0';
  return PROBE_OK;
}

static const struct live_entry *entry(const struct live_view *v, const char *name,
                                      uint32_t kind)
{
  for (unsigned i = 0; i < v->nentries; i++)
    if (v->entries[i].kind == kind && strcmp(v->entries[i].name, name) == 0)
      return &v->entries[i];
  return NULL;
}

static bool constant(const struct live_view *v, const char *name, uint64_t *out)
{
  const struct live_entry *e = entry(v, name, LIVE_CONST);
  if (e)
    *out = e->value;
  return e != NULL;
}

/* A counter (the sum of its words); false if absent or unreadable. */
static bool counter(const struct live_view *v, const char *name, uint64_t *out)
{
  const struct live_entry *e = entry(v, name, LIVE_U64);
  if (!e || e->count == 0 || e->count > 4096)
    return false;
  uint64_t words[4096];
  if (read_mem(v->pid, e->value, words, e->count * sizeof words[0]))
    return false;
  *out = 0;
  for (unsigned i = 0; i < e->count; i++)
    *out += words[i];
  return true;
}

static bool counter_i32(const struct live_view *v, const char *name, int32_t *out)
{
  const struct live_entry *e = entry(v, name, LIVE_I32);
  return e && e->count >= 1 && read_mem(v->pid, e->value, out, sizeof *out) == 0;
}

static void text_entry(const struct live_view *v, const char *name, char *out, size_t size)
{
  out[0] = '\0';
  const struct live_entry *e = entry(v, name, LIVE_TEXT);
  if (!e || !size)
    return;
  size_t n = e->count < size ? e->count : size;
  if (read_mem(v->pid, e->value, out, n) == 0)
    out[n - 1] = '\0';
  else
    out[0] = '\0';
}

/* ---- the heap walk ---- */

struct layout {
  uint64_t l1_addr, l1_count, empty_leaf, l2_entries, tag;
  uint64_t ss_magic, ss_size_max, ss_off_magic, ss_off_nslabs, ss_off_empty, ss_header;
  uint64_t slab_size, off_used, off_carved, off_cls, off_state, off_allocs;
  uint64_t st_unused, st_header, st_tail;
  uint64_t lg_magic, lg_off_magic, lg_off_size, lg_off_state, lg_cached;
};

static bool layout_load(const struct live_view *v, struct layout *L)
{
  const struct live_entry *l1 = entry(v, "registry.l1", LIVE_U64);
  if (!l1)
    return false;
  L->l1_addr = l1->value;
  L->l1_count = l1->count;
  return constant(v, "registry.empty_leaf", &L->empty_leaf) &&
         constant(v, "registry.l2_entries", &L->l2_entries) &&
         constant(v, "registry.tag_superslab", &L->tag) &&
         constant(v, "superslab.magic", &L->ss_magic) &&
         constant(v, "superslab.size_max", &L->ss_size_max) &&
         constant(v, "superslab.off_magic", &L->ss_off_magic) &&
         constant(v, "superslab.off_nslabs", &L->ss_off_nslabs) &&
         constant(v, "superslab.off_empty_kept", &L->ss_off_empty) &&
         constant(v, "superslab.header_size", &L->ss_header) &&
         constant(v, "slab.size", &L->slab_size) &&
         constant(v, "slab.off_used", &L->off_used) &&
         constant(v, "slab.off_carved", &L->off_carved) &&
         constant(v, "slab.off_cls", &L->off_cls) &&
         constant(v, "slab.off_state", &L->off_state) &&
         constant(v, "slab.off_allocs", &L->off_allocs) &&
         constant(v, "slab.state_unused", &L->st_unused) &&
         constant(v, "slab.state_header", &L->st_header) &&
         constant(v, "slab.state_span_tail", &L->st_tail) &&
         constant(v, "large.magic", &L->lg_magic) &&
         constant(v, "large.off_magic", &L->lg_off_magic) &&
         constant(v, "large.off_map_size", &L->lg_off_size) &&
         constant(v, "large.off_state", &L->lg_off_state) &&
         constant(v, "large.state_cached", &L->lg_cached) &&
         L->l1_count > 0 && L->l1_count <= (1u << 20) && L->l2_entries > 0 &&
         L->l2_entries <= (1u << 20) && L->slab_size >= 16 && L->ss_header <= (1u << 20) &&
         L->off_used + 2 <= L->slab_size && L->off_carved + 2 <= L->slab_size &&
         L->off_cls < L->slab_size && L->off_state < L->slab_size &&
         L->off_allocs + 8 <= L->slab_size && L->ss_off_magic + 8 <= L->ss_header &&
         L->ss_off_nslabs + 4 <= L->ss_header && L->ss_off_empty < L->ss_header &&
         L->lg_off_magic + 8 <= 4096 && L->lg_off_size + 8 <= 4096 && L->lg_off_state + 4 <= 4096;
}

struct heap_totals {
  uint64_t in_use, free, allocs, superslabs, superslabs_empty, bigcache;
};

static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t get_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* One SuperSlab's slabs, added to the totals and the per-class rows. */
static void walk_superslab(pid_t pid, const struct layout *L, uint64_t base, unsigned char *hdr,
                           const uint32_t *block_size, unsigned nclasses,
                           struct heap_totals *t, struct report_data *d)
{
  if (read_mem(pid, base, hdr, L->ss_header) || get_u64(hdr + L->ss_off_magic) != L->ss_magic)
    return; /* unmapped or re-used meanwhile */
  uint32_t nslabs = get_u32(hdr + L->ss_off_nslabs);
  if (nslabs > L->ss_size_max / 65536 || (uint64_t)nslabs * L->slab_size > L->ss_header)
    return;
  t->superslabs++;
  t->superslabs_empty += hdr[L->ss_off_empty] != 0;
  for (uint32_t i = 1; i < nslabs; i++) {
    const unsigned char *s = hdr + (uint64_t)i * L->slab_size;
    unsigned state = s[L->off_state];
    unsigned cls = s[L->off_cls];
    if (state == L->st_unused || state == L->st_tail || state == L->st_header ||
        cls >= nclasses)
      continue;
    uint64_t used = get_u16(s + L->off_used), carved = get_u16(s + L->off_carved);
    if (used > carved)
      used = carved;
    uint64_t in_use = used * block_size[cls], free = (carved - used) * block_size[cls];
    uint64_t allocs = get_u64(s + L->off_allocs);
    t->in_use += in_use;
    t->free += free;
    t->allocs += allocs;
    if (cls < REPORT_CLASS_MAX) {
      d->classes[cls].in_use_bytes += in_use;
      d->classes[cls].free_bytes += free;
      d->classes[cls].allocs += allocs;
    }
  }
}

/* Walks the registry: every SuperSlab once, every large header once.
 * Returns false if the registry itself could not be read. */
static bool walk_heap(const struct live_view *v, struct heap_totals *t, struct report_data *d)
{
  struct layout L;
  memset(t, 0, sizeof *t);
  if (!layout_load(v, &L))
    return false;
  const struct live_entry *cs = entry(v, "class.block_size", LIVE_I32);
  if (!cs || cs->count == 0 || cs->count > 256)
    return false;
  uint32_t block_size[256];
  if (read_mem(v->pid, cs->value, block_size, cs->count * sizeof block_size[0]))
    return false;
  unsigned nclasses = cs->count;
  d->nclasses = nclasses < REPORT_CLASS_MAX ? nclasses : REPORT_CLASS_MAX;
  for (unsigned c = 0; c < d->nclasses; c++)
    d->classes[c].block_size = block_size[c];

  uint64_t *l1 = malloc(L.l1_count * 8);
  uint64_t *leaf = malloc(L.l2_entries * 8);
  unsigned char *hdr = malloc(L.ss_header);
  bool ok = l1 && leaf && hdr && read_mem(v->pid, L.l1_addr, l1, L.l1_count * 8) == 0;
  for (uint64_t i = 0; ok && i < L.l1_count; i++) {
    if (!l1[i] || read_mem(v->pid, L.empty_leaf + l1[i], leaf, L.l2_entries * 8))
      continue;
    uint64_t prev = 0;
    for (uint64_t j = 0; j < L.l2_entries; j++) {
      uint64_t e = leaf[j];
      /* A SuperSlab or a large mapping covers consecutive units, all
       * naming it: count it at its first. */
      if (!e || e == prev) {
        prev = e;
        continue;
      }
      prev = e;
      if (e & L.tag) {
        walk_superslab(v->pid, &L, e - L.tag, hdr, block_size, nclasses, t, d);
      } else {
        unsigned char lh[4096];
        uint64_t need = L.lg_off_magic + 8;
        if (L.lg_off_size + 8 > need)
          need = L.lg_off_size + 8;
        if (L.lg_off_state + 4 > need)
          need = L.lg_off_state + 4;
        if (read_mem(v->pid, e, lh, need) == 0 && get_u64(lh + L.lg_off_magic) == L.lg_magic &&
            get_u32(lh + L.lg_off_state) == L.lg_cached)
          t->bigcache += get_u64(lh + L.lg_off_size);
      }
    }
  }
  free(l1);
  free(leaf);
  free(hdr);
  return ok;
}

/* ---- the snapshot ---- */

static const char *const phase_names[] = { "OFF", "LEARN", "FROZEN", "CANARY" };

static void add_counter(struct report_data *d, const char *name, uint64_t v)
{
  if (d->ncounters < REPORT_COUNTER_MAX)
    d->counters[d->ncounters++] = (struct report_counter){ name, v };
}

/* Reads the counters the in-process report lists, in its order. */
static void snapshot_counters(const struct live_view *v, struct report_data *d,
                              const struct heap_totals *t)
{
  static const char *const first[] = {
    "refills", "remote_frees", "remote_drains", "slabs_emptied", "large_allocs",
    "large_frees", "bigcache_hits", "bigcache_misses", "large_bytes", NULL };
  static const char *const second[] = {
    "lean_decommit", "lean_retire", "purge_decommit", "purge_threads", "prewarm_bytes",
    "pool_reuse_empty", "pool_claim_unused", "pool_new_superslab", "pool_adopt", NULL };
  static const char *const os[] = {
    "superslabs_unmapped", "os_mmap", "os_munmap", "os_madvise", "os_mremap", "os_refused",
    "mapped_bytes", NULL };
  uint64_t x;
  if (d->have_heap)
    add_counter(d, "malloc_calls", t->allocs);
  for (int i = 0; first[i]; i++)
    if (counter(v, first[i], &x))
      add_counter(d, first[i], x);
  if (d->have_heap)
    add_counter(d, "bigcache_bytes", t->bigcache);
  for (int i = 0; second[i]; i++)
    if (counter(v, second[i], &x))
      add_counter(d, second[i], x);
  if (d->have_heap) {
    add_counter(d, "superslabs_live", t->superslabs);
    add_counter(d, "superslabs_empty", t->superslabs_empty);
  }
  for (int i = 0; os[i]; i++)
    if (counter(v, os[i], &x))
      add_counter(d, os[i], x);
}

static void snapshot_learner(const struct live_view *v, struct report_data *d)
{
  static const char *const decisions[] = { "bigcache_max_mb", "superslab_keep", NULL };
  for (int k = 0; decisions[k] && d->nlearn < REPORT_LEARN_MAX; k++) {
    char name[HAKMEM_LIVE_NAME_MAX];
    int32_t phase, value;
    snprintf(name, sizeof name, "learn.%s.phase", decisions[k]);
    if (!counter_i32(v, name, &phase) || phase <= 0 || phase > 3)
      continue;
    struct report_learn *l = &d->learn[d->nlearn++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", decisions[k]);
    snprintf(l->phase, sizeof l->phase, "%s", phase_names[phase]);
    snprintf(name, sizeof name, "learn.%s.value", decisions[k]);
    if (counter_i32(v, name, &value))
      l->value = value;
    snprintf(name, sizeof name, "learn.%s.epochs", decisions[k]);
    counter(v, name, &l->epochs);
    snprintf(name, sizeof name, "learn.%s.transitions", decisions[k]);
    counter(v, name, &l->transitions);
    snprintf(name, sizeof name, "learn.%s.events", decisions[k]);
    counter(v, name, &l->events);
  }
}

/* Fills d from the process v describes (probed already). */
static void snapshot(const struct live_view *v, struct report_data *d)
{
  memset(d, 0, sizeof *d);
  d->pid = v->pid;
  d->time = time(NULL);
  d->os_calls_per_s = -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/comm", (int)v->pid);
  FILE *f = fopen(path, "re");
  if (f) {
    if (fgets(d->program, sizeof d->program, f))
      d->program[strcspn(d->program, "\n")] = '\0';
    fclose(f);
  }
  snprintf(d->version, sizeof d->version, "%s", v->header.library_version);
  int32_t mode;
  if (counter_i32(v, "mode", &mode) && mode >= 0 && mode < HAK_MODE_COUNT)
    snprintf(d->mode, sizeof d->mode, "%s", config_mode_words[mode]);
  text_entry(v, "mode_source", d->mode_source, sizeof d->mode_source);

  struct heap_totals t;
  d->have_heap = walk_heap(v, &t, d);
  if (d->have_heap) {
    d->small_in_use = t.in_use;
    d->slab_free = t.free;
    d->have_bigcache = true;
    d->bigcache_bytes = t.bigcache;
    d->superslabs = t.superslabs;
    d->superslabs_empty = t.superslabs_empty;
  } else {
    d->nclasses = 0;
  }
  const struct live_entry *refills = entry(v, "refills", LIVE_U64);
  if (refills && refills->count <= REPORT_CLASS_MAX && d->have_heap) {
    uint64_t r[REPORT_CLASS_MAX];
    if (read_mem(v->pid, refills->value, r, refills->count * 8) == 0)
      for (unsigned c = 0; c < refills->count && c < d->nclasses; c++)
        d->classes[c].refills = r[c];
  }
  counter(v, "large_bytes", &d->large_in_use);
  counter(v, "mapped_bytes", &d->mapped);
  uint64_t calls[4] = { 0 };
  counter(v, "os_mmap", &calls[0]);
  counter(v, "os_munmap", &calls[1]);
  counter(v, "os_madvise", &calls[2]);
  counter(v, "os_mremap", &calls[3]);
  d->os_calls = calls[0] + calls[1] + calls[2] + calls[3];
  d->have_resident = report_read_resident(v->pid, &d->resident, &d->peak_resident);
  snapshot_learner(v, d);
  snapshot_counters(v, d, &t);
}

static void probe_message(pid_t pid, enum probe_status st, const struct live_view *v)
{
  switch (st) {
  case PROBE_OK:
    break;
  case PROBE_NO_PROCESS:
    fprintf(stderr, "hakmemctl: no process %d\n", (int)pid);
    break;
  case PROBE_DENIED:
    fprintf(stderr,
            "hakmemctl: cannot read process %d: permission denied (needs the same user and "
            "ptrace permission, see ptrace(2) / yama ptrace_scope)\n",
            (int)pid);
    break;
  case PROBE_NO_HAKMEM:
    fprintf(stderr, "hakmemctl: process %d does not run libhakmem (no %s* in /proc/%d/maps)\n",
            (int)pid, SONAME_PREFIX, (int)pid);
    break;
  case PROBE_NO_SYMBOL:
    fprintf(stderr,
            "hakmemctl: process %d: %s has no %s (a libhakmem too old for live stats, or "
            "its file cannot be opened)\n",
            (int)pid, v->library, HAKMEM_LIVE_SYMBOL);
    break;
  case PROBE_BAD_BLOCK:
    fprintf(stderr, "hakmemctl: process %d: live-stats block of version %u not understood "
            "(this hakmemctl reads version %d)\n",
            (int)pid, v->header.version, HAKMEM_LIVE_VERSION);
    break;
  case PROBE_READ_FAILED:
    fprintf(stderr, "hakmemctl: process %d: reading its memory failed: %s\n", (int)pid,
            strerror(errno));
    break;
  }
}

static void print_report(const struct report_data *d, bool json)
{
  static char out[1 << 16];
  struct report_buf b = { .buf = out, .size = sizeof out };
  if (json)
    report_json(&b, d);
  else
    report_text(&b, d);
  fputs(out, stdout);
  fflush(stdout);
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig)
{
  (void)sig;
  stop_requested = 1;
}

/* Sleeps s seconds, waking early on SIGINT/SIGTERM. */
static void pause_for(double s)
{
  struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
  while (!stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static bool parse_seconds(const char *s, double *out)
{
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < 0 || v > 86400)
    return false;
  *out = v;
  return true;
}

static bool parse_pid(const char *s, pid_t *out)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v <= 0 || v > 0x7fffffff)
    return false;
  *out = (pid_t)v;
  return true;
}

bool monitor_stats_wanted(int argc, char **argv)
{
  for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
    if (strcmp(argv[i], "--pid") == 0 || strncmp(argv[i], "--pid=", 6) == 0)
      return true;
  return false;
}

static void monitor_usage(void)
{
  fputs("usage: hakmemctl stats --pid PID [--watch SECONDS] [--count N] [--json]\n"
        "       hakmemctl top [--once] [--delay SECONDS] [--json]\n",
        stderr);
}

int monitor_stats(int argc, char **argv)
{
  pid_t pid = 0;
  double watch = 0;
  long count = -1;
  bool json = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--pid") == 0 && i + 1 < argc) {
      if (!parse_pid(argv[++i], &pid))
        goto bad;
    } else if (strncmp(a, "--pid=", 6) == 0) {
      if (!parse_pid(a + 6, &pid))
        goto bad;
    } else if (strcmp(a, "--watch") == 0 && i + 1 < argc) {
      if (!parse_seconds(argv[++i], &watch) || watch <= 0)
        goto bad;
    } else if (strcmp(a, "--count") == 0 && i + 1 < argc) {
      char *end;
      count = strtol(argv[++i], &end, 10);
      if (*end || count <= 0)
        goto bad;
    } else if (strcmp(a, "--json") == 0) {
      json = true;
    } else {
      goto bad;
    }
  }
  if (!pid)
    goto bad;
  signal(SIGINT, on_stop);
  signal(SIGTERM, on_stop);
  static struct live_view v;
  static struct report_data d;
  uint64_t prev_calls = 0;
  double prev_t = 0;
  for (long n = 0; !stop_requested; n++) {
    enum probe_status st = probe(pid, &v);
    if (st != PROBE_OK) {
      probe_message(pid, st, &v);
      /* The process ending while watched is how a watch ends. */
      return n > 0 && st == PROBE_NO_PROCESS ? 0 : 1;
    }
    snapshot(&v, &d);
    double t = now_s();
    if (n > 0 && t > prev_t)
      d.os_calls_per_s = (double)(d.os_calls - prev_calls) / (t - prev_t);
    prev_calls = d.os_calls;
    prev_t = t;
    if (n > 0 && !json)
      putchar('\n');
    print_report(&d, json);
    if (watch <= 0 || (count > 0 && n + 1 >= count))
      break;
    pause_for(watch);
  }
  return 0;
bad:
  monitor_usage();
  return 2;
}

/* ---- top ---- */

struct top_row {
  pid_t pid;
  char program[64];
  char mode[16];
  uint64_t resident, in_use, held, peak, calls;
  double calls_per_s;
  bool have_heap;
};

static int row_cmp(const void *a, const void *b)
{
  const struct top_row *x = a, *y = b;
  if (x->resident != y->resident)
    return x->resident < y->resident ? 1 : -1;
  return x->pid - y->pid;
}

struct top_scan {
  struct top_row *rows;
  size_t n, cap;
  unsigned unreadable;   /* processes whose maps we may not read */
};

/* Every process with libhakmem loaded that we may read. */
static void top_scan(struct top_scan *s)
{
  static struct live_view v;
  static struct report_data d;
  s->n = 0;
  s->unreadable = 0;
  DIR *dir = opendir("/proc");
  if (!dir)
    return;
  struct dirent *de;
  while ((de = readdir(dir))) {
    pid_t pid;
    if (!isdigit((unsigned char)de->d_name[0]) || !parse_pid(de->d_name, &pid) ||
        pid == getpid())
      continue;
    enum probe_status st = probe(pid, &v);
    if (st == PROBE_DENIED) {
      s->unreadable++;
      continue;
    }
    if (st != PROBE_OK)
      continue;
    snapshot(&v, &d);
    if (s->n == s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 64;
      struct top_row *r = realloc(s->rows, cap * sizeof *r);
      if (!r)
        break;
      s->rows = r;
      s->cap = cap;
    }
    struct top_row *r = &s->rows[s->n++];
    *r = (struct top_row){ .pid = pid, .resident = d.resident, .in_use = report_in_use(&d),
                           .held = report_held(&d), .peak = d.peak_resident,
                           .calls = d.os_calls, .calls_per_s = -1, .have_heap = d.have_heap };
    snprintf(r->program, sizeof r->program, "%s", d.program);
    snprintf(r->mode, sizeof r->mode, "%s", d.mode[0] ? d.mode : "?");
  }
  closedir(dir);
}

static void bytes_cell(char *out, size_t size, uint64_t v, bool known)
{
  if (!known) {
    snprintf(out, size, "-");
    return;
  }
  struct report_buf b = { .buf = out, .size = size };
  out[0] = '\0';
  report_put_bytes(&b, v);
}

static void top_print(const struct top_scan *s, bool json, bool clear)
{
  if (json) {
    for (size_t i = 0; i < s->n; i++) {
      const struct top_row *r = &s->rows[i];
      char buf[256];
      struct report_buf b = { .buf = buf, .size = sizeof buf };
      buf[0] = '\0';
      report_put_json_string(&b, r->program);
      printf("{\"pid\":%d,\"program\":%s,\"mode\":\"%s\",\"resident\":%llu,", (int)r->pid, buf,
             r->mode, (unsigned long long)r->resident);
      if (r->have_heap)
        printf("\"in_use\":%llu,\"held\":%llu,", (unsigned long long)r->in_use,
               (unsigned long long)r->held);
      printf("\"peak_resident\":%llu,\"os_calls\":%llu", (unsigned long long)r->peak,
             (unsigned long long)r->calls);
      if (r->calls_per_s >= 0)
        printf(",\"os_calls_per_s\":%.1f", r->calls_per_s);
      printf("}\n");
    }
    fflush(stdout);
    return;
  }
  if (clear)
    fputs("\033[H\033[2J", stdout);
  char when[32];
  time_t now = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
  printf("hakmemctl top - %s - %zu process%s on libhakmem", when, s->n, s->n == 1 ? "" : "es");
  if (s->unreadable)
    printf(" (%u other%s not readable: another user's, see ptrace(2))", s->unreadable,
           s->unreadable == 1 ? "" : "s");
  printf("\n%7s  %-16s %-9s %10s %10s %10s %10s %10s\n", "PID", "PROGRAM", "MODE", "RESIDENT",
         "IN USE", "HELD", "PEAK", "OS CALLS/S");
  for (size_t i = 0; i < s->n; i++) {
    const struct top_row *r = &s->rows[i];
    char res[24], use[24], held[24], peak[24], rate[24];
    bytes_cell(res, sizeof res, r->resident, true);
    bytes_cell(use, sizeof use, r->in_use, r->have_heap);
    bytes_cell(held, sizeof held, r->held, r->have_heap);
    bytes_cell(peak, sizeof peak, r->peak, true);
    if (r->calls_per_s >= 0)
      snprintf(rate, sizeof rate, "%.0f", r->calls_per_s);
    else
      snprintf(rate, sizeof rate, "-");
    printf("%7d  %-16.16s %-9s %10s %10s %10s %10s %10s\n", (int)r->pid, r->program, r->mode,
           res, use, held, peak, rate);
  }
  fflush(stdout);
}

int monitor_top(int argc, char **argv)
{
  bool once = false, json = false;
  double delay = 2;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--once") == 0)
      once = true;
    else if (strcmp(argv[i], "--json") == 0)
      json = true;
    else if ((strcmp(argv[i], "--delay") == 0 || strcmp(argv[i], "-d") == 0) && i + 1 < argc) {
      if (!parse_seconds(argv[++i], &delay))
        goto bad;
    } else {
      goto bad;
    }
  }
  if (once && delay > 1)
    delay = 1;
  signal(SIGINT, on_stop);
  signal(SIGTERM, on_stop);
  struct top_scan prev = { 0 }, cur = { 0 };
  double prev_t = 0;
  bool clear = !once && !json && isatty(STDOUT_FILENO);
  top_scan(&prev);
  prev_t = now_s();
  /* Rates need two samples: the first table comes after one delay. */
  while (!stop_requested) {
    if (delay > 0)
      pause_for(delay);
    if (stop_requested)
      break;
    top_scan(&cur);
    double t = now_s();
    for (size_t i = 0; i < cur.n; i++)
      for (size_t j = 0; j < prev.n; j++)
        if (prev.rows[j].pid == cur.rows[i].pid && t > prev_t && delay > 0) {
          cur.rows[i].calls_per_s = (double)(cur.rows[i].calls - prev.rows[j].calls) / (t - prev_t);
          break;
        }
    qsort(cur.rows, cur.n, sizeof cur.rows[0], row_cmp);
    top_print(&cur, json, clear);
    if (once)
      break;
    struct top_scan tmp = prev;
    prev = cur;
    cur = tmp;
    prev_t = t;
  }
  free(prev.rows);
  free(cur.rows);
  return 0;
bad:
  monitor_usage();
  return 2;
}
