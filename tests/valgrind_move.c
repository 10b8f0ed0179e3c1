/* Growing page moves (mremap with MREMAP_FIXED onto a mapping of ours)
 * in the layouts where valgrind's memcheck lost track of the grown pages,
 * for tests/valgrind_stress.sh to run under memcheck: os_move of a
 * source right after a PROT_NONE guard (the rest of an os_split, as
 * BigCache splits a cached mapping), right before one (the head of a
 * split), and made of two VMAs (a block moved over the head of a larger
 * cached mapping); and a large block that realloc moves out of the rest
 * of a split.  memcheck took the access of the grown part from whatever
 * segment held the source's place in its table after the move - the
 * guard or the freed range there - and reported every use of it as
 * invalid (see memcheck_grown_by_mremap in src/os.c): without that
 * function, every run of this program under memcheck fails, in the
 * guard cases and the realloc.
 *
 * Natively too it checks what a move must do: the moved pages keep their
 * contents, the grown part reads zero and takes writes, the source range
 * is no longer mapped.  Exits 0 if every check held, 1 otherwise (with a
 * message on stderr).  Linked with the core library: the OS layer's own
 * functions and the hak_ names, no malloc replacement. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hakmem.h"
#include "os.h"

static int failures;

#define CHECK(cond, ...)                               \
  do {                                                 \
    if (!(cond)) {                                     \
      fprintf(stderr, "valgrind_move: " __VA_ARGS__);  \
      fputc('\n', stderr);                             \
      failures++;                                      \
    }                                                  \
  } while (0)

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

/* The permissions of the mapping holding address a in /proc/self/maps
 * ("rw-p", "---p"), or "" if nothing is mapped there. */
static void maps_perms(uintptr_t a, char perms[5])
{
  perms[0] = 0;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char p[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && lo <= a && a < hi) {
      memcpy(perms, p, 5);
      break;
    }
  }
  fclose(f);
}

/* Every page of [p, p+size) holds the byte seed + its page number. */
static void fill(unsigned char *p, size_t size, unsigned seed)
{
  for (size_t off = 0; off < size; off += HAK_PAGE_SIZE)
    memset(p + off, (int)((seed + off / HAK_PAGE_SIZE) & 0xff), HAK_PAGE_SIZE);
}

static bool filled(const unsigned char *p, size_t size, unsigned seed)
{
  for (size_t off = 0; off < size; off += 512)
    if (p[off] != ((seed + off / HAK_PAGE_SIZE) & 0xff))
      return false;
  return true;
}

/* The grown part of a move: zero, and every page of it writable. */
static void check_grown(unsigned char *p, size_t size, const char *what)
{
  bool zero = true;
  for (size_t off = 0; off < size; off += 512)
    zero &= p[off] == 0;
  CHECK(zero, "%s: the grown part does not read zero", what);
  fill(p, size, 7);
  CHECK(filled(p, size, 7), "%s: the grown part does not keep what was written", what);
}

static void check_source_gone(const void *src, const char *what)
{
  char perms[5];
  maps_perms((uintptr_t)src, perms);
  CHECK(perms[0] == 0, "%s: the source range is still mapped (%s)", what, perms);
}

/* The rest of a split, after the split's PROT_NONE guard, moved to a
 * mapping twice its size. */
static void source_after_guard(void)
{
  const char *what = "source after a guard";
  unsigned char *m = os_map_aligned(4 * MIB, HAK_UNIT_SIZE);
  CHECK(m != NULL, "%s: os_map_aligned failed", what);
  if (!m)
    return;
  unsigned char *src = os_split(m, 4 * MIB, 256 * KIB);
  CHECK(src != NULL, "%s: os_split failed", what);
  if (!src)
    return;
  size_t src_size = 4 * MIB - (size_t)(src - m);
  char perms[5];
  maps_perms((uintptr_t)src - HAK_PAGE_SIZE, perms);
  CHECK(strcmp(perms, "---p") == 0, "%s: no PROT_NONE guard before the source (%s)", what, perms);
  fill(src, src_size, 1);
  unsigned char *dest = os_map_aligned(2 * src_size, HAK_UNIT_SIZE);
  CHECK(dest != NULL, "%s: os_map_aligned of the destination failed", what);
  if (!dest)
    return;
  CHECK(os_move(src, src_size, 0, dest, 2 * src_size) == 0, "%s: os_move failed", what);
  CHECK(filled(dest, src_size, 1), "%s: the moved pages lost their contents", what);
  check_grown(dest + src_size, src_size, what);
  check_source_gone(src, what);
  os_unmap(dest, 2 * src_size);
  os_unmap(m, 256 * KIB);
}

/* The head of a split, followed by the split's guard, moved to a mapping
 * three times its size. */
static void source_before_guard(void)
{
  const char *what = "source before a guard";
  unsigned char *m = os_map_aligned(4 * MIB, HAK_UNIT_SIZE);
  CHECK(m != NULL, "%s: os_map_aligned failed", what);
  if (!m)
    return;
  unsigned char *rest = os_split(m, 4 * MIB, 1 * MIB);
  CHECK(rest != NULL, "%s: os_split failed", what);
  if (!rest)
    return;
  char perms[5];
  maps_perms((uintptr_t)m + 1 * MIB, perms);
  CHECK(strcmp(perms, "---p") == 0, "%s: no PROT_NONE guard after the source (%s)", what, perms);
  fill(m, 1 * MIB, 2);
  unsigned char *dest = os_map_aligned(3 * MIB, HAK_UNIT_SIZE);
  CHECK(dest != NULL, "%s: os_map_aligned of the destination failed", what);
  if (!dest)
    return;
  CHECK(os_move(m, 1 * MIB, 0, dest, 3 * MIB) == 0, "%s: os_move failed", what);
  CHECK(filled(dest, 1 * MIB, 2), "%s: the moved pages lost their contents", what);
  check_grown(dest + 1 * MIB, 2 * MIB, what);
  check_source_gone(m, what);
  os_unmap(dest, 3 * MIB);
  os_unmap(rest, 4 * MIB - (size_t)(rest - m));
}

/* A mapping of two VMAs - a block's pages moved over the head of a
 * larger mapping, whose tail stays - moved to a larger mapping, one
 * mremap per VMA. */
static void source_of_two_vmas(void)
{
  const char *what = "source of two VMAs";
  unsigned char *block = os_map_aligned(1 * MIB, HAK_UNIT_SIZE);
  unsigned char *cached = os_map_aligned(3 * MIB, HAK_UNIT_SIZE);
  CHECK(block && cached, "%s: os_map_aligned failed", what);
  if (!block || !cached)
    return;
  fill(block, 1 * MIB, 3);
  fill(cached, 3 * MIB, 4);
  CHECK(os_move(block, 1 * MIB, 0, cached, 1 * MIB) == 0, "%s: os_move over the head failed", what);
  CHECK(filled(cached, 1 * MIB, 3), "%s: the block's pages lost their contents", what);
  CHECK(filled(cached + 1 * MIB, 2 * MIB, 4 + 256), "%s: the tail lost its contents", what);
  unsigned char *dest = os_map_aligned(5 * MIB, HAK_UNIT_SIZE);
  CHECK(dest != NULL, "%s: os_map_aligned of the destination failed", what);
  if (!dest)
    return;
  CHECK(os_move(cached, 3 * MIB, 1 * MIB, dest, 5 * MIB) == 0, "%s: os_move failed", what);
  CHECK(filled(dest, 1 * MIB, 3) && filled(dest + 1 * MIB, 2 * MIB, 4 + 256),
        "%s: the moved pages lost their contents", what);
  check_grown(dest + 3 * MIB, 2 * MIB, what);
  check_source_gone(cached, what);
  check_source_gone(cached + 1 * MIB, what);
  os_unmap(dest, 5 * MIB);
}

/* The same through the allocator: a large block whose mapping is the rest
 * of a cached mapping split for a smaller request (a guard before it),
 * grown by realloc beyond anything cached.  Natively it usually grows in
 * place; under valgrind, which never lets a mapping above its own address
 * range grow in place, realloc moves its pages (large_move_to_new) and
 * memcheck reported every byte of the grown part. */
static void realloc_of_a_split_rest(void)
{
  const char *what = "realloc of a split's rest";
  unsigned char *big = hak_malloc(8 * MIB);
  CHECK(big != NULL, "%s: hak_malloc failed", what);
  if (!big)
    return;
  memset(big, 1, 8 * MIB);
  hak_free(big); /* cached */
  unsigned char *head = hak_malloc(1 * MIB); /* the cached mapping, split */
  unsigned char *block = hak_malloc(5 * MIB); /* its rest */
  CHECK(head && block, "%s: hak_malloc failed", what);
  if (!head || !block)
    return;
  fill(block, 5 * MIB, 5);
  unsigned char *grown = hak_realloc(block, 20 * MIB);
  CHECK(grown != NULL, "%s: hak_realloc failed", what);
  if (grown) {
    CHECK(filled(grown, 5 * MIB, 5), "%s: the block lost its contents", what);
    fill(grown + 5 * MIB, 15 * MIB, 6);
    CHECK(filled(grown + 5 * MIB, 15 * MIB, 6), "%s: the grown part does not keep what was written", what);
    hak_free(grown);
  }
  hak_free(head);
}

int main(void)
{
  source_after_guard();
  source_before_guard();
  source_of_two_vmas();
  realloc_of_a_split_rest();
  if (failures) {
    fprintf(stderr, "valgrind_move: %d checks failed\n", failures);
    return 1;
  }
  printf("valgrind_move: 4 growing moves, contents kept, grown parts zero and writable\n");
  return 0;
}
