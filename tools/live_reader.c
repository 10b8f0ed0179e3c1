/* Reading a running process's live-stats block from outside: finding the
 * library and its symbol, reading the block, its entries and the heap
 * they describe.  See live_reader.h. */
#include "live_reader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* The library's file names start with this build's soname up to ".so"
 * (HAKMEM_SONAME from configure: "libhakmem.so" of "libhakmem.so.0"), so
 * that a process running another version of the library is found too: its
 * block is read by its entries' names (live_stats.h). */
static int library_stem_len(void)
{
  const char *so = strstr(HAKMEM_SONAME, ".so");
  return (int)(so ? (size_t)(so + 3 - HAKMEM_SONAME) : strlen(HAKMEM_SONAME));
}

bool live_is_library_name(const char *name)
{
  return strncmp(name, HAKMEM_SONAME, (size_t)library_stem_len()) == 0;
}

/* Reads len bytes at addr of process pid; 0 or an errno value. */
int live_read_mem(pid_t pid, uint64_t addr, void *buf, size_t len)
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

/* Why the maps of process pid read empty: it has exited or is exiting (a
 * zombie its parent has not reaped yet still has its /proc directory,
 * and its maps read empty from the moment its memory is released, after
 * the kernel's PF_EXITING flag is set), it is a kernel thread (PF_KTHREAD:
 * no memory of its own), or the kernel refused to show them.  The flags
 * are the ninth field of /proc/PID/stat. */
static enum probe_status empty_maps_status(pid_t pid)
{
  char path[64], stat[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno_status(errno);
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0)
    return PROBE_NO_PROCESS;
  stat[n] = '\0';
  /* The state follows the name, which may itself hold ") "; the flags
   * are the sixth field after the state. */
  const char *end = strrchr(stat, ')');
  char state;
  unsigned long flags;
  if (!end || sscanf(end + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2)
    return PROBE_DENIED;
  if (state == 'Z' || state == 'X' || (flags & 0x4 /* PF_EXITING */))
    return PROBE_NO_PROCESS;
  if (flags & 0x00200000 /* PF_KTHREAD */)
    return PROBE_NO_HAKMEM;
  return PROBE_DENIED;
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
    if (!base || !live_is_library_name(base + 1) || off != 0)
      continue;
    snprintf(path, size, "%s", name);
    *start = lo;
    st = PROBE_OK;
    break;
  }
  int err = ferror(f) ? errno : 0;
  fclose(f);
  if (st != PROBE_OK && (err || !any))
    return err ? errno_status(err) : empty_maps_status(pid);
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

/* A reading of the block that failed, or found no block, may have
 * crossed an execve that replaced the memory the maps described: then
 * what the maps say now is the answer (no libhakmem, or a library not
 * yet started), not the failure. */
static enum probe_status probe_failed(pid_t pid, const struct live_view *v, uint64_t start,
                                      enum probe_status st)
{
  char now[sizeof v->library];
  uint64_t now_start;
  enum probe_status again = find_library(pid, now, sizeof now, &now_start);
  if (again != PROBE_OK)
    return again;
  if (now_start != start || strcmp(now, v->library) != 0)
    return PROBE_NOT_STARTED;
  return st;
}

/* Finds and reads the block of process pid into v. */
enum probe_status live_probe(pid_t pid, struct live_view *v)
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
  int err = live_read_mem(pid, v->block, &v->header, sizeof v->header);
  if (err)
    return probe_failed(pid, v, start, errno_status(err));
  if (v->header.magic != HAKMEM_LIVE_MAGIC || v->header.version != HAKMEM_LIVE_VERSION ||
      v->header.entry_size < sizeof(struct live_entry) || v->header.entry_size > 4096 ||
      v->header.header_size < sizeof(struct live_header) || v->header.header_size > 4096)
    /* Without the magic, the library's file is mapped but its data
     * segment not yet mapped over it: the loader is at work. */
    return probe_failed(pid, v, start,
                        v->header.magic == HAKMEM_LIVE_MAGIC ? PROBE_BAD_BLOCK : PROBE_NOT_STARTED);
  unsigned n = v->header.entry_count;
  if (n > HAKMEM_LIVE_MAX_ENTRIES)
    n = HAKMEM_LIVE_MAX_ENTRIES;
  for (unsigned i = 0; i < n; i++) {
    err = live_read_mem(pid, v->block + v->header.header_size + (uint64_t)i * v->header.entry_size,
                   &v->entries[i], sizeof v->entries[i]);
    if (err)
      return probe_failed(pid, v, start, errno_status(err));
    v->entries[i].name[HAKMEM_LIVE_NAME_MAX - 1] = '\0';
  }
  /* Until the dynamic loader has relocated the library (during an execve
   * of a program that loads it), the entries hold the link-time
   * addresses of what they point at, which lie below where the library
   * is mapped; a reading then would show every counter absent. */
  for (unsigned i = 0; i < n; i++)
    if ((v->entries[i].kind == LIVE_U64 || v->entries[i].kind == LIVE_I32 ||
         v->entries[i].kind == LIVE_TEXT) && v->entries[i].value < start)
      return PROBE_NOT_STARTED;
  v->nentries = n;
  v->header.library_version[sizeof v->header.library_version - 1] = '\0';
  return PROBE_OK;
}

bool live_block_unchanged(const struct live_view *v)
{
  struct live_header now;
  return live_read_mem(v->pid, v->block, &now, sizeof now) == 0 &&
         now.magic == v->header.magic && now.version == v->header.version &&
         now.entry_count == v->header.entry_count;
}

const struct live_entry *live_entry_find(const struct live_view *v, const char *name,
                                      uint32_t kind)
{
  for (unsigned i = 0; i < v->nentries; i++)
    if (v->entries[i].kind == kind && strcmp(v->entries[i].name, name) == 0)
      return &v->entries[i];
  return NULL;
}

bool live_constant(const struct live_view *v, const char *name, uint64_t *out)
{
  const struct live_entry *e = live_entry_find(v, name, LIVE_CONST);
  if (e)
    *out = e->value;
  return e != NULL;
}

/* A counter (the sum of its words); false if absent or unreadable. */
bool live_counter(const struct live_view *v, const char *name, uint64_t *out)
{
  const struct live_entry *e = live_entry_find(v, name, LIVE_U64);
  if (!e || e->count == 0 || e->count > 4096)
    return false;
  uint64_t words[4096];
  if (live_read_mem(v->pid, e->value, words, e->count * sizeof words[0]))
    return false;
  *out = 0;
  for (unsigned i = 0; i < e->count; i++)
    *out += words[i];
  return true;
}

bool live_counter_i32(const struct live_view *v, const char *name, int32_t *out)
{
  const struct live_entry *e = live_entry_find(v, name, LIVE_I32);
  return e && e->count >= 1 && live_read_mem(v->pid, e->value, out, sizeof *out) == 0;
}

void live_text(const struct live_view *v, const char *name, char *out, size_t size)
{
  out[0] = '\0';
  const struct live_entry *e = live_entry_find(v, name, LIVE_TEXT);
  if (!e || !size)
    return;
  size_t n = e->count < size ? e->count : size;
  if (live_read_mem(v->pid, e->value, out, n) == 0)
    out[n - 1] = '\0';
  else
    out[0] = '\0';
}

/* ---- the heap walk ---- */

struct layout {
  uint64_t l1_addr, l1_count, empty_leaf, l2_entries, tag;
  uint64_t ss_magic, ss_size_max, ss_off_magic, ss_off_nslabs, ss_off_empty, ss_header;
  uint64_t slab_size, off_used, off_carved, off_cls, off_state, off_allocs;
  uint64_t width_used, width_carved; /* bytes: 2 or 4 */
  uint64_t st_unused, st_header, st_tail;
  uint64_t lg_magic, lg_off_magic, lg_off_size, lg_off_state, lg_cached;
};

static bool layout_load(const struct live_view *v, struct layout *L)
{
  const struct live_entry *l1 = live_entry_find(v, "registry.l1", LIVE_U64);
  if (!l1)
    return false;
  L->l1_addr = l1->value;
  L->l1_count = l1->count;
  /* The widths came with the first library whose counts are not all 16-bit;
   * a library without them has 16-bit used and carved. */
  if (!live_constant(v, "slab.width_used", &L->width_used))
    L->width_used = 2;
  if (!live_constant(v, "slab.width_carved", &L->width_carved))
    L->width_carved = 2;
  return (L->width_used == 2 || L->width_used == 4) &&
         (L->width_carved == 2 || L->width_carved == 4) &&
         live_constant(v, "registry.empty_leaf", &L->empty_leaf) &&
         live_constant(v, "registry.l2_entries", &L->l2_entries) &&
         live_constant(v, "registry.tag_superslab", &L->tag) &&
         live_constant(v, "superslab.magic", &L->ss_magic) &&
         live_constant(v, "superslab.size_max", &L->ss_size_max) &&
         live_constant(v, "superslab.off_magic", &L->ss_off_magic) &&
         live_constant(v, "superslab.off_nslabs", &L->ss_off_nslabs) &&
         live_constant(v, "superslab.off_empty_kept", &L->ss_off_empty) &&
         live_constant(v, "superslab.header_size", &L->ss_header) &&
         live_constant(v, "slab.size", &L->slab_size) &&
         live_constant(v, "slab.off_used", &L->off_used) &&
         live_constant(v, "slab.off_carved", &L->off_carved) &&
         live_constant(v, "slab.off_cls", &L->off_cls) &&
         live_constant(v, "slab.off_state", &L->off_state) &&
         live_constant(v, "slab.off_allocs", &L->off_allocs) &&
         live_constant(v, "slab.state_unused", &L->st_unused) &&
         live_constant(v, "slab.state_header", &L->st_header) &&
         live_constant(v, "slab.state_span_tail", &L->st_tail) &&
         live_constant(v, "large.magic", &L->lg_magic) &&
         live_constant(v, "large.off_magic", &L->lg_off_magic) &&
         live_constant(v, "large.off_map_size", &L->lg_off_size) &&
         live_constant(v, "large.off_state", &L->lg_off_state) &&
         live_constant(v, "large.state_cached", &L->lg_cached) &&
         L->l1_count > 0 && L->l1_count <= (1u << 20) && L->l2_entries > 0 &&
         L->l2_entries <= (1u << 20) && L->slab_size >= 16 && L->ss_header <= (1u << 20) &&
         L->off_used + L->width_used <= L->slab_size &&
         L->off_carved + L->width_carved <= L->slab_size &&
         L->off_cls < L->slab_size && L->off_state < L->slab_size &&
         L->off_allocs + 8 <= L->slab_size && L->ss_off_magic + 8 <= L->ss_header &&
         L->ss_off_nslabs + 4 <= L->ss_header && L->ss_off_empty < L->ss_header &&
         L->lg_off_magic + 8 <= 4096 && L->lg_off_size + 8 <= 4096 && L->lg_off_state + 4 <= 4096;
}


static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t get_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get_count(const unsigned char *p, uint64_t width)
{
  return width == 4 ? get_u32(p) : get_u16(p);
}

/* One SuperSlab's slabs, added to the totals and the per-class rows. */
static void walk_superslab(pid_t pid, const struct layout *L, uint64_t base, unsigned char *hdr,
                           const uint32_t *block_size, unsigned nclasses,
                           struct live_heap *t, struct report_data *d)
{
  if (live_read_mem(pid, base, hdr, L->ss_header) || get_u64(hdr + L->ss_off_magic) != L->ss_magic)
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
    uint64_t used = get_count(s + L->off_used, L->width_used);
    uint64_t carved = get_count(s + L->off_carved, L->width_carved);
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
bool live_walk_heap(const struct live_view *v, struct live_heap *t, struct report_data *d)
{
  struct layout L;
  memset(t, 0, sizeof *t);
  if (!layout_load(v, &L))
    return false;
  const struct live_entry *cs = live_entry_find(v, "class.block_size", LIVE_I32);
  if (!cs || cs->count == 0 || cs->count > 256)
    return false;
  uint32_t block_size[256];
  if (live_read_mem(v->pid, cs->value, block_size, cs->count * sizeof block_size[0]))
    return false;
  unsigned nclasses = cs->count;
  d->nclasses = nclasses < REPORT_CLASS_MAX ? nclasses : REPORT_CLASS_MAX;
  for (unsigned c = 0; c < d->nclasses; c++)
    d->classes[c].block_size = block_size[c];

  uint64_t *l1 = malloc(L.l1_count * 8);
  uint64_t *leaf = malloc(L.l2_entries * 8);
  unsigned char *hdr = malloc(L.ss_header);
  bool ok = l1 && leaf && hdr && live_read_mem(v->pid, L.l1_addr, l1, L.l1_count * 8) == 0;
  for (uint64_t i = 0; ok && i < L.l1_count; i++) {
    if (!l1[i] || live_read_mem(v->pid, L.empty_leaf + l1[i], leaf, L.l2_entries * 8))
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
        if (live_read_mem(v->pid, e, lh, need) == 0 && get_u64(lh + L.lg_off_magic) == L.lg_magic &&
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

void live_probe_message(pid_t pid, enum probe_status st, const struct live_view *v)
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
    fprintf(stderr, "hakmemctl: process %d does not run libhakmem (no %.*s* in /proc/%d/maps)\n",
            (int)pid, library_stem_len(), HAKMEM_SONAME, (int)pid);
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
  case PROBE_NOT_STARTED:
    fprintf(stderr, "hakmemctl: process %d: %s is loaded but not yet started (the process "
            "is starting a program)\n", (int)pid, v->library);
    break;
  }
}
