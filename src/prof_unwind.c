/* The heap profiler's stack walk with cached CFI rules; see prof_unwind.h. */
#include "prof_unwind.h"
#include "os.h"

#include <link.h>
#include <string.h>
#include <ucontext.h>

#if defined(__x86_64__)

/* DW_EH_PE encodings the .eh_frame_hdr search table uses. */
#define EH_PE_OMIT 0xff
#define EH_PE_DATAREL_SDATA4 0x3b
/* DWARF register numbers on x86-64. */
#define DWARF_RBP 6
#define DWARF_RSP 7
#define DWARF_RA 16

/* A code address's rule: the caller's stack pointer (the canonical frame
 * address, CFA) is the stack or frame pointer plus cfa_off; the return
 * address is saved at CFA + ra_off; the caller's rbp is rbp itself or
 * saved at CFA + bp_off. */
enum rule_kind {
  RULE_WALK = 1,   /* the plain kind above */
  RULE_END,        /* no CFI, or the return address undefined: the stack's end */
  RULE_SIGNAL,     /* the kernel's signal return: the frame is a ucontext */
  RULE_OTHER,      /* described otherwise: backtrace(3) must walk it */
};
enum bp_kind { BP_SAME, BP_SAVED, BP_UNKNOWN };

struct rule {
  int32_t cfa_off;
  int16_t ra_off;
  int16_t bp_off;
  uint8_t kind;
  uint8_t cfa_is_bp;
  uint8_t bp;
};

/* Rule table: open addressing on the looked-up address, never emptied;
 * a full table keeps no more rules (each walk then computes them). */
#define RULE_SLOTS 8192u
#define RULE_PROBES 16u
struct rule_slot {
  _Atomic uintptr_t pc;   /* 0: empty; published after r */
  struct rule r;
};
static struct rule_slot *rules;
static atomic_flag rules_busy = ATOMIC_FLAG_INIT;

static uint32_t rule_hash(uintptr_t pc)
{
  return (uint32_t)((pc * 0x9e3779b97f4a7c15ull) >> 40) & (RULE_SLOTS - 1);
}

/* ---- reading CFI ---- */

struct cursor {
  const uint8_t *p, *end;
  bool bad;
};

static uint64_t read_uleb(struct cursor *c)
{
  uint64_t v = 0;
  unsigned shift = 0;
  for (;;) {
    if (c->p >= c->end || shift > 63) {
      c->bad = true;
      return 0;
    }
    uint8_t b = *c->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80))
      return v;
  }
}

static int64_t read_sleb(struct cursor *c)
{
  int64_t v = 0;
  unsigned shift = 0;
  uint8_t b;
  do {
    if (c->p >= c->end || shift > 63) {
      c->bad = true;
      return 0;
    }
    b = *c->p++;
    v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
    shift += 7;
  } while (b & 0x80);
  if (shift < 64 && (b & 0x40))
    v |= -((int64_t)1 << shift);
  return v;
}

static uint64_t read_fixed(struct cursor *c, unsigned n)
{
  if ((size_t)(c->end - c->p) < n) {
    c->bad = true;
    return 0;
  }
  uint64_t v = 0;
  memcpy(&v, c->p, n);   /* little-endian */
  c->p += n;
  return v;
}

/* Reads a value in DW_EH_PE encoding enc, its format only: what it is
 * relative to (the application bits) is left to the caller, which needs
 * no address decoded this way (the FDE's start comes from the search
 * table) but the FDE's length, which is a plain number. */
static uint64_t read_encoded(struct cursor *c, uint8_t enc)
{
  if (enc == EH_PE_OMIT)
    return 0;
  if ((enc & 0x70) == 0x50)   /* DW_EH_PE_aligned: not produced by GCC here */
    c->bad = true;
  switch (enc & 0x0f) {
  case 0x00: return read_fixed(c, 8);                   /* absptr */
  case 0x01: return read_uleb(c);                       /* uleb128 */
  case 0x09: return (uint64_t)read_sleb(c);             /* sleb128 */
  case 0x02: return read_fixed(c, 2);
  case 0x0a: return (uint64_t)(int64_t)(int16_t)read_fixed(c, 2);
  case 0x03: return read_fixed(c, 4);
  case 0x0b: return (uint64_t)(int64_t)(int32_t)read_fixed(c, 4);
  case 0x04: case 0x0c: return read_fixed(c, 8);
  default: c->bad = true; return 0;
  }
}

/* ---- finding the FDE: the object's .eh_frame_hdr search table ---- */

/* What fde_search_object looks for and finds. */
struct fde_search {
  uintptr_t pc;
  const uint8_t *fde;    /* the FDE whose range may hold pc; NULL: none */
  uintptr_t func;        /* the start of the code it describes */
  bool no_table;         /* pc's object has FDEs but no table to search */
};

/* dl_iterate_phdr callback: in the object whose loaded segment holds
 * q->pc, the search table's last entry starting at or below pc, by
 * binary search (as libgcc's _Unwind_Find_FDE does, without loading
 * libgcc).  Every linker GCC uses writes the table as pairs of 4-byte
 * offsets from the header (DW_EH_PE_datarel | DW_EH_PE_sdata4); another
 * layout sets no_table, for backtrace(3), which also searches .eh_frame
 * itself. */
static int fde_search_object(struct dl_phdr_info *info, size_t size, void *arg)
{
  (void)size;
  struct fde_search *q = arg;
  const ElfW(Phdr) *eh = NULL;
  bool inside = false;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && q->pc - (info->dlpi_addr + ph->p_vaddr) < ph->p_memsz)
      inside = true;
    else if (ph->p_type == PT_GNU_EH_FRAME)
      eh = ph;
  }
  if (!inside)
    return 0;
  if (!eh)
    return 1;
  const uint8_t *hdr = (const uint8_t *)(info->dlpi_addr + eh->p_vaddr);
  struct cursor c = { hdr, hdr + eh->p_memsz, false };
  uint8_t version = (uint8_t)read_fixed(&c, 1), ptr_enc = (uint8_t)read_fixed(&c, 1);
  uint8_t count_enc = (uint8_t)read_fixed(&c, 1), table_enc = (uint8_t)read_fixed(&c, 1);
  read_encoded(&c, ptr_enc);
  /* The count is a plain number (udata4 in practice). */
  uint64_t count = (count_enc & 0x70) == 0 ? read_encoded(&c, count_enc) : 0;
  if (c.bad || version != 1 || table_enc != EH_PE_DATAREL_SDATA4 || count_enc == EH_PE_OMIT ||
      (count_enc & 0x70) != 0 || count > (uint64_t)(c.end - c.p) / 8) {
    q->no_table = true;
    return 1;
  }
  const uint8_t *table = c.p;
  intptr_t want = (intptr_t)(q->pc - (uintptr_t)hdr);
  /* The last entry whose start is at or below pc. */
  uint64_t lo = 0, hi = count;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    int32_t start;
    memcpy(&start, table + mid * 8, 4);
    if ((intptr_t)start <= want)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return 1;
  int32_t start, fde;
  memcpy(&start, table + (lo - 1) * 8, 4);
  memcpy(&fde, table + (lo - 1) * 8 + 4, 4);
  q->func = (uintptr_t)hdr + (uintptr_t)(intptr_t)start;
  q->fde = hdr + (intptr_t)fde;
  return 1;
}

/* The rules the walk tracks, as a CFA program builds them. */
struct cfa_state {
  uint8_t cfa_reg;    /* DWARF_RSP, DWARF_RBP, or another (unsupported) */
  bool cfa_expr;      /* the CFA is an expression (unsupported) */
  int64_t cfa_off;
  uint8_t bp;         /* enum bp_kind */
  int64_t bp_off;
  bool ra_saved;      /* at CFA + ra_off */
  bool ra_undefined;  /* the outermost frame */
  bool ra_other;      /* any other rule for the return address */
  int64_t ra_off;
};

#define STATE_STACK 8

/* Sets register reg's rule to "saved at CFA + off". */
static void set_offset(struct cfa_state *s, uint64_t reg, int64_t off)
{
  if (reg == DWARF_RBP) {
    s->bp = BP_SAVED;
    s->bp_off = off;
  } else if (reg == DWARF_RA) {
    s->ra_saved = true;
    s->ra_undefined = s->ra_other = false;
    s->ra_off = off;
  }
}

/* Any other rule (register, expression, value) for register reg. */
static void set_other(struct cfa_state *s, uint64_t reg)
{
  if (reg == DWARF_RBP)
    s->bp = BP_UNKNOWN;
  else if (reg == DWARF_RA)
    s->ra_other = true, s->ra_saved = s->ra_undefined = false;
}

/* Runs the CFA program in c up to the row holding code offset target
 * (from the function's start); init: the CIE's rules, for DW_CFA_restore
 * (NULL while running the CIE's own program).  False if the program uses
 * an operation this reader does not know. */
static bool run_cfa(struct cursor *c, struct cfa_state *s, const struct cfa_state *init,
                    uint64_t code_align, int64_t data_align, uint64_t target)
{
  struct cfa_state saved[STATE_STACK];
  unsigned depth = 0;
  uint64_t loc = 0;
  while (c->p < c->end && !c->bad) {
    uint8_t op = *c->p++;
    uint64_t reg, delta = 0;
    switch (op >> 6) {
    case 1:   /* DW_CFA_advance_loc */
      delta = (op & 0x3f) * code_align;
      break;
    case 2:   /* DW_CFA_offset */
      set_offset(s, op & 0x3f, (int64_t)read_uleb(c) * data_align);
      continue;
    case 3:   /* DW_CFA_restore */
      if (!init)
        return false;
      reg = op & 0x3f;
      if (reg == DWARF_RBP)
        s->bp = init->bp, s->bp_off = init->bp_off;
      else if (reg == DWARF_RA)
        s->ra_saved = init->ra_saved, s->ra_undefined = init->ra_undefined,
        s->ra_other = init->ra_other, s->ra_off = init->ra_off;
      continue;
    default:
      switch (op) {
      case 0x00: continue;                                         /* nop */
      case 0x02: delta = read_fixed(c, 1) * code_align; break;     /* advance_loc1 */
      case 0x03: delta = read_fixed(c, 2) * code_align; break;     /* advance_loc2 */
      case 0x04: delta = read_fixed(c, 4) * code_align; break;     /* advance_loc4 */
      case 0x05:                                                   /* offset_extended */
        reg = read_uleb(c);
        set_offset(s, reg, (int64_t)read_uleb(c) * data_align);
        continue;
      case 0x06:                                                   /* restore_extended */
        reg = read_uleb(c);
        if (!init)
          return false;
        if (reg == DWARF_RBP)
          s->bp = init->bp, s->bp_off = init->bp_off;
        else if (reg == DWARF_RA)
          s->ra_saved = init->ra_saved, s->ra_undefined = init->ra_undefined,
          s->ra_other = init->ra_other, s->ra_off = init->ra_off;
        continue;
      case 0x07:                                                   /* undefined */
        reg = read_uleb(c);
        if (reg == DWARF_RA)
          s->ra_undefined = true, s->ra_saved = s->ra_other = false;
        else if (reg == DWARF_RBP)
          s->bp = BP_UNKNOWN;
        continue;
      case 0x08:                                                   /* same_value */
        reg = read_uleb(c);
        if (reg == DWARF_RBP)
          s->bp = BP_SAME;
        else if (reg == DWARF_RA)
          set_other(s, reg);
        continue;
      case 0x09:                                                   /* register */
        reg = read_uleb(c);
        read_uleb(c);
        set_other(s, reg);
        continue;
      case 0x0a:                                                   /* remember_state */
        if (depth == STATE_STACK)
          return false;
        saved[depth++] = *s;
        continue;
      case 0x0b:                                                   /* restore_state */
        if (depth == 0)
          return false;
        *s = saved[--depth];
        continue;
      case 0x0c:                                                   /* def_cfa */
        s->cfa_reg = (uint8_t)read_uleb(c);
        s->cfa_off = (int64_t)read_uleb(c);
        s->cfa_expr = false;
        continue;
      case 0x0d:                                                   /* def_cfa_register */
        s->cfa_reg = (uint8_t)read_uleb(c);
        s->cfa_expr = false;
        continue;
      case 0x0e:                                                   /* def_cfa_offset */
        s->cfa_off = (int64_t)read_uleb(c);
        continue;
      case 0x0f:                                                   /* def_cfa_expression */
        c->p += read_uleb(c);
        s->cfa_expr = true;
        continue;
      case 0x10:                                                   /* expression */
      case 0x16:                                                   /* val_expression */
        reg = read_uleb(c);
        c->p += read_uleb(c);
        set_other(s, reg);
        continue;
      case 0x11:                                                   /* offset_extended_sf */
        reg = read_uleb(c);
        set_offset(s, reg, read_sleb(c) * data_align);
        continue;
      case 0x12:                                                   /* def_cfa_sf */
        s->cfa_reg = (uint8_t)read_uleb(c);
        s->cfa_off = read_sleb(c) * data_align;
        s->cfa_expr = false;
        continue;
      case 0x13:                                                   /* def_cfa_offset_sf */
        s->cfa_off = read_sleb(c) * data_align;
        continue;
      case 0x14:                                                   /* val_offset */
        reg = read_uleb(c);
        read_uleb(c);
        set_other(s, reg);
        continue;
      case 0x15:                                                   /* val_offset_sf */
        reg = read_uleb(c);
        read_sleb(c);
        set_other(s, reg);
        continue;
      case 0x2e:                                                   /* GNU_args_size */
        read_uleb(c);
        continue;
      case 0x2f:                                                   /* GNU_negative_offset_extended */
        reg = read_uleb(c);
        set_offset(s, reg, -(int64_t)read_uleb(c) * data_align);
        continue;
      default:
        return false;
      }
    }
    /* An advance: the rows so far cover [.., loc + delta). */
    loc += delta;
    if (loc > target)
      return true;
  }
  return !c->bad && c->p <= c->end;
}

/* The rule at code address pc (for a return address: the call's last
 * byte, as libgcc looks it up), from the CFI. */
static struct rule rule_compute(uintptr_t pc)
{
  struct rule r = { .kind = RULE_OTHER };
  struct fde_search q = { .pc = pc };
  dl_iterate_phdr(fde_search_object, &q);
  if (q.no_table)
    return r;
  const uint8_t *fde = q.fde;
  if (!fde) {
    r.kind = RULE_END;
    return r;
  }
  uint32_t fde_len, cie_ptr, cie_len;
  memcpy(&fde_len, fde, 4);
  memcpy(&cie_ptr, fde + 4, 4);
  if (fde_len == 0xffffffffu || fde_len < 8)
    return r;
  const uint8_t *cie = fde + 4 - cie_ptr;
  memcpy(&cie_len, cie, 4);
  if (cie_len == 0xffffffffu || cie_len < 8)
    return r;

  /* The CIE: version, augmentation, alignment factors, encodings. */
  struct cursor c = { cie + 8, cie + 4 + cie_len, false };
  uint8_t version = (uint8_t)read_fixed(&c, 1);
  const char *aug = (const char *)c.p;
  size_t aug_n = strnlen(aug, (size_t)(c.end - c.p));
  c.p += aug_n + 1;
  if (aug[0] && aug[0] != 'z')
    return r;
  uint64_t code_align = read_uleb(&c);
  int64_t data_align = read_sleb(&c);
  uint64_t ra_reg = version == 1 ? read_fixed(&c, 1) : read_uleb(&c);
  uint8_t fde_enc = 0;
  bool signal_frame = false;
  if (aug[0] == 'z') {
    uint64_t n = read_uleb(&c);
    struct cursor a = { c.p, c.p + n, false };
    if (a.end > c.end)
      return r;
    for (size_t i = 1; i < aug_n; i++) {
      switch (aug[i]) {
      case 'R': fde_enc = (uint8_t)read_fixed(&a, 1); break;
      case 'L': read_fixed(&a, 1); break;
      case 'P': read_encoded(&a, (uint8_t)read_fixed(&a, 1)); break;
      case 'S': signal_frame = true; break;
      default: return r;
      }
    }
    if (a.bad)
      return r;
    c.p += n;
  }
  if (c.bad || ra_reg != DWARF_RA)
    return r;
  struct cfa_state init = { .cfa_reg = DWARF_RSP, .bp = BP_SAME };
  if (!run_cfa(&c, &init, NULL, code_align, data_align, UINT64_MAX))
    return r;

  /* The FDE: its pc_begin (the table gave it decoded) and the length of
   * the code it covers, which may end below pc (code without CFI between
   * two functions: no frame to walk, as for libgcc); its augmentation
   * data is skipped, then its program runs up to pc. */
  struct cursor f = { fde + 8, fde + 4 + fde_len, false };
  read_encoded(&f, fde_enc);
  uint64_t range = read_encoded(&f, fde_enc & 0x0f);
  if (aug[0] == 'z')
    f.p += read_uleb(&f);
  if (f.bad || f.p > f.end)
    return r;
  if (pc - q.func >= range) {
    r.kind = RULE_END;
    return r;
  }
  /* The kernel's signal return (glibc's __restore_rt, CIE augmentation
   * 'S'), recognised as libgcc does by its code, mov $15, %rax and
   * syscall (rt_sigreturn), at the return address, pc + 1: the
   * interrupted registers are in the ucontext at the stack pointer. */
  if (signal_frame) {
    static const uint8_t rt_sigreturn[9] = { 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05 };
    if (pc + 1 - q.func < range && range - (pc + 1 - q.func) >= sizeof rt_sigreturn &&
        memcmp((const void *)(pc + 1), rt_sigreturn, sizeof rt_sigreturn) == 0)
      r.kind = RULE_SIGNAL;
    return r;
  }
  struct cfa_state s = init;
  if (!run_cfa(&f, &s, &init, code_align, data_align, pc - q.func))
    return r;

  if (s.ra_undefined) {
    r.kind = RULE_END;
    return r;
  }
  if (s.cfa_expr || (s.cfa_reg != DWARF_RSP && s.cfa_reg != DWARF_RBP) || !s.ra_saved ||
      s.cfa_off < INT32_MIN || s.cfa_off > INT32_MAX || s.ra_off < INT16_MIN || s.ra_off > INT16_MAX ||
      (s.bp == BP_SAVED && (s.bp_off < INT16_MIN || s.bp_off > INT16_MAX)))
    return r;
  r.kind = RULE_WALK;
  r.cfa_is_bp = s.cfa_reg == DWARF_RBP;
  r.cfa_off = (int32_t)s.cfa_off;
  r.ra_off = (int16_t)s.ra_off;
  r.bp = s.bp;
  r.bp_off = s.bp == BP_SAVED ? (int16_t)s.bp_off : 0;
  return r;
}

/* The rule at pc: from the table, else computed and, if the table's flag
 * is free, kept. */
static struct rule rule_at(uintptr_t pc)
{
  uint32_t h = rule_hash(pc);
  for (uint32_t i = 0; i < RULE_PROBES; i++) {
    struct rule_slot *sl = &rules[(h + i) & (RULE_SLOTS - 1)];
    uintptr_t k = atomic_load_explicit(&sl->pc, memory_order_acquire);
    if (k == pc)
      return sl->r;
    if (k == 0)
      break;
  }
  struct rule r = rule_compute(pc);
  if (!atomic_flag_test_and_set_explicit(&rules_busy, memory_order_acquire)) {
    for (uint32_t i = 0; i < RULE_PROBES; i++) {
      struct rule_slot *sl = &rules[(h + i) & (RULE_SLOTS - 1)];
      uintptr_t k = atomic_load_explicit(&sl->pc, memory_order_relaxed);
      if (k == pc)
        break;
      if (k == 0) {
        sl->r = r;
        atomic_store_explicit(&sl->pc, pc, memory_order_release);
        break;
      }
    }
    atomic_flag_clear_explicit(&rules_busy, memory_order_release);
  }
  return r;
}

bool prof_unwind_start(void)
{
  rules = os_map_aligned(hak_align_up(RULE_SLOTS * sizeof *rules, HAK_PAGE_SIZE), HAK_PAGE_SIZE);
  return rules != NULL;
}

/* Frames larger than this are taken for a wrong rule, not followed. */
#define FRAME_MAX ((uintptr_t)1 << 30)

/* The thread's last walk from a frame (prof_unwind_from): where it
 * started and every stack word it read, in order (a return address, or a
 * saved rbp), so that a sample taken again from the same place finds its
 * stack by reading those words again, a load and a compare each, instead
 * of looking each frame's rule up (some 50 instructions a frame).  Given
 * the same start and the same words, the walk would compute the same
 * addresses and read the same words: the check reads only what the walk
 * would read, each address once every word before it matched, so it is as
 * safe as the walk.  A walk that reads more words than it keeps, or that
 * crosses a signal frame, is not kept (reads = 0).  The starting rbp
 * must match only if the walk computed a CFA from it: code built without
 * frame pointers holds anything in rbp, and most walks replace it by a
 * saved one before any frame needs it. */
#define MEMO_READS 16
struct walk_memo {
  uintptr_t ip, sp, bp;
  int max;                      /* frames the walk could take */
  int n;                        /* frames the walk gave */
  bool bp_used;                 /* a frame's CFA came from the starting bp */
  uint32_t reads;               /* words kept, 0: nothing */
  uint32_t is_frame;            /* bit i: word i is a return address */
  uintptr_t addr[MEMO_READS], value[MEMO_READS];
};
static __thread struct walk_memo walk_memo __attribute__((tls_model("initial-exec")));

/* Reads the word at addr for the walk, keeping it in m (NULL: not kept). */
static uintptr_t walk_read(struct walk_memo *m, uintptr_t addr, bool frame)
{
  uintptr_t v = *(const uintptr_t *)addr;
  if (m) {
    if (m->reads < MEMO_READS) {
      m->addr[m->reads] = addr;
      m->value[m->reads] = v;
      if (frame)
        m->is_frame |= 1u << m->reads;
    }
    /* One past the end marks an overflow: not kept. */
    if (m->reads <= MEMO_READS)
      m->reads++;
  }
  return v;
}

/* The walk from a frame at code address look (a return address less one,
 * or an interrupted instruction) with stack pointer sp and, if bp_known,
 * frame pointer bp; frames[0..n) are taken, up to max. */
static int walk_from(uintptr_t look, uintptr_t sp, uintptr_t bp, bool bp_known, void **frames, int n,
                     int max, struct walk_memo *m)
{
  bool bp_is_start = true;
  while (n < max) {
    struct rule r = rule_at(look);
    if (r.kind == RULE_END)
      break;
    if (r.kind == RULE_SIGNAL) {
      /* sp is the signal frame's (the handler returned into it): its
       * ucontext holds the interrupted frame's registers, and the
       * interrupted instruction is looked up itself, not the one before
       * (it was not a call). */
      if (m)
        m->reads = MEMO_READS + 1;
      const ucontext_t *uc = (const ucontext_t *)sp;
      uintptr_t ip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
      sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
      bp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
      bp_known = true;
      if (ip == 0)
        break;
      frames[n++] = (void *)ip;
      look = ip;
      continue;
    }
    if (r.kind != RULE_WALK || (r.cfa_is_bp && !bp_known))
      return -1;
    if (m && r.cfa_is_bp && bp_is_start)
      m->bp_used = true;
    uintptr_t cfa = (r.cfa_is_bp ? bp : sp) + (uintptr_t)(intptr_t)r.cfa_off;
    /* A caller's frame lies above its callee's, and not far. */
    if (cfa <= sp || cfa - sp > FRAME_MAX)
      return -1;
    uintptr_t ra = walk_read(m, cfa + (uintptr_t)(intptr_t)r.ra_off, true);
    if (r.bp == BP_SAVED) {
      bp = walk_read(m, cfa + (uintptr_t)(intptr_t)r.bp_off, false);
      bp_is_start = false;
    } else if (r.bp == BP_UNKNOWN) {
      bp_known = false;
    }
    sp = cfa;
    if (ra == 0)
      break;
    frames[n++] = (void *)ra;
    look = ra - 1;
  }
  return n;
}

HAK_NOINLINE int prof_unwind(void **frames, int max)
{
  if (!rules)
    return -1;
  uintptr_t ip, sp, bp;
  /* Here, at the instruction after the lea, the CFI describes exactly
   * these rsp and rbp. */
  __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(ip), "=r"(sp), "=r"(bp));
  return walk_from(ip, sp, bp, true, frames, 0, max, NULL);
}

/* The frames of the memo's walk if from and the words it read are the
 * same, max too; -1 otherwise. */
static int memo_replay(const struct walk_memo *m, const struct prof_frame *from, void **frames, int max)
{
  if (m->reads == 0 || m->reads > MEMO_READS || m->ip != from->ip || m->sp != from->sp ||
      (m->bp_used && m->bp != from->bp) || m->max != max)
    return -1;
  int n = 0;
  frames[n++] = (void *)from->ip;
  for (unsigned i = 0; i < m->reads; i++) {
    uintptr_t v = *(const uintptr_t *)m->addr[i];
    if (v != m->value[i])
      return -1;
    if ((m->is_frame >> i) & 1) {
      if (v == 0)
        break;
      frames[n++] = (void *)v;
    }
  }
  /* A walk that stopped at max frames stops there again. */
  return n == m->n ? n : -1;
}

int prof_unwind_from(const struct prof_frame *from, void **frames, int max, bool *repeated)
{
  *repeated = false;
  if (!rules)
    return -1;
  if (max <= 0 || from->ip == 0)
    return 0;
  struct walk_memo *m = &walk_memo;
  int n = memo_replay(m, from, frames, max);
  if (n >= 0) {
    *repeated = true;
    return n;
  }
  m->ip = from->ip;
  m->sp = from->sp;
  m->bp = from->bp;
  m->max = max;
  m->bp_used = false;
  m->reads = 0;
  m->is_frame = 0;
  frames[0] = (void *)from->ip;
  n = walk_from(from->ip - 1, from->sp, from->bp, true, frames, 1, max, m);
  if (n < 0 || m->reads > MEMO_READS)
    m->reads = 0;
  m->n = n;
  return n;
}

void prof_unwind_postfork_child(void)
{
  atomic_flag_clear_explicit(&rules_busy, memory_order_relaxed);
}

#else /* not x86-64: backtrace(3) does every walk */

bool prof_unwind_start(void)
{
  return false;
}

int prof_unwind(void **frames, int max)
{
  (void)frames;
  (void)max;
  return -1;
}

int prof_unwind_from(const struct prof_frame *from, void **frames, int max, bool *repeated)
{
  *repeated = false;
  (void)from;
  (void)frames;
  (void)max;
  return -1;
}

void prof_unwind_postfork_child(void)
{
}

#endif
